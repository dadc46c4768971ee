//! The incident journal from the outside: reopen and read back, hashes recomputed
//! independently, corruption located, concurrent appends from processes and threads, and
//! property tests over random data and single-byte flips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use incident_console::core::error::Error;
use incident_console::store::journal::{Entry, Event, GENESIS_PREV, Journal, Verification};
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Journals written before entries were typed still read, fold and verify.
mod v1;

/// Typed events read back as they were decided.
mod roundtrip;

/// Env var that turns `child_appender` on and names the journal it appends to.
const CHILD_PATH: &str = "JOURNAL_CHILD_PATH";
const CHILD_OPERATOR: &str = "JOURNAL_CHILD_OPERATOR";
/// A file whose appearance starts the children, so their appends overlap.
const CHILD_GO: &str = "JOURNAL_CHILD_GO";
const CHILD_APPENDS: u64 = 200;
const PARENT_APPENDS: u64 = 100;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_714_564_800 + secs, 0).single().expect("valid time")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash as the format defines it, computed without the crate's code: serde_json's own
/// `to_string` for `data` (its map is sorted by key without `preserve_order`).
fn independent_hash(e: &Entry) -> String {
    let s = |v: &str| serde_json::to_string(v).expect("string");
    let text = format!(
        "{{\"seq\":{},\"at\":{},\"operator\":{},\"kind\":{},\"data\":{},\"prev\":{}}}",
        e.seq,
        s(&e.at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        s(&e.operator),
        s(e.kind()),
        serde_json::to_string(&e.data()).expect("data"),
        s(&e.prev),
    );
    hex(&Sha256::digest(text.as_bytes()))
}

/// The hash over the bytes on disk: the line without its `,"hash":"…"` member.
fn raw_line_hash(line: &str) -> (String, String) {
    let (fields, rest) = line.rsplit_once(",\"hash\":\"").expect("hash member");
    let recorded = rest.strip_suffix("\"}").expect("ends with \"}").to_string();
    (hex(&Sha256::digest(format!("{fields}}}").as_bytes())), recorded)
}

fn new_journal() -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = Journal::open(dir.path().join("data/incidents/INC-1/journal.jsonl")).expect("open");
    (dir, j)
}

fn broken_line(j: &Journal) -> usize {
    match j.verify().expect("verify") {
        Verification::Broken { line, .. } => line,
        v => panic!("expected Broken, got {v:?}"),
    }
}

fn file_lines(path: &Path) -> Vec<Vec<u8>> {
    std::fs::read(path).expect("read").split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

#[test]
fn append_reopen_read_back_and_verify() {
    let (dir, j) = new_journal();
    let mut written = Vec::new();
    for i in 0..10i64 {
        let data = json!({"step": i, "note": format!("action {i}"), "nested": {"b": [1, 2], "a": null}});
        written.push(j.append("ic-alice", &Event::from_parts("checklist_tick", data), at(i)).expect("append"));
    }
    drop(j);

    let j = Journal::open(dir.path().join("data/incidents/INC-1/journal.jsonl")).expect("reopen");
    let read = j.entries().expect("entries");
    assert_eq!(read, written);
    let text = std::fs::read_to_string(j.path()).expect("read");
    for (i, (e, line)) in read.iter().zip(text.lines()).enumerate() {
        assert_eq!(e.seq, i as u64 + 1);
        assert_eq!(e.operator, "ic-alice");
        assert_eq!(e.kind(), "checklist_tick");
        assert_eq!(e.data()["step"], json!(i));
        assert_eq!(e.at, at(i as i64));
        assert_eq!(e.prev, if i == 0 { GENESIS_PREV } else { read[i - 1].hash.as_str() });
        assert_eq!(independent_hash(e), e.hash, "entry {}", e.seq);
        let (computed, recorded) = raw_line_hash(line);
        assert_eq!(computed, recorded);
        assert_eq!(recorded, e.hash);
        assert!(line.contains("\"at\":\""), "{line}");
    }
    assert_eq!(j.last().expect("last").as_ref(), read.last());
    assert_eq!(j.verify().expect("verify"), Verification::Intact { entries: 10, last_hash: read[9].hash.clone() });

    // Appending after reopening chains on.
    let e = j.append("ic-bob", &Event::from_parts("note", json!({"text": "hand-over"})), at(100)).expect("append");
    assert_eq!((e.seq, e.prev.as_str()), (11, read[9].hash.as_str()));
}

#[test]
fn empty_file_is_intact() {
    let (_d, j) = new_journal();
    assert_eq!(j.verify().expect("verify"), Verification::Intact { entries: 0, last_hash: GENESIS_PREV.to_string() });
    assert!(j.entries().expect("entries").is_empty());
    assert_eq!(j.last().expect("last"), None);
}

#[test]
fn corruption_is_detected_and_located() {
    let (_d, j) = new_journal();
    for i in 0..7 {
        j.append("ic", &Event::from_parts("note", json!({"i": i})), at(i)).expect("append");
    }
    let orig = file_lines(j.path());
    let write = |lines: &[Vec<u8>]| std::fs::write(j.path(), lines.concat()).expect("write");

    // A flipped byte in the first, a middle and the last line, at its start, middle and end.
    for k in [1usize, 4, 7] {
        let len = orig[k - 1].len();
        for pos in [0, len / 2, len - 2, len - 1] {
            let mut ls = orig.clone();
            ls[k - 1][pos] ^= 0x20;
            write(&ls);
            assert_eq!(broken_line(&j), k, "flip at line {k} byte {pos}");
        }
    }

    // A deleted middle line: found at the line after the gap.
    let mut ls = orig.clone();
    ls.remove(3);
    write(&ls);
    assert_eq!(broken_line(&j), 4);

    // Two lines swapped.
    let mut ls = orig.clone();
    ls.swap(2, 5);
    write(&ls);
    assert_eq!(broken_line(&j), 3);

    // A truncated final line, with or without part of its content.
    for cut in [1, 30] {
        let all = orig.concat();
        std::fs::write(j.path(), &all[..all.len() - cut]).expect("write");
        match j.verify().expect("verify") {
            Verification::Broken { line, reason } => {
                assert_eq!(line, 7);
                assert!(reason.contains("truncated"), "{reason}");
            }
            v => panic!("{v:?}"),
        }
    }

    write(&orig);
    assert!(matches!(j.verify().expect("verify"), Verification::Intact { entries: 7, .. }));
}

#[test]
fn appending_after_corruption_is_refused() {
    let (_d, j) = new_journal();
    for i in 0..3 {
        j.append("ic", &Event::from_parts("note", json!({"i": i})), at(i)).expect("append");
    }
    let mut ls = file_lines(j.path());
    let n = ls[2].len();
    ls[2][n / 2] ^= 0x01;
    std::fs::write(j.path(), ls.concat()).expect("write");
    let before = std::fs::read(j.path()).expect("read");
    match j.append("ic", &Event::from_parts("note", json!({"text": "after"})), at(9)) {
        Err(Error::CheckFailed(m)) => assert!(m.contains("broken"), "{m}"),
        other => panic!("expected refusal, got {other:?}"),
    }
    assert_eq!(std::fs::read(j.path()).expect("read"), before, "nothing was appended");
}

/// Runs only as a child of `concurrent_appends_from_two_processes`: appends
/// `CHILD_APPENDS` entries to the journal named by `JOURNAL_CHILD_PATH`.
#[test]
#[ignore = "started as a child process by concurrent_appends_from_two_processes"]
fn child_appender() {
    let Ok(path) = std::env::var(CHILD_PATH) else { return };
    let operator = std::env::var(CHILD_OPERATOR).expect("operator");
    let go = PathBuf::from(std::env::var(CHILD_GO).expect("go file"));
    let j = Journal::open(&path).expect("open");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !go.exists() {
        assert!(Instant::now() < deadline, "go file never appeared");
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..CHILD_APPENDS {
        j.append(&operator, &Event::from_parts("note", json!({"i": i, "pid": std::process::id()})), Utc::now())
            .expect("append");
    }
}

/// Checks that `entries` hold exactly `per_operator[op]` entries per operator, each
/// operator's `i` counting 0, 1, ... in order, and seq 1..=n.
fn assert_complete(j: &Journal, per_operator: &[(&str, u64)]) {
    let entries = j.entries().expect("entries");
    let total: u64 = per_operator.iter().map(|(_, n)| n).sum();
    assert_eq!(entries.len() as u64, total);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64 + 1, "seq without gaps");
    }
    for (op, n) in per_operator {
        let is: Vec<u64> =
            entries.iter().filter(|e| e.operator == *op).filter_map(|e| e.data()["i"].as_u64()).collect();
        assert_eq!(is, (0..*n).collect::<Vec<_>>(), "entries of {op}");
    }
    assert_eq!(
        j.verify().expect("verify"),
        Verification::Intact { entries: total, last_hash: entries.last().map(|e| e.hash.clone()).unwrap_or_default() }
    );
}

#[test]
fn concurrent_appends_from_two_processes() {
    let (dir, j) = new_journal();
    let go = dir.path().join("go");
    let exe = std::env::current_exe().expect("current exe");
    let children: Vec<_> = ["child-a", "child-b"]
        .iter()
        .map(|op| {
            Command::new(&exe)
                .args(["--exact", "journal::child_appender", "--ignored", "--nocapture", "--test-threads=1"])
                .env(CHILD_PATH, j.path())
                .env(CHILD_OPERATOR, op)
                .env(CHILD_GO, &go)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    std::fs::write(&go, b"go").expect("go file");
    for i in 0..PARENT_APPENDS {
        j.append("parent", &Event::from_parts("note", json!({"i": i})), Utc::now()).expect("append");
    }
    for child in children {
        let out = child.wait_with_output().expect("wait child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        // The filter must have run the appender, not zero tests.
        assert!(stdout.contains("1 passed"), "child did not run child_appender: {stdout}");
    }
    assert_complete(&j, &[("child-a", CHILD_APPENDS), ("child-b", CHILD_APPENDS), ("parent", PARENT_APPENDS)]);
}

#[test]
fn concurrent_appends_from_threads() {
    let (_d, j) = new_journal();
    const THREADS: usize = 6;
    const EACH: u64 = 50;
    let names: Vec<String> = (0..THREADS).map(|t| format!("thread-{t}")).collect();
    std::thread::scope(|s| {
        for (t, name) in names.iter().enumerate() {
            let shared = &j;
            s.spawn(move || {
                // Half share one Journal, half open their own: both must exclude each other.
                let own = if t % 2 == 0 { Some(Journal::open(shared.path()).expect("open")) } else { None };
                let j = own.as_ref().unwrap_or(shared);
                for i in 0..EACH {
                    j.append(name, &Event::from_parts("note", json!({"i": i})), Utc::now()).expect("append");
                }
            });
        }
    });
    let expected: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), EACH)).collect();
    assert_complete(&j, &expected);
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "(?s).{0,12}".prop_map(Value::from),
    ]
}

fn json_object() -> impl Strategy<Value = Value> {
    let value = json_leaf().prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("(?s).{0,6}", inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("(?s).{0,6}", value, 0..5).prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Equal, except that a float may come back one rounding step off: serde_json is built
/// without `float_roundtrip` here.
fn json_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => match (x.as_f64(), y.as_f64()) {
            // A rounding step: relative for normal numbers; for subnormals, which carry fewer
            // significant bits, a unit in the last place.
            (Some(x), Some(y)) => {
                let ulps = x.to_bits().abs_diff(y.to_bits());
                x == y
                    || (x - y).abs() <= x.abs().max(y.abs()) * 1e-15
                    || (x.is_sign_negative() == y.is_sign_negative() && ulps <= 2)
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}

#[derive(Debug, Clone)]
struct Append {
    operator: String,
    kind: String,
    data: Value,
    at: DateTime<Utc>,
}

fn append_strategy() -> impl Strategy<Value = Append> {
    ("\\PC{1,20}", "[a-z0-9_]{1,64}", json_object(), 0i64..253_402_300_799, 0u32..1_000_000_000).prop_map(
        |(operator, kind, data, secs, nanos)| Append {
            operator,
            kind,
            data,
            at: Utc.timestamp_opt(secs, nanos).single().expect("in range"),
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_appends_verify_and_every_flip_is_located(
        appends in prop::collection::vec(append_strategy(), 1..10),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..12),
    ) {
        let (_d, j) = new_journal();
        let mut written = Vec::new();
        for a in &appends {
            written.push(j.append(&a.operator, &Event::from_parts(&a.kind, a.data.clone()), a.at).expect("append"));
        }
        let read = j.entries().expect("entries");
        prop_assert_eq!(&read, &written);
        for (a, e) in appends.iter().zip(&read) {
            prop_assert_eq!(&e.operator, &a.operator);
            prop_assert_eq!(e.kind(), a.kind.as_str());
            prop_assert!(json_close(&e.data(), &a.data), "{:?} vs {:?}", e.data(), a.data);
            prop_assert!((a.at - e.at).num_microseconds() == Some(0) && a.at >= e.at);
        }
        let last_hash = read.last().map(|e| e.hash.clone()).unwrap_or_default();
        prop_assert_eq!(j.verify().expect("verify"), Verification::Intact { entries: read.len() as u64, last_hash });

        let orig = std::fs::read(j.path()).expect("read");
        for (index, mask) in flips {
            let pos = index.index(orig.len());
            let mut bytes = orig.clone();
            bytes[pos] ^= mask;
            std::fs::write(j.path(), &bytes).expect("write");
            let expected = 1 + orig[..pos].iter().filter(|&&b| b == b'\n').count();
            match j.verify().expect("verify") {
                Verification::Broken { line, reason } => {
                    prop_assert_eq!(line, expected, "byte {} ^ {:#04x}: {}", pos, mask, reason);
                }
                v => prop_assert!(false, "byte {} ^ {:#04x} not detected: {:?}", pos, mask, v),
            }
        }
    }
}
