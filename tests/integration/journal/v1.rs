//! Compatibility with journals already on disk. `tests/fixtures/journal_v1.jsonl` was
//! written by the code of commit cdcbb63 (before journal entries were typed) and covers
//! every kind that code writes, both forms of `maintenance`, a batch rollback's `null`s,
//! text with quotes, line breaks and non-ASCII, and one kind this code does not know.
//! `journal_v1.fold.txt` is what that code folded it into and said about it. Neither file
//! may ever be regenerated: they are the old format's witness.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use incident_console::core::report::{context_of, describe};
use incident_console::core::workflow::checklist::Checklist;
use incident_console::core::workflow::incident::{Incident, Observation, Role, Step};
use incident_console::core::workflow::{Level, Phase};
use incident_console::store::incidents::{IncidentStore, fold};
use incident_console::store::journal::{Entry, Event, Journal, Verification};
use serde_json::json;
use uuid::Uuid;

const FIXTURE: &str = "tests/fixtures/journal_v1.jsonl";
const FOLD: &str = "tests/fixtures/journal_v1.fold.txt";
/// Lines in the fixture.
const LINES: u64 = 42;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The fixture's clock: 2026-11-26 03:00:00.123456 UTC plus `secs`.
fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 3, 0, 0).single().expect("valid time")
        + Duration::microseconds(123_456)
        + Duration::seconds(secs)
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(0x0192_5d3e_0000_7000_8000_0000_0000_0000 | n)
}

/// Writes the v1 journal through the incident store, as the CLI and the console do, plus
/// one line of a kind a newer console might write. Returns the journal's path.
pub fn write_v1(root: &Path) -> PathBuf {
    let store = IncidentStore::new(root.to_path_buf());
    let title = "Duplicate executions on \"BTC-EUR\" — 60 orders";
    let mut inc =
        // The id the code of the time gave it (ids carry a random part since).
        store.create_with_id("INC-20261126-0300", title, Level::Minor, "  first look  ", "alice", t(0), Checklist::shipped())
            .expect("create");
    let mut n = 0;
    let mut step = |inc: &mut incident_console::store::incidents::OpenIncident, by: &str, s: Step| {
        n += 1;
        inc.act(s, by, t(n * 30)).unwrap_or_else(|e| panic!("step {n}: {e}"));
    };
    let observe = |o: Observation| Step::Observe(o);
    // Level 1: what the console observed ticks items by itself.
    step(&mut inc, "alice", observe(Observation::Postcheck { order: uuid(1), successful: true, failed: vec![] }));
    step(&mut inc, "alice", observe(Observation::Audit { violations: 0 }));
    step(
        &mut inc,
        "alice",
        observe(Observation::MessageCopied {
            template: "internal_alert".into(),
            audience: "internal".into(),
            path: "/data/incidents/INC-20261126-0300/messages/internal_alert-1.md".into(),
        }),
    );
    step(&mut inc, "alice", Step::SetLevel { to: Level::Moderate, reason: "several components".into() });
    step(&mut inc, "alice", Step::Tick { item: "detect".into() });
    step(&mut inc, "alice", Step::Skip { item: "classify".into(), reason: "done by phone".into() });
    step(&mut inc, "alice", Step::AssignItem { item: "preserve_state".into(), role: Role::DatabaseAdmin });
    step(&mut inc, "alice", Step::AssignRole { role: Role::TechnicalLead, person: "Bo".into() });
    step(&mut inc, "bob", Step::AssignRole { role: Role::TechnicalLead, person: "Zoë Ångström".into() });
    step(&mut inc, "alice", Step::AssignRole { role: Role::DatabaseAdmin, person: "Dee".into() });
    step(&mut inc, "alice", Step::Note { text: "spike at 02:58 on \"BTC-EUR\"\nsecond line: 5 € \\ ok".into() });
    step(&mut inc, "alice", Step::SetField { name: "impact".into(), value: "60 orders".into() });
    step(&mut inc, "alice", Step::SetField { name: "impact".into(), value: "61 orders, 12 users".into() });
    step(&mut inc, "alice", Step::Waive { name: "estimated_resolution".into() });
    step(&mut inc, "alice", Step::Waive { name: "workaround".into() });
    step(&mut inc, "alice", Step::SetField { name: "workaround".into(), value: "none".into() });
    step(&mut inc, "alice", observe(Observation::Maintenance { on: true, reason: "burst".into(), verified: true }));
    step(&mut inc, "alice", Step::Advance { to: Phase::Response });
    step(
        &mut inc,
        "dba",
        observe(Observation::Precheck { order: uuid(2), user: uuid(3), ready: true, failed: vec![] }),
    );
    step(
        &mut inc,
        "dba",
        observe(Observation::Precheck {
            order: uuid(4),
            user: uuid(5),
            ready: false,
            failed: vec!["balance_sufficient".into(), "not_already_rolled_back".into()],
        }),
    );
    step(
        &mut inc,
        "dba",
        observe(Observation::Rollback {
            mode: "single".into(),
            order: Some(uuid(2)),
            user: Some(uuid(3)),
            orders: 1,
            users: 1,
            refunded: "1234.50".into(),
            success: true,
            detail: "rolled back 1 order".into(),
            reason: "duplicate execution".into(),
            operation: None,
        }),
    );
    step(
        &mut inc,
        "dba",
        observe(Observation::Postcheck { order: uuid(2), successful: false, failed: vec!["position_restored".into()] }),
    );
    step(
        &mut inc,
        "dba",
        observe(Observation::Rollback {
            mode: "batch".into(),
            order: None,
            user: None,
            orders: 59,
            users: 11,
            refunded: "98765.4321".into(),
            success: false,
            detail: "stopped after 59 of 60: lock timeout".into(),
            reason: "duplicate execution burst".into(),
            operation: None,
        }),
    );
    step(
        &mut inc,
        "dba",
        observe(Observation::Rollback {
            mode: "transaction".into(),
            order: Some(uuid(6)),
            user: Some(uuid(7)),
            orders: 3,
            users: 1,
            refunded: "0".into(),
            success: true,
            detail: "rolled back 3 orders".into(),
            reason: "same transaction".into(),
            operation: None,
        }),
    );
    step(&mut inc, "dba", observe(Observation::Postcheck { order: uuid(6), successful: true, failed: vec![] }));
    step(&mut inc, "dba", observe(Observation::Audit { violations: 3 }));
    step(
        &mut inc,
        "alice",
        observe(Observation::MaintenanceSeen {
            on: false,
            reason: "switched off by hand".into(),
            by: Some("carol@psql".into()),
            since: Some(t(900)),
        }),
    );
    step(
        &mut inc,
        "alice",
        observe(Observation::MaintenanceSeen { on: true, reason: "back on".into(), by: None, since: None }),
    );
    step(&mut inc, "alice", observe(Observation::Maintenance { on: false, reason: "fixed".into(), verified: true }));
    step(&mut inc, "alice", observe(Observation::Maintenance { on: true, reason: "again".into(), verified: false }));
    step(&mut inc, "alice", observe(Observation::Maintenance { on: false, reason: "done".into(), verified: false }));
    step(
        &mut inc,
        "alice",
        observe(Observation::MessageCopied {
            template: "customer_notice".into(),
            audience: "customer".into(),
            path: "/data/incidents/INC-20261126-0300/messages/customer_notice-1.md".into(),
        }),
    );
    step(&mut inc, "alice", Step::Advance { to: Phase::PostIncident });
    step(
        &mut inc,
        "alice",
        observe(Observation::ReportWritten {
            path: "/data/incidents/INC-20261126-0300/reports/post_incident_report-1.md".into(),
            hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        }),
    );
    let unknown = json!({ "minutes": 12, "breach": { "b": [1, null, "x"], "a": true }, "ratio": 1.5 });
    inc.journal.append("alice", &Event::from_parts("sla_breached", unknown), t(2000)).expect("append an unknown kind");
    inc.journal.path().to_path_buf()
}

/// What the code makes of a journal: the folded incident, each entry's timeline text and
/// the messages' context. Compared as text so that a difference reads as a diff.
fn summary(inc: &Incident, entries: &[Entry], verification: &Verification) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("id {:?} title {:?} opened {} by {:?}", inc.id, inc.title, inc.opened_at, inc.opened_by));
    line(format!("level {:?} phase {:?} entries {}", inc.level, inc.phase, inc.entries));
    line(format!("level_history {:?}", inc.level_history));
    line(format!("phase_history {:?}", inc.phase_history));
    line(format!("items {:?}", inc.items));
    line(format!("item_roles {:?}", inc.item_roles));
    line(format!("roles {:?}", inc.roles));
    line(format!("handovers {:?}", inc.handovers));
    line(format!("maintenance {:?}", inc.maintenance));
    line(format!("fields {:?}", inc.fields));
    line(format!("waived {:?}", inc.waived));
    for r in &inc.records {
        line(format!("record {} {:?} {} {}", r.at, r.by, r.event.kind(), r.event.data()));
    }
    for e in entries {
        line(format!("timeline {} {:?} {} {:?}", e.seq, e.operator, e.kind(), describe(e)));
    }
    let now = t(3600);
    let ctx = context_of(inc, &Checklist::shipped(), entries, Some(verification), now);
    line(format!("context {}", serde_json::to_string_pretty(&ctx.to_value()).expect("context")));
    out
}

/// Today's code writes the same journal, byte for byte, from the same steps.
#[test]
fn v1_journal_is_written_byte_for_byte_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = std::fs::read(write_v1(dir.path())).expect("read the new journal");
    let v1 = std::fs::read(fixture(FIXTURE)).expect("read the fixture");
    let (written, v1) = (String::from_utf8_lossy(&written), String::from_utf8_lossy(&v1));
    for (n, (new, old)) in written.lines().zip(v1.lines()).enumerate() {
        assert_eq!(new, old, "line {}", n + 1);
    }
    assert_eq!(written.lines().count(), v1.lines().count());
}

/// The v1 journal verifies, reads and folds into what the old code made of it.
#[test]
fn v1_journal_verifies_reads_and_folds_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal.jsonl");
    std::fs::copy(fixture(FIXTURE), &path).expect("copy the fixture");
    let j = Journal::open(&path).expect("open");
    let verification = j.verify().expect("verify");
    assert!(matches!(verification, Verification::Intact { entries: LINES, .. }), "{verification:?}");
    let entries = j.entries().expect("entries");
    assert_eq!(entries.len() as u64, LINES);
    let inc = fold(&entries).expect("fold");
    let expected = std::fs::read_to_string(fixture(FOLD)).expect("read the fold fixture");
    let got = summary(&inc, &entries, &verification);
    for (n, (got, old)) in got.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, old, "summary line {}", n + 1);
    }
    assert_eq!(got.lines().count(), expected.lines().count());
}

/// Every v1 line reads into its typed event (all but the one unknown kind), and the new
/// code writes each entry back to the very bytes on disk: same canonical data, same hash.
#[test]
fn v1_lines_read_typed_and_write_back_the_same_bytes() {
    let text = std::fs::read_to_string(fixture(FIXTURE)).expect("read the fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal.jsonl");
    std::fs::write(&path, &text).expect("copy the fixture");
    let entries = Journal::open(&path).expect("open").entries().expect("entries");
    assert_eq!(entries.len() as u64, LINES);
    let mut variants = std::collections::BTreeSet::new();
    for (line, e) in text.lines().zip(&entries) {
        let unknown = matches!(e.event, Event::Unknown(_));
        assert_eq!(unknown, e.kind() == "sla_breached", "line {}: {:?}", e.seq, e.event);
        variants.insert(format!("{:?}", e.event).split('(').next().unwrap_or_default().to_string());
        let hashed = e.hashed_text().expect("hashed text");
        let fields = hashed.strip_suffix('}').expect("an object");
        assert_eq!(format!("{fields},\"hash\":\"{}\"}}", e.hash), line, "line {}", e.seq);
        assert_eq!(e.compute_hash().expect("hash"), e.hash);
        // As JSON (`--json`, the database's copy) the entry has the line's members.
        let as_json = serde_json::to_value(e).expect("entry as JSON");
        assert_eq!(as_json, serde_json::from_str::<serde_json::Value>(line).expect("the line as JSON"));
    }
    // Every variant is in the fixture, both maintenance forms included.
    let expected = [
        "Audit",
        "FieldSet",
        "FieldWaived",
        "IncidentOpened",
        "ItemAssigned",
        "ItemSkipped",
        "ItemTicked",
        "LevelChanged",
        "Maintenance",
        "MaintenanceSeen",
        "MessageCopied",
        "Note",
        "PhaseChanged",
        "Postcheck",
        "Precheck",
        "ReportWritten",
        "RoleAssigned",
        "Rollback",
        "Unknown",
    ];
    assert_eq!(variants.iter().map(String::as_str).collect::<Vec<_>>(), expected);
}
