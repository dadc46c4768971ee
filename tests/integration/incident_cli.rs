//! End-to-end tests of the `incident` and `template` commands: the real binary, each test
//! in its own data directory (and, where the database matters, its own database from
//! `support::db`), checked on stdout, stderr, exit code, the journal file and the database.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::cli::{Out, console_in, run_cmd};
use crate::support::db::{TestDb, account, assert_consistent, executed, test_db};
use serde_json::{Value, json};

const DATA_CORRUPTION_QUESTION: &str = "Is data corrupted or lost (balances, orders, positions)?";

/// One test's world: its data directory (incidents under `incidents/`), a configuration
/// file that does not exist in the same directory (so `templates/` there holds overrides),
/// and a sandbox directory that does not exist either (nothing is copied to a sandbox).
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        World { dir: tempfile::tempdir().expect("test data dir") }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The binary with a predictable environment: no DATABASE_URL, this test's directories.
    fn console(&self) -> tokio::process::Command {
        let mut c = console_in(self.root(), "inc-test");
        c.env("INCIDENT_CONSOLE_SANDBOX_DIR", self.root().join("sandbox"));
        c
    }

    /// `incident-console args...`
    async fn ic(&self, args: &[&str]) -> Out {
        let mut c = self.console();
        c.args(args);
        run_cmd(c, None).await
    }

    /// `incident-console --database-url URL args...`
    async fn db(&self, url: &str, args: &[&str]) -> Out {
        let mut c = self.console();
        c.arg("--database-url").arg(url).args(args);
        run_cmd(c, None).await
    }

    /// Opens an incident and returns its id.
    async fn open(&self, title: &str, level: u8) -> String {
        let out = self.ic(&["--json", "incident", "new", "--title", title, "--level", &level.to_string()]).await;
        let j = out.code(0).clean().json();
        j["incident"].as_str().unwrap_or_else(|| panic!("no incident id in {j}")).to_string()
    }

    fn incidents(&self) -> PathBuf {
        self.root().join("incidents")
    }

    fn journal(&self, id: &str) -> PathBuf {
        self.incidents().join(id).join("journal.jsonl")
    }

    /// The journal's lines, parsed.
    fn entries(&self, id: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.journal(id)).expect("read the journal");
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l:?}: {e}"))).collect()
    }

    /// The kinds of the journal's entries, in order.
    fn kinds(&self, id: &str) -> Vec<String> {
        self.entries(id).iter().map(|e| e["kind"].as_str().expect("kind").to_string()).collect()
    }

    fn current(&self) -> Option<String> {
        std::fs::read_to_string(self.incidents().join("current")).ok().map(|s| s.trim().to_string())
    }

    /// Every file under `incidents/` with its bytes, to prove "nothing changed".
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries {
                let path = e.expect("directory entry").path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    let bytes = std::fs::read(&path).expect("read file");
                    out.insert(path, bytes);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.incidents(), &mut out);
        out
    }
}

/// Byte range of line `n` (1-based, without its newline) of `bytes`.
fn line_range(bytes: &[u8], n: usize) -> std::ops::Range<usize> {
    let mut start = 0;
    for _ in 1..n {
        start += bytes[start..].iter().position(|&b| b == b'\n').expect("enough lines") + 1;
    }
    let end = start + bytes[start..].iter().position(|&b| b == b'\n').expect("line ends with a newline");
    start..end
}

/// `(seq, kind, hash)` of each journal entry.
fn chain(entries: &[Value]) -> Vec<(i64, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["seq"].as_i64().expect("seq"),
                e["kind"].as_str().expect("kind").to_string(),
                e["hash"].as_str().expect("hash").to_string(),
            )
        })
        .collect()
}

/// `(seq, kind, hash)` of the database's copy of an incident's journal.
/// A journal line as `record_incident_events` takes it: its members, and `line`, the text
/// its hash covers (the line without its `,"hash":"…"` member).
fn copy_of(raw: &str) -> Value {
    let mut v: Value = serde_json::from_str(raw).expect("journal line");
    let (fields, _) = raw.rsplit_once(",\"hash\":\"").expect("hash member");
    v["line"] = json!(format!("{fields}}}"));
    v
}

/// An entry of incident events made up for a test, with a line that hashes to its hash.
fn made_up_entry(seq: i64, prev: &str, text: &str) -> Value {
    use sha2::{Digest, Sha256};
    let line = format!(
        "{{\"seq\":{seq},\"at\":\"2026-01-01T00:00:00.000000Z\",\"operator\":\"x\",\"kind\":\"note\",\
         \"data\":{{\"text\":{}}},\"prev\":\"{prev}\"}}",
        json!(text)
    );
    let hash: String = Sha256::digest(line.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    json!({ "seq": seq, "line": line, "hash": hash })
}

async fn db_chain(t: &TestDb, id: &str) -> Vec<(i64, String, String)> {
    sqlx::query_as("SELECT seq, kind, hash FROM incident_events WHERE incident_id = $1 ORDER BY seq")
        .bind(id)
        .fetch_all(&t.pool)
        .await
        .expect("read incident_events")
}

/// The hash `incident verify` printed ("... final hash HASH").
fn verified_hash(out: &Out) -> String {
    let (_, rest) = out.stdout.split_once("final hash ").unwrap_or_else(|| panic!("no final hash in {}", out.stdout));
    rest.lines().next().unwrap_or("").trim().to_string()
}

// ----------------------------------------------------------------------------------------
// 1. Opening, showing, listing, switching; bad input
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn new_show_list_switch_and_bad_input_changes_nothing() {
    let w = World::new();

    // A fresh directory: no current incident, an empty list.
    w.ic(&["incident", "show"]).await.code(2).clean().complains("no current incident");
    w.ic(&["incident", "list"]).await.code(0).clean().says("No incidents yet");
    assert_eq!(w.ic(&["--json", "incident", "list"]).await.code(0).json(), json!([]));

    let new = w.ic(&["incident", "new", "--title", "Duplicate executions", "--level", "2"]).await;
    new.code(0).clean().says("at Level 2 MODERATE: Duplicate executions");
    let first = w.current().expect("the new incident is current");
    assert!(first.starts_with("INC-"), "{first}");
    new.says(&format!("Opened {first} "));
    assert_eq!(w.kinds(&first), ["incident_opened"]);
    assert_eq!(w.entries(&first)[0]["operator"], "inc-test", "the operator comes from INCIDENT_OPERATOR");

    let show = w.ic(&["incident", "show"]).await;
    show.code(0).clean().says(&format!("{first}  Level 2 MODERATE  Duplicate executions"));
    show.says("Phase: Assessment since").says("Maintenance mode: off").says("[ ] classify");
    show.says("Journal: 1 entries");

    let list = w.ic(&["--json", "incident", "list"]).await.code(0).clean().json();
    let rows = list.as_array().expect("a JSON array");
    assert_eq!(rows.len(), 1, "{list}");
    assert_eq!(rows[0]["id"], first.as_str(), "{list}");
    assert_eq!(rows[0]["title"], "Duplicate executions", "{list}");
    assert_eq!(rows[0]["level"], 2, "{list}");
    assert_eq!(rows[0]["phase"], "assessment", "{list}");
    assert_eq!(rows[0]["current"], true, "{list}");

    // A second incident becomes current and says how to go back.
    let second_out = w.ic(&["incident", "new", "--title", "Slow quotes", "--level", "1"]).await;
    second_out.code(0).clean().says(&format!("({first} is no longer current; `incident switch {first}`"));
    let second = w.current().expect("current");
    assert_ne!(second, first);
    let list = w.ic(&["--json", "incident", "list"]).await.code(0).json();
    let ids: Vec<(&str, bool)> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|r| (r["id"].as_str().expect("id"), r["current"].as_bool().expect("current")))
        .collect();
    assert_eq!(ids, [(second.as_str(), true), (first.as_str(), false)], "newest first, the second current");

    w.ic(&["incident", "switch", &first]).await.code(0).clean().says(&format!("{first} is now the current incident"));
    assert_eq!(w.current().as_deref(), Some(first.as_str()));
    w.ic(&["incident", "show"]).await.code(0).says("Duplicate executions");
    // --incident reaches the other one without switching.
    w.ic(&["incident", "--incident", &second, "show"]).await.code(0).says("Level 1 MINOR  Slow quotes");
    assert_eq!(w.current().as_deref(), Some(first.as_str()));

    // A later phase, so that going back can be tried.
    w.ic(&["incident", "phase", "response"]).await.code(0).clean().says("phase assessment -> response");

    let before = w.snapshot();
    let bad: Vec<(&[&str], &str)> = vec![
        (&["incident", "new", "--title", "Four", "--level", "4"], "1..=3"),
        (&["incident", "level", "4", "--reason", "worse"], "1..=3"),
        (&["incident", "level", "2", "--reason", "same"], "already Level 2"),
        (&["incident", "phase", "triage"], "no phase \"triage\": assessment, response, recovery, post_incident"),
        (&["incident", "phase", "assessment"], "phases only move forward (now Response)"),
        (&["incident", "role", "wizard", "Bob"], "no role \"wizard\": incident_commander, technical_lead"),
        (&["incident", "assign", "investigate", "--role", "wizard"], "no role \"wizard\""),
        (&["incident", "tick", "nope"], "no checklist item \"nope\""),
        (&["incident", "tick", "regulatory_notice"], "not part of a Level 2 response"),
        (
            &["incident", "tick", "approval"],
            "\"approval\" is an approval: name who approved it (in the CLI: --approved-by)",
        ),
        (&["incident", "tick", "approval", "--approved-by", " "], "who approved is required"),
        (&["incident", "skip", "detect", "--reason", "  "], "a reason to skip is required"),
        (&["incident", "note", ""], "a note is required"),
        (&["incident", "note", "   "], "a note is required"),
        (&["incident", "note", "ring\x07"], "a note holds a control or invisible character (\\x07)"),
        (&["incident", "new", "--title", "two\nlines", "--level", "2"], "a title holds a control or invisible"),
        (&["incident", "role", "incident_commander", "Eve\u{202e}"], "a person holds a control or invisible"),
        (&["incident", "field", "Bad Name", "x"], "a field name is a-z, 0-9 and _"),
        (&["incident", "switch", "INC-nope"], "no incident INC-nope"),
        (&["incident", "--incident", "../etc", "show"], "not an incident id"),
        (&["incident", "classify", "--answer", "nope=yes"], "no question \"nope\""),
        (&["incident", "classify", "--answer", "performance=maybe", "--apply"], "answer yes, no or unsure"),
    ];
    let runs = bad.iter().map(|(args, _)| w.ic(args));
    for ((args, message), out) in bad.iter().zip(futures::future::join_all(runs).await) {
        assert_eq!(out.code, 2, "{args:?}: {out:#?}");
        out.clean().complains(message);
    }
    // The JSON form of an error, on stdout.
    let j = w.ic(&["--json", "incident", "tick", "nope"]).await.code(2).json();
    assert_eq!(j["exit_code"], 2, "{j}");
    assert!(j["error"].as_str().is_some_and(|e| e.contains("no checklist item")), "{j}");
    assert_eq!(w.snapshot(), before, "bad input changed a file");
    assert_eq!(w.kinds(&first), ["incident_opened", "phase_changed", "note"], "the phase change noted open items");

    // An approval names who approved: the journal keeps it with the tick, `show` says it.
    w.ic(&["incident", "tick", "approval", "--approved-by", "Dana Reyes, CTO"]).await.code(0).clean();
    let last = w.entries(&first).pop().expect("an entry");
    assert_eq!(last["kind"], "item_ticked", "{last}");
    assert_eq!(last["data"]["approved_by"], "Dana Reyes, CTO", "{last}");
    w.ic(&["incident", "show"]).await.code(0).says("(approved by Dana Reyes, CTO; ticked by");
}

// ----------------------------------------------------------------------------------------
// 2. Classification
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn classify_with_doubt_proposes_level_3_and_apply_logs_it() {
    let w = World::new();
    let id = w.open("Balances look wrong", 2).await;
    let answers = ["--answer", "data_corruption=unsure", "--answer", "performance=yes"];

    // Without --apply: proposed and explained, nothing written.
    let before = w.snapshot();
    let mut args = vec!["incident", "classify"];
    args.extend(answers);
    let out = w.ic(&args).await;
    out.code(0).clean().says("Proposed: Level 3 CRITICAL");
    out.says(&format!("because: {DATA_CORRUPTION_QUESTION}")).says("unsure answers count as yes");
    out.says("Apply it with --apply");
    // Without the doubt the same facts point to Level 1: the unsure answer is what raised it.
    let low =
        w.ic(&["--json", "incident", "classify", "--answer", "data_corruption=no", "--answer", "performance=yes"]);
    let low = low.await.code(0).json();
    assert_eq!(low["level"], 1, "{low}");
    assert_eq!(low["applied"], Value::Null, "{low}");
    assert_eq!(w.snapshot(), before, "classifying without --apply writes nothing");

    // With --apply: the level changes with the reason, and the classify item is ticked.
    let mut args = vec!["--json", "incident", "classify", "--apply"];
    args.extend(answers);
    let j = w.ic(&args).await.code(0).clean().json();
    assert_eq!(j["level"], 3, "{j}");
    assert_eq!(j["why"], json!([DATA_CORRUPTION_QUESTION]), "{j}");
    let applied = j["applied"].as_array().unwrap_or_else(|| panic!("applied is the list of entries: {j}"));
    let entries = w.entries(&id);
    assert_eq!(w.kinds(&id), ["incident_opened", "level_changed", "item_ticked"]);
    assert_eq!(applied.as_slice(), &entries[1..], "--json returns exactly the entries written");
    let reason = format!("classified: {DATA_CORRUPTION_QUESTION}");
    assert_eq!(entries[1]["data"], json!({ "from": 2, "to": 3, "reason": reason }));
    assert_eq!(entries[2]["data"], json!({ "item": "classify", "auto": false }));
    for e in applied {
        for key in ["seq", "at", "operator", "kind", "data", "prev", "hash"] {
            assert!(e.get(key).is_some(), "entry without {key}: {e}");
        }
    }

    let show = w.ic(&["--json", "incident", "show"]).await.code(0).json();
    assert_eq!(show["context"]["level"]["number"], 3, "{show}");
    let text = w.ic(&["incident", "show"]).await;
    text.code(0).says("Level 3 CRITICAL").says("[x] classify");
    let tl = w.ic(&["incident", "timeline", "--filter", "level_changed"]).await;
    tl.code(0).says(&format!("level 2 -> 3: {reason}"));

    // Applying the same answers again confirms the level with a note and ticks nothing twice.
    let mut args = vec!["--json", "incident", "classify", "--apply"];
    args.extend(answers);
    let again = w.ic(&args).await.code(0).json();
    let kinds: Vec<&str> =
        again["applied"].as_array().expect("applied").iter().map(|e| e["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["note"], "{again}");
    assert_eq!(w.kinds(&id), ["incident_opened", "level_changed", "item_ticked", "note"]);

    // Answers that point lower never lower the level: Level 3 is kept, and the proposal noted.
    let out = w.ic(&["incident", "classify", "--apply", "--answer", "data_corruption=no"]).await;
    out.code(0).clean().says("Proposed: Level 1 MINOR").says("Level 3 kept (noted)");
    let entries = w.entries(&id);
    let last = entries.last().expect("an entry");
    assert_eq!(last["kind"], "note", "{last}");
    assert!(
        last["data"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("level 3 kept; the classification proposes Level 1")),
        "{last}"
    );
    let show = w.ic(&["--json", "incident", "show"]).await.code(0).json();
    assert_eq!(show["context"]["level"]["number"], 3, "{show}");
}

// ----------------------------------------------------------------------------------------
// 3. Roles and the timeline
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn role_handover_is_logged_and_the_timeline_filters_newest_first() {
    let w = World::new();
    let id = w.open("Order router down", 3).await;
    w.ic(&["--operator", "alice", "incident", "role", "incident_commander", "Alice"]).await.code(0).clean();
    w.ic(&["--operator", "alice", "incident", "role", "technical-lead", "Cy"]).await.code(0).clean();
    // Alice hands over to Bob.
    let handover = w.ic(&["--operator", "bob", "incident", "role", "Incident Commander", "Bob"]).await;
    handover.code(0).clean().says("Bob is Incident Commander");
    w.ic(&["incident", "note", "rollback strategy agreed"]).await.code(0).clean();
    // The holder again is refused.
    let same = w.ic(&["incident", "role", "incident_commander", "Bob"]).await;
    same.code(2).clean().complains("Bob already holds Incident Commander");

    let show = w.ic(&["incident", "show"]).await;
    show.code(0).clean();
    let commander = show.stdout.lines().find(|l| l.contains("Incident Commander")).expect("commander line");
    assert!(commander.contains("Bob") && !commander.contains("Alice"), "{commander}");
    assert!(show.stdout.lines().any(|l| l.contains("Technical Lead") && l.contains("Cy")), "{}", show.stdout);

    // Whole timeline: newest first, every entry of the journal once.
    let all = w.ic(&["--json", "incident", "timeline"]).await.code(0).clean().json();
    let rows = all.as_array().expect("array");
    let seqs: Vec<i64> = rows.iter().map(|r| r["entry"]["seq"].as_i64().expect("seq")).collect();
    assert_eq!(seqs, [5, 4, 3, 2, 1], "{all}");
    assert_eq!(rows[0]["text"], "rollback strategy agreed");
    assert_eq!(w.entries(&id).len(), 5);

    // Both holders of the role are in the timeline, Bob's hand-over above Alice's start.
    let roles = w.ic(&["--json", "incident", "timeline", "--filter", "role_assigned"]).await.code(0).json();
    let texts: Vec<(&str, &str)> = roles
        .as_array()
        .expect("array")
        .iter()
        .map(|r| (r["entry"]["operator"].as_str().expect("operator"), r["text"].as_str().expect("text")))
        .collect();
    assert_eq!(
        texts,
        [
            ("bob", "Bob is Incident Commander"),
            ("alice", "Cy is Technical Lead"),
            ("alice", "Alice is Incident Commander")
        ]
    );
    let text = w.ic(&["incident", "timeline"]).await;
    text.code(0).clean();
    let bob = text.stdout.find("Bob is Incident Commander").expect("Bob in the timeline");
    let alice = text.stdout.find("Alice is Incident Commander").expect("Alice in the timeline");
    assert!(bob < alice, "newest first:\n{}", text.stdout);

    // The filter matches the operator and the text too, case-insensitively; --limit cuts.
    let by_bob = w.ic(&["--json", "incident", "timeline", "--filter", "BOB"]).await.code(0).json();
    assert_eq!(by_bob.as_array().map(Vec::len), Some(1), "{by_bob}");
    let by_text = w.ic(&["incident", "timeline", "--filter", "strategy"]).await;
    by_text.code(0);
    assert_eq!(by_text.stdout.lines().count(), 1, "{}", by_text.stdout);
    assert!(by_text.stdout.contains("rollback strategy agreed"), "{}", by_text.stdout);
    let none = w.ic(&["--json", "incident", "timeline", "--filter", "no-such-thing"]).await.code(0).json();
    assert_eq!(none, json!([]));
    let one = w.ic(&["--json", "incident", "timeline", "--limit", "1"]).await.code(0).json();
    assert_eq!(one.as_array().map(|a| a[0]["entry"]["seq"].clone()), Some(json!(5)), "{one}");
}

// ----------------------------------------------------------------------------------------
// 4. Verifying the journal
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn verify_names_the_altered_or_missing_line() {
    let w = World::new();
    let id = w.open("Journal check", 2).await;
    for note in ["alpha note", "bravo note", "charlie note"] {
        w.ic(&["incident", "note", note]).await.code(0).clean();
    }
    let path = w.journal(&id);
    let original = std::fs::read(&path).expect("journal bytes");
    let last_hash = w.entries(&id)[3]["hash"].as_str().expect("hash").to_string();

    let ok = w.ic(&["incident", "verify"]).await;
    ok.code(0).clean().says(&format!("Journal intact: 4 entries, final hash {last_hash}"));
    let j = w.ic(&["--json", "incident", "verify"]).await.code(0).json();
    assert_eq!(j["verification"], json!({ "status": "intact", "entries": 4, "last_hash": last_hash }), "{j}");

    // One byte of line 3 flipped (b -> B in "bravo"): still JSON, no longer its hash.
    let line3 = line_range(&original, 3);
    let at =
        line3.start + original[line3.clone()].windows(5).position(|w| w == b"bravo").expect("line 3 is the bravo note");
    let mut flipped = original.clone();
    flipped[at] ^= 0x20;
    std::fs::write(&path, &flipped).expect("write the altered journal");
    let broken = w.ic(&["incident", "verify"]).await;
    broken.code(1).clean().says("Journal BROKEN at line 3: hash mismatch");
    let j = w.ic(&["--json", "incident", "verify"]).await.code(1).json();
    assert_eq!(j["verification"]["status"], "broken", "{j}");
    assert_eq!(j["verification"]["line"], 3, "{j}");
    // No report is written from a broken journal.
    let report = w.ic(&["incident", "report"]).await;
    report.code(1).clean().complains("the journal is broken at line 3");
    assert!(!w.incidents().join(&id).join("reports").exists(), "no report directory");

    // Put back, intact again.
    std::fs::write(&path, &original).expect("restore the journal");
    w.ic(&["incident", "verify"]).await.code(0).says("Journal intact: 4 entries");

    // Line 3 deleted: the line now third (seq 4) is named.
    let mut deleted = original[..line3.start].to_vec();
    deleted.extend_from_slice(&original[line3.end + 1..]);
    std::fs::write(&path, &deleted).expect("write the shortened journal");
    let gap = w.ic(&["incident", "verify"]).await;
    gap.code(1).clean().says("Journal BROKEN at line 3: seq 4 where 3 was expected");
    gap.says(&path.display().to_string());
}

// ----------------------------------------------------------------------------------------
// 5. Templates
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn templates_list_render_override_and_refuse() {
    let w = World::new();
    let list = w.ic(&["--json", "template", "list"]).await.code(0).clean().json();
    let rows = list.as_array().expect("array");
    let got: Vec<(&str, &str, Vec<&str>, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().expect("name"),
                r["audience"].as_str().expect("audience"),
                r["required"].as_array().expect("required").iter().map(|f| f.as_str().expect("field")).collect(),
                r["source"].as_str().expect("source"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("internal_alert", "internal", vec!["impact", "estimated_resolution"], "shipped"),
            ("status_update", "internal", vec!["conditions", "actions", "needs"], "shipped"),
            ("customer_notice", "customer", vec!["customer_impact", "customer_resolution"], "shipped"),
            ("resolution_notice", "customer", vec!["resolution_summary"], "shipped"),
            ("post_incident_report", "internal", vec!["summary", "root_cause", "lessons_learned"], "shipped"),
        ]
    );
    assert!(rows.iter().all(|r| r["problem"].is_null()), "{list}");

    // Rendering needs an incident.
    w.ic(&["template", "render", "internal_alert"]).await.code(2).clean().complains("no current incident");
    let id = w.open("Duplicate executions", 2).await;

    let missing = w.ic(&["template", "render", "internal_alert"]).await;
    missing.code(1).clean().complains("Required fields still empty: impact, estimated_resolution");
    missing.says("[to fill: impact]").says("[to fill: estimated_resolution]").says(&id);

    let filled = w
        .ic(&[
            "template",
            "render",
            "internal_alert",
            "--set",
            "impact=60 duplicate GBPUSD fills",
            "--set",
            "estimated_resolution=about 2 hours",
        ])
        .await;
    filled.code(0).clean().says("Impact: 60 duplicate GBPUSD fills").says("Estimated resolution: about 2 hours");
    filled.says(&format!("**INCIDENT ALERT - Level 2 (MODERATE)** - {id}"));
    assert!(!filled.stdout.contains("[to fill"), "{}", filled.stdout);
    assert!(filled.stderr.trim().is_empty(), "{}", filled.stderr);
    // A waived field is shown as waived, and counts as answered.
    let waived =
        w.ic(&["template", "render", "internal_alert", "--set", "impact=x", "--waive", "estimated_resolution"]);
    waived.await.code(0).clean().says("Estimated resolution: [waived]");
    // Fields typed into the incident are used too.
    w.ic(&["incident", "field", "impact", "from the journal"]).await.code(0).clean();
    let from_journal = w.ic(&["template", "render", "internal_alert"]).await;
    from_journal
        .code(1)
        .says("Impact: from the journal")
        .complains("Required fields still empty: estimated_resolution");

    // A customer message naming a host is refused (exit 1), and says what it found.
    let leak = w
        .ic(&[
            "template",
            "render",
            "customer_notice",
            "--set",
            "customer_impact=Orders on db-primary.prod.internal were duplicated",
            "--set",
            "customer_resolution=2 hours",
        ])
        .await;
    leak.code(1).clean().complains("Internal detail in a customer message").complains("db-primary.prod.internal");

    w.ic(&["template", "render", "no_such_template"])
        .await
        .code(2)
        .clean()
        .complains("no template named \"no_such_template\"");

    // A user's template of the same name replaces the shipped one (header as in the shipped file).
    let user_dir = w.root().join("templates");
    std::fs::create_dir_all(&user_dir).expect("create the user template dir");
    let user_file = user_dir.join("internal_alert.md.j2");
    std::fs::write(
        &user_file,
        "{#-\ntitle: Desk alert\naudience: internal\nrequired: impact, desk\n-#}\n\
         DESK ALERT {{ incident.id }} L{{ level.number }}: {{ fields.impact }} (desk {{ fields.desk }})\n",
    )
    .expect("write the user template");
    let list = w.ic(&["--json", "template", "list"]).await.code(0).clean().json();
    let alert = list.as_array().and_then(|a| a.iter().find(|r| r["name"] == "internal_alert")).cloned();
    let alert = alert.unwrap_or_else(|| panic!("internal_alert listed: {list}"));
    assert_eq!(alert["title"], "Desk alert", "{alert}");
    assert_eq!(alert["required"], json!(["impact", "desk"]), "{alert}");
    assert_eq!(alert["source"], user_file.display().to_string(), "{alert}");
    assert_eq!(list.as_array().map(Vec::len), Some(5), "overridden, not added: {list}");

    let user = w.ic(&["template", "render", "internal_alert", "--set", "desk=FX"]).await;
    user.code(0).clean();
    assert_eq!(user.stdout, format!("DESK ALERT {id} L2: from the journal (desk FX)\n"));
    let user_missing = w.ic(&["template", "render", "internal_alert"]).await;
    user_missing.code(1).complains("Required fields still empty: desk");
    assert!(!user_missing.stderr.contains("estimated_resolution"), "{}", user_missing.stderr);
}

// ----------------------------------------------------------------------------------------
// 6. A whole incident against a real database
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn database_commands_fill_the_journal_its_copy_the_messages_and_the_report() {
    let t = test_db().await;
    let url = t.url.as_str();
    let w = World::new();
    let user = account(&t.pool, "10000").await;
    let order = executed(&t.pool, user, "1000", None).await;
    let (os, us) = (order.to_string(), user.to_string());

    // A Level 3 incident: opened at 2, raised to 3 with a reason (so there is level history).
    let id = w.open("Duplicate executions after deploy 4711", 2).await;
    w.db(url, &["incident", "level", "3", "--reason", "balances may be wrong"]).await.code(0).clean();

    // Maintenance on: proven with a probe order that leaves no trace.
    let orders_before: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&t.pool).await.expect("count");
    let on = w.db(url, &["maintenance", "on", "--reason", "stop duplicate fills"]).await;
    on.code(0).clean().says("Maintenance mode is ON since").says("Verified: a probe order was refused");
    let (orders_after, probes): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE idempotency_key LIKE 'maintenance-probe-%') FROM orders",
    )
    .fetch_one(&t.pool)
    .await
    .expect("count orders");
    assert_eq!((orders_after, probes), (orders_before, 0), "the probe order was rolled back");
    let last = w.entries(&id).pop().expect("an entry");
    assert_eq!(last["kind"], "maintenance");
    assert_eq!(last["data"], json!({ "on": true, "reason": "stop duplicate fills", "verified": true }));
    w.ic(&["incident", "show"]).await.code(0).says("(verified: new orders refused)");

    // Roll back the real order.
    let rb = w.db(url, &["rollback", &os, "--user", &us, "--reason", "duplicate of deploy 4711", "--yes"]).await;
    rb.code(0).clean().says("Rolled back 1 order(s)");
    let status: String = sqlx::query_scalar("SELECT status::text FROM orders WHERE id = $1")
        .bind(order)
        .fetch_one(&t.pool)
        .await
        .expect("status");
    assert_eq!(status, "rolled_back");

    let entries = w.entries(&id);
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().expect("kind")).collect();
    assert_eq!(
        kinds,
        ["incident_opened", "level_changed", "maintenance", "precheck", "rollback_intended", "rollback", "postcheck"]
    );
    let (pre, intent, roll, post) =
        (&entries[3]["data"], &entries[4]["data"], &entries[5]["data"], &entries[6]["data"]);
    assert_eq!(intent["operation"], roll["operation"], "the outcome is the intent's: {intent} {roll}");
    assert_eq!((&intent["order"], &intent["orders"], &intent["mode"]), (&json!(os), &json!(1), &json!("single")));
    assert_eq!((&pre["order"], &pre["user"], &pre["ready"]), (&json!(os), &json!(us), &json!(true)), "{pre}");
    assert_eq!(pre["failed"], json!([]), "{pre}");
    assert_eq!(roll["order"], os.as_str(), "{roll}");
    assert_eq!(roll["success"], true, "{roll}");
    assert_eq!(roll["orders"], 1, "{roll}");
    assert_eq!(roll["reason"], "duplicate of deploy 4711", "{roll}");
    assert_eq!((&post["order"], &post["successful"]), (&json!(os), &json!(true)), "{post}");
    assert!(entries[3..].iter().all(|e| e["operator"] == "inc-test"), "the operator of the CLI");

    // The database holds the same chain as the file.
    assert_eq!(db_chain(&t, &id).await, chain(&entries), "incident_events is a copy of the journal");

    // Customer notice: the rolled-back order's id is an internal detail.
    let leak = w
        .ic(&[
            "template",
            "render",
            "customer_notice",
            "--set",
            &format!("customer_impact=Order {os} was reversed."),
            "--set",
            "customer_resolution=2 hours",
        ])
        .await;
    leak.code(1).clean().complains("Internal detail in a customer message").complains(&os);
    let notice = w
        .ic(&[
            "template",
            "render",
            "customer_notice",
            "--set",
            "customer_impact=Some orders were executed twice and have been reversed.",
            "--set",
            "customer_resolution=2 hours",
        ])
        .await;
    notice.code(0).clean().says("[URGENT] Service Notice");
    notice.says("New order processing has been temporarily suspended since");
    notice.says("New order placement is temporarily unavailable").says("within 2 hours");
    assert!(!notice.stdout.contains(&os) && !notice.stdout.contains(&us), "{}", notice.stdout);

    // The report's fields, then the hash the report must quote.
    for (name, value) in [
        ("summary", "A deploy executed orders twice; the duplicate was reversed."),
        ("root_cause", "Retry without an idempotency check in deploy 4711."),
        ("lessons_learned", "Test retries against the idempotency key."),
    ] {
        w.db(url, &["incident", "field", name, value]).await.code(0).clean();
    }
    let verify = w.ic(&["incident", "verify"]).await;
    verify.code(0).clean().says("Journal intact: 10 entries");
    let hash = verified_hash(&verify);
    assert_eq!(hash.len(), 64, "{hash}");

    let report = w.db(url, &["--json", "incident", "report"]).await.code(0).clean().json();
    let path = PathBuf::from(report["report"].as_str().unwrap_or_else(|| panic!("report path: {report}")));
    assert!(path.starts_with(w.incidents().join(&id).join("reports")), "{}", path.display());
    assert_eq!(path.extension().and_then(|e| e.to_str()), Some("md"), "{}", path.display());
    let md = std::fs::read_to_string(&path).expect("read the report");
    let has = |needle: &str| assert!(md.contains(needle), "the report lacks {needle:?}:\n{md}");
    has(&format!("# Post-incident report - {id}: Duplicate executions after deploy 4711"));
    has("| Level | Level 3 (CRITICAL) |");
    has("Level 2 (MODERATE) -> Level 3 (CRITICAL) by inc-test: balances may be wrong");
    has(&format!("- order {os}"));
    has(&format!("- User: {us}"));
    has("- Reason: duplicate of deploy 4711");
    has("- Pre-check: ready");
    has("- Post-check: successful");
    has("to still on");
    has("stop duplicate fills");
    has("A deploy executed orders twice; the duplicate was reversed.");
    has("Retry without an idempotency check in deploy 4711.");
    has("Test retries against the idempotency key.");
    has(&format!("Journal: 10 entries, final hash `{hash}` (chain verified)."));
    assert!(!md.contains("Pre-check: not run") && !md.contains("Post-check: not run"), "{md}");
    assert!(!md.contains("Maintenance mode was not used"), "{md}");

    // The report is itself recorded, after the hash it quotes.
    let after = w.ic(&["incident", "verify"]).await;
    after.code(0).says("Journal intact: 11 entries");
    assert_ne!(verified_hash(&after), hash);
    let last = w.entries(&id).pop().expect("an entry");
    assert_eq!(last["kind"], "report_written");
    assert_eq!(last["data"]["path"], path.display().to_string());

    // Maintenance off, verified; the database's copy follows the journal to its end.
    let off = w.db(url, &["maintenance", "off", "--reason", "duplicates reversed"]).await;
    off.code(0).clean().says("Maintenance mode is off: new orders are accepted");
    let entries = w.entries(&id);
    let last = entries.last().expect("an entry");
    assert_eq!(last["data"], json!({ "on": false, "reason": "duplicates reversed", "verified": true }));
    assert_eq!(entries.len(), 12);
    assert_eq!(db_chain(&t, &id).await, chain(&entries));
    w.ic(&["incident", "show"]).await.code(0).says("Maintenance mode: off");
    assert_consistent(&t.pool).await;
}

// ----------------------------------------------------------------------------------------
// 7. incident_events: append-only, conflicts reported
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn incident_events_are_append_only_and_a_different_hash_is_a_conflict() {
    let t = test_db().await;
    let w = World::new();
    let id = w.open("Copy check", 2).await;
    // An incident command given a URL copies the journal.
    w.db(&t.url, &["incident", "note", "copied to the database"]).await.code(0).clean();
    let entries = w.entries(&id);
    assert_eq!(db_chain(&t, &id).await, chain(&entries));

    let superuser: bool = sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&t.pool)
        .await
        .expect("rolsuper");
    assert!(superuser, "the test connects as a superuser");
    for sql in [
        "UPDATE incident_events SET hash = repeat('0', 64) WHERE seq = 1",
        "UPDATE incident_events SET data = '{}'",
        "DELETE FROM incident_events WHERE seq = 2",
        "DELETE FROM incident_events",
        "TRUNCATE incident_events",
    ] {
        let err = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&t.pool).await.err();
        let err = err.unwrap_or_else(|| panic!("{sql} was allowed"));
        let db = err.as_database_error().unwrap_or_else(|| panic!("{sql}: {err}"));
        assert_eq!(db.code().as_deref(), Some("42501"), "{sql}: {err}");
        assert!(db.message().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(db_chain(&t, &id).await, chain(&entries), "nothing changed");

    // The same entry again: accepted as already there.
    let record = |payload: Value| {
        let pool = t.pool.clone();
        let id = id.clone();
        async move {
            sqlx::query_scalar::<_, Value>("SELECT record_incident_events($1, $2)")
                .bind(id)
                .bind(payload)
                .fetch_one(&pool)
                .await
                .expect("record_incident_events")
        }
    };
    let raw: Vec<String> =
        std::fs::read_to_string(w.journal(&id)).expect("journal").lines().map(str::to_string).collect();
    let same = record(json!([copy_of(&raw[1])])).await;
    assert_eq!(same, json!({ "success": true, "inserted": 0, "conflicts": [] }));

    // Seq 2 with other content (and a hash that matches it): two journals disagree.
    let prev1 = entries[0]["hash"].as_str().expect("hash");
    let forged = made_up_entry(2, prev1, "something else");
    // With a new seq 3 beside it: the call copies nothing and names seq 2 alone.
    let next = made_up_entry(3, entries[1]["hash"].as_str().expect("hash"), "next");
    let conflict = record(json!([forged, next])).await;
    assert_eq!(conflict["success"], false, "{conflict}");
    assert_eq!(conflict["conflicts"], json!([2]), "{conflict}");
    let stored: String = sqlx::query_scalar("SELECT hash FROM incident_events WHERE incident_id = $1 AND seq = 2")
        .bind(&id)
        .fetch_one(&t.pool)
        .await
        .expect("seq 2");
    assert_eq!(stored, entries[1]["hash"].as_str().expect("hash"), "the first copy stands");
    assert_eq!(db_chain(&t, &id).await, chain(&entries), "nothing of the disagreeing call was stored");

    // The grants: the operator records, the viewer only reads the high-water mark.
    let mut c = t.conn().await;
    sqlx::raw_sql("SET ROLE incident_viewer").execute(&mut c).await.expect("set role viewer");
    let max: i64 = sqlx::query_scalar("SELECT incident_events_max_seq($1)")
        .bind(&id)
        .fetch_one(&mut c)
        .await
        .expect("viewer reads max seq");
    assert!(max >= 2, "{max}");
    let denied = sqlx::query("SELECT record_incident_events($1, '[]')").bind(&id).execute(&mut c).await.err();
    let denied = denied.expect("the viewer cannot record");
    assert_eq!(denied.as_database_error().and_then(|d| d.code()).as_deref(), Some("42501"), "{denied}");
    sqlx::raw_sql("RESET ROLE; SET ROLE incident_operator").execute(&mut c).await.expect("set role operator");
    let v: Value = sqlx::query_scalar("SELECT record_incident_events($1, $2)")
        .bind(&id)
        .bind(json!([copy_of(&raw[0])]))
        .fetch_one(&mut c)
        .await
        .expect("operator records");
    assert_eq!(v["success"], true, "{v}");
    let upd = sqlx::query("UPDATE incident_events SET kind = 'x'").execute(&mut c).await.err();
    assert!(upd.is_some(), "the operator cannot update");
}

// ----------------------------------------------------------------------------------------
// Bugs found while writing these tests, fixed since: each test states the behaviour.
// ----------------------------------------------------------------------------------------

/// Lines deleted from the journal's end leave a valid chain: the database copy shows them
/// missing, and a line written anew in their place is a conflict, not a quiet copy.
#[tokio::test]
async fn verify_finds_a_deleted_tail_through_the_database_copy() {
    let t = test_db().await;
    let w = World::new();
    let id = w.open("Tail check", 2).await;
    for note in ["first note", "second note"] {
        w.db(&t.url, &["incident", "note", note]).await.code(0).clean();
    }
    assert_eq!(db_chain(&t, &id).await.len(), 3);
    w.db(&t.url, &["incident", "verify"]).await.code(0).clean().says("Database copy: 3 entries, matching.");
    // Without a database at hand the chain is all there is, and verify says so.
    w.ic(&["incident", "verify"]).await.code(0).clean().says("Database copy not checked");

    // The last line deleted.
    let path = w.journal(&id);
    let original = std::fs::read_to_string(&path).expect("journal");
    let shortened: String = original.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, &shortened).expect("write");
    w.ic(&["incident", "verify"]).await.code(0).clean().says("Journal intact: 2 entries");
    let out = w.db(&t.url, &["incident", "verify"]).await;
    out.code(1).clean().says("the copy holds entry 3 that the journal no longer has (lines deleted)");
    let j = w.db(&t.url, &["--json", "incident", "verify"]).await.code(1).json();
    assert_eq!(j["database_copy"]["checked"], true, "{j}");

    // A note written in its place (seq 3 again): refused by the copy, named by verify.
    let note = w.db(&t.url, &["incident", "note", "rewritten history"]).await;
    note.code(0).clean();
    assert!(note.stderr.contains("disagrees with its database copy: entry 3 differs"), "{}", note.stderr);
    w.db(&t.url, &["incident", "verify"]).await.code(1).clean().says("entry 3 differs from the copy");
    let copy = db_chain(&t, &id).await;
    assert_eq!(copy.len(), 3, "the copy keeps what it had");
    assert_eq!(copy, chain(&original.lines().map(|l| serde_json::from_str(l).expect("json")).collect::<Vec<Value>>()));
}

#[tokio::test]
async fn concurrent_new_incidents_get_their_own_journals() {
    let w = World::new();
    let titles: Vec<String> = (1..=8).map(|n| format!("parallel {n}")).collect();
    let args: Vec<[&str; 7]> =
        titles.iter().map(|t| ["--json", "incident", "new", "--title", t.as_str(), "--level", "2"]).collect();
    let runs = args.iter().map(|a| w.ic(a));
    let outs = futures::future::join_all(runs).await;
    let mut ids = std::collections::BTreeSet::new();
    for out in &outs {
        let j = out.code(0).clean().json();
        ids.insert(j["incident"].as_str().expect("id").to_string());
    }
    assert_eq!(ids.len(), titles.len(), "every incident its own id");
    for id in &ids {
        assert_eq!(w.kinds(id), ["incident_opened"], "{id} holds one incident");
    }
}

#[tokio::test]
async fn two_journals_of_one_incident_id_are_reported_not_spliced() {
    let t = test_db().await;
    let (a, b) = (World::new(), World::new());
    // Ids cannot collide any more (they carry a random part), but an incident's directory
    // can be copied to a second machine: both journals then go on under one id.
    let id = a.open("opened on machine A", 2).await;
    let copied = b.incidents().join(&id);
    std::fs::create_dir_all(&copied).expect("mkdir");
    std::fs::copy(a.journal(&id), copied.join("journal.jsonl")).expect("copy the journal");
    b.ic(&["incident", "switch", &id]).await.code(0).clean();
    for note in ["a1", "a2"] {
        a.db(&t.url, &["incident", "note", note]).await.code(0);
    }
    let mut warned = false;
    for note in ["b1", "b2", "b3"] {
        let out = b.db(&t.url, &["incident", "note", note]).await;
        warned |= out.stderr.contains("differs");
    }
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT seq, prev, hash FROM incident_events WHERE incident_id = $1 ORDER BY seq")
            .bind(&id)
            .fetch_all(&t.pool)
            .await
            .expect("incident_events");
    let chained = rows.windows(2).all(|p| p[1].1 == p[0].2);
    assert!(warned || chained, "B's entries were appended to A's chain without a word: {rows:?}");
}

#[tokio::test]
async fn record_incident_events_reports_a_conflict_within_one_call() {
    let t = test_db().await;
    let genesis = "0".repeat(64);
    // Two versions of seq 1 in one call.
    let both = json!([made_up_entry(1, &genesis, "a"), made_up_entry(1, &genesis, "b")]);
    let v: Value = sqlx::query_scalar("SELECT record_incident_events('INC-A', $1)")
        .bind(both)
        .fetch_one(&t.pool)
        .await
        .expect("record");
    assert_eq!(v["success"], false, "two versions of seq 1 in one call: {v}");
    assert_eq!(v["conflicts"], json!([1]), "{v}");
}

#[tokio::test]
async fn record_incident_events_reports_a_conflict_with_a_concurrent_copy() {
    use sqlx::Connection;
    let t = test_db().await;
    let entry = |seq: i64, text: &str| json!([made_up_entry(seq, &"0".repeat(64), text)]);
    // Two consoles copying different versions of seq 1 at the same time.
    let mut first = t.conn().await;
    let mut tx = first.begin().await.expect("begin");
    let v: Value = sqlx::query_scalar("SELECT record_incident_events('INC-B', $1)")
        .bind(entry(1, "a"))
        .fetch_one(&mut *tx)
        .await
        .expect("first copy");
    assert_eq!(v["success"], true, "{v}");
    let url = t.url.clone();
    let second = tokio::spawn(async move {
        let mut c = sqlx::PgConnection::connect(&url).await.expect("second connection");
        sqlx::query_scalar::<_, Value>("SELECT record_incident_events('INC-B', $1)")
            .bind(entry(1, "b"))
            .fetch_one(&mut c)
            .await
            .expect("second copy")
    });
    // The second call waits on the first's uncommitted row.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.commit().await.expect("commit the first copy");
    let v = second.await.expect("join");
    assert_eq!(v["success"], false, "the second copy differs from the stored one: {v}");
}

#[tokio::test]
async fn a_closed_stdout_is_not_a_crash() {
    let w = World::new();
    w.open("Pipe", 2).await;
    let mut c = w.console();
    c.args(["incident", "show"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    // The reader goes away before the first line is written, as `| head -0` does.
    drop(child.stdout.take());
    let out = child.wait_with_output().await.expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
}

/// A config file with a bad key binding is the console's problem: templates still list and
/// a report can still be written (with no public domains, the stricter leak check).
#[tokio::test]
async fn a_broken_config_file_does_not_stop_templates_or_the_report() {
    let w = World::new();
    std::fs::write(w.root().join("config.toml"), "[keys]\nfly = [\"f\"]\n").expect("write config");
    w.ic(&["config", "check"]).await.code(2).clean();
    w.ic(&["template", "list"]).await.code(0).clean().says("customer_notice");
    w.open("Duplicate executions", 1).await;
    for (name, value) in [("summary", "s"), ("root_cause", "r"), ("lessons_learned", "l")] {
        w.ic(&["incident", "field", name, value]).await.code(0).clean();
    }
    w.ic(&["incident", "report"]).await.code(0).clean().says("Report written to");
}

// ----------------------------------------------------------------------------------------
// 7. The incident's times and its close (issue 10, items 6 and 15)
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn times_set_by_the_commander_reach_the_messages_and_the_report_and_closing_stops_the_timers() {
    let w = World::new();
    let id = w.open("Duplicate GBPUSD executions", 3).await;
    let opened: chrono::DateTime<chrono::Utc> =
        w.entries(&id)[0]["at"].as_str().and_then(|s| s.parse().ok()).expect("the opening's time");
    // The burst began at 13:02 the day before the console opened the incident; it was
    // noticed at 13:40.
    let day = (opened - chrono::Duration::days(1)).format("%Y-%m-%d").to_string();
    let (began, detected) = (format!("{day} 13:02"), format!("{day} 13:40"));

    // Before any time is set: impact began is not guessed, detection is the opening.
    let show = w.ic(&["incident", "show"]).await;
    show.code(0).clean().says("impact began not set").says("(incident opened)");

    w.ic(&["incident", "time", "impact-began", &began]).await.code(0).clean().says("impact began set to");
    w.ic(&["incident", "time", "detected", &detected]).await.code(0).clean();
    let set: Vec<Value> =
        w.entries(&id).into_iter().filter(|e| e["kind"] == "time_set").map(|e| e["data"].clone()).collect();
    assert_eq!(
        set,
        [
            json!({ "which": "impact_began", "at": format!("{day}T13:02:00Z"), "source": "commander" }),
            json!({ "which": "detected", "at": format!("{day}T13:40:00Z"), "source": "commander" }),
        ]
    );

    // Out of order, in the future, or not a time: refused (exit 2), nothing appended.
    let before = w.kinds(&id).len();
    let early = w.ic(&["incident", "time", "detected", &format!("{day} 12:00")]).await;
    early.code(2).clean().complains("is before impact began");
    w.ic(&["incident", "time", "mitigated", "2099-01-01 00:00"]).await.code(2).clean().complains("in the future");
    w.ic(&["incident", "time", "mitigated", "yesterday"]).await.code(2).clean().complains("not a time");
    w.ic(&["incident", "time", "noticed", &began]).await.code(2).clean().complains("no time \"noticed\"");
    assert_eq!(w.kinds(&id).len(), before, "a refused time appends nothing");

    // The customer notice says when the difficulties began: 13:02, not the opening.
    let notice = w
        .ic(&[
            "template",
            "render",
            "customer_notice",
            "--set",
            "customer_impact=Some orders were executed twice.",
            "--set",
            "customer_resolution=2 hours",
        ])
        .await;
    notice.code(0).clean().says(&format!("Since {day} 13:02 UTC, we have been experiencing technical difficulties"));
    let internal =
        w.ic(&["template", "render", "internal_alert", "--set", "impact=x", "--set", "estimated_resolution=y"]);
    internal
        .await
        .code(0)
        .says(&format!("(impact began {day} 13:02 UTC, "))
        .says(&format!("Detected: {day} 13:40 UTC"));

    for (name, value) in
        [("summary", "A burst of duplicates."), ("root_cause", "A retry."), ("lessons_learned", "Idempotency.")]
    {
        w.ic(&["incident", "field", name, value]).await.code(0).clean();
    }
    let report_file = w.root().join("report.md");
    let report_path = report_file.to_str().expect("a path");
    w.ic(&["incident", "report", "--out", report_path]).await.code(0).clean();
    let report = std::fs::read_to_string(&report_file).expect("the report");
    let opened_minute = opened.format("%Y-%m-%d %H:%M UTC").to_string();
    for needle in [
        format!("| Impact began | {day} 13:02 UTC (commander) |"),
        format!("| Detected | {day} 13:40 UTC (commander) |"),
        "from impact began (still open) |".to_string(),
        format!("| Incident opened | {opened_minute} |"),
        "| Closed | not closed |".to_string(),
    ] {
        assert!(report.contains(&needle), "missing {needle:?} in:\n{report}");
    }
    assert!(!report.lines().any(|l| l.starts_with("| Started |")), "{report}");
    // The report does not list its own writing as open.
    assert!(!report.contains("Post-incident report written"), "{report}");

    // Close: resolved now, the incident closed, no update due any more.
    assert!(w.ic(&["incident", "show"]).await.code(0).stdout.contains("Next internal update"));
    w.ic(&["incident", "close", "--reason", "burst reversed, audit clean"]).await.code(0).clean().says("CLOSED");
    let kinds = w.kinds(&id);
    assert_eq!(kinds[kinds.len() - 2..], ["time_set", "incident_closed"]);
    let show = w.ic(&["incident", "show"]).await;
    show.code(0).clean().says(&format!("{id}  Level 3 CRITICAL  CLOSED")).says("CLOSED at").says("(no update due)");
    assert!(!show.stdout.contains("Next internal update"), "{}", show.stdout);
    assert!(!show.stdout.contains("First customer notice: "), "{}", show.stdout);
    assert!(
        show.stdout.contains("the time box no longer counts") && !show.stdout.contains("left (time box"),
        "{}",
        show.stdout
    );
    let ctx = w.ic(&["--json", "incident", "show"]).await.code(0).clean().json()["context"].clone();
    assert!(ctx.get("next_update_due").is_none(), "{ctx}");
    assert!(ctx.get("next_customer_notice_due").is_none(), "{ctx}");
    assert_eq!((&ctx["incident"]["closed"], &ctx["incident"]["status"]), (&json!(true), &json!("Closed")), "{ctx}");
    w.ic(&["incident", "close", "--reason", "again"]).await.code(2).clean().complains("closed at");
    w.ic(&["incident", "list"]).await.code(0).clean().says(&format!("{id}  L3 CRITICAL  CLOSED"));
    assert_eq!(w.ic(&["--json", "incident", "list"]).await.code(0).json()[0]["closed"], true);

    w.ic(&["incident", "report", "--out", report_path]).await.code(0).clean();
    let report = std::fs::read_to_string(&report_file).expect("the report");
    assert!(report.contains("| Closed | ") && report.contains(": burst reversed, audit clean |"), "{report}");
    assert!(!report.contains("| Resolved | not yet |") && !report.contains("(still open)"), "{report}");
    assert!(report.contains("from impact began |"), "{report}");
}

#[tokio::test]
async fn impact_began_can_be_taken_from_the_first_execution_of_the_burst() {
    let t = test_db().await;
    let url = t.url.as_str();
    let w = World::new();
    let user = account(&t.pool, "100000").await;
    let first = executed(&t.pool, user, "1000", None).await;
    executed(&t.pool, user, "1000", None).await;
    let first_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT executed_at FROM orders WHERE id = $1")
        .bind(first)
        .fetch_one(&t.pool)
        .await
        .expect("executed_at");
    let id = w.open("EURUSD burst", 3).await;
    let (from, to) = (
        (first_at - chrono::Duration::minutes(1)).to_rfc3339(),
        (first_at + chrono::Duration::minutes(1)).to_rfc3339(),
    );

    // A window the burst is not in: nothing set.
    let before = w.kinds(&id).len();
    let early = (first_at - chrono::Duration::minutes(5)).to_rfc3339();
    let args =
        ["incident", "time", "impact-began", "--from-orders", "--symbol", "EURUSD", "--from", &early, "--to", &from];
    w.db(url, &args).await.code(2).complains("no execution of EURUSD in that window");
    assert_eq!(w.kinds(&id).len(), before);

    let args =
        ["incident", "time", "impact-began", "--from-orders", "--symbol", "eurusd", "--from", &from, "--to", &to];
    w.db(url, &args).await.code(0).says("impact began set to");
    let entry = w.entries(&id).into_iter().rev().find(|e| e["kind"] == "time_set").expect("a time_set entry");
    let at: chrono::DateTime<chrono::Utc> = entry["data"]["at"].as_str().and_then(|s| s.parse().ok()).expect("at");
    assert_eq!(at, first_at, "the first execution's time: {entry}");
    let source = entry["data"]["source"].as_str().expect("source");
    assert!(source.starts_with("observed: first EURUSD execution between "), "{source}");
    assert_eq!(entry["data"]["which"], "impact_began");
}
