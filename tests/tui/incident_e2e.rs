//! End-to-end tests of the incident screen: the real binary in a private tmux server, a
//! Level 3 drill driven by keys from classification to the post-incident report, checked
//! against the screen, the files the console writes (journal, messages, report), the
//! headless `incident verify` and the database; the journal working while the database is
//! unreachable; and a report written right after a rollback citing a
//! ledger audit taken after it.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

use crate::support::cli::BIN;
use crate::support::db::{BURST_SQL, TestDb, assert_consistent, count, seeded};
use crate::support::tmux::{Console, WAIT as T};

const TITLE: &str = "GBPUSD duplicate executions";
const MAINTENANCE_REASON: &str = "stop new orders during the GBPUSD rollback";
const ROLLBACK_REASON: &str = "duplicate executions of deploy 4711";
const COMMANDER: &str = "Dana Okafor";
/// The response team and an escalation contact, as `[[contact]]` entries.
const CONFIG: &str = r#"
[[contact]]
role = "incident_commander"
name = "Dana Okafor"
phone = "+1 555 0100"
email = "dana@example.com"

[[contact]]
role = "cto"
name = "Sam Rivera"
phone = "+1 555 0199"
"#;

// ----------------------------------------------------------------------------------------
// The database
// ----------------------------------------------------------------------------------------

/// The burst's order ids and user ids.
async fn burst_ids(t: &TestDb) -> Vec<(Uuid, Uuid)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT id, user_id FROM orders WHERE {BURST_SQL}")))
        .fetch_all(&t.pool)
        .await
        .expect("burst query")
}

/// The incident's entries as copied to the database: (seq, hash), in order.
async fn db_events(t: &TestDb, incident: &str) -> Vec<(i64, String)> {
    sqlx::query_as("SELECT seq, hash FROM incident_events WHERE incident_id = $1 ORDER BY seq")
        .bind(incident)
        .fetch_all(&t.pool)
        .await
        .expect("incident_events query")
}

// ----------------------------------------------------------------------------------------
// Files the console writes
// ----------------------------------------------------------------------------------------

/// Private HOME, data directory and config file for one console and the commands run
/// after it.
struct Dirs {
    home: tempfile::TempDir,
    data: tempfile::TempDir,
    config_dir: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let d = Dirs {
            home: tempfile::tempdir().expect("temp HOME"),
            data: tempfile::tempdir().expect("temp data dir"),
            config_dir: tempfile::tempdir().expect("temp config dir"),
        };
        std::fs::write(d.config(), CONFIG).expect("write the config file");
        d
    }

    fn config(&self) -> PathBuf {
        self.config_dir.path().join("config.toml")
    }

    /// The one incident's directory under the data directory, and its id.
    fn incident(&self) -> (String, PathBuf) {
        let root = self.data.path().join("incidents");
        let dirs: Vec<PathBuf> = std::fs::read_dir(&root)
            .expect("the incidents directory exists")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        assert_eq!(dirs.len(), 1, "exactly one incident under {}: {dirs:?}", root.display());
        let id = dirs[0].file_name().expect("a directory name").to_string_lossy().into_owned();
        (id, dirs[0].clone())
    }

    /// `incident-console ARGS` as a headless command on the same data directory.
    fn run(&self, args: &[&str]) -> std::process::Output {
        StdCommand::new(BIN)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", self.home.path())
            .env("INCIDENT_CONSOLE_DATA_DIR", self.data.path())
            .env("INCIDENT_CONSOLE_CONFIG", self.config())
            .env("INCIDENT_OPERATOR", "e2e")
            .stdin(Stdio::null())
            .output()
            .expect("run a headless command")
    }
}

/// The journal's lines, parsed.
fn journal(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("journal.jsonl")).expect("read journal.jsonl");
    text.lines().map(|l| serde_json::from_str(l).expect("a journal line is JSON")).collect()
}

fn kinds(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| e["kind"].as_str().unwrap_or("?").to_string()).collect()
}

/// The files of a directory (none when it does not exist).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(r) => r.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// The one file of `dir` whose name contains `name`.
fn file_named(dir: &Path, name: &str) -> PathBuf {
    let found: Vec<PathBuf> = files_in(dir)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(name)))
        .collect();
    assert_eq!(found.len(), 1, "one {name} file in {}: {:?}", dir.display(), files_in(dir));
    found[0].clone()
}

/// A markdown section: from its heading to the next heading of the same level.
fn section<'a>(text: &'a str, heading: &str) -> &'a str {
    let start = text.find(heading).unwrap_or_else(|| panic!("no {heading:?} in the report:\n{text}"));
    let body = &text[start + heading.len()..];
    let end = body.find("\n## ").unwrap_or(body.len());
    &body[..end]
}

// ----------------------------------------------------------------------------------------
// The binary in tmux
// ----------------------------------------------------------------------------------------

/// `incident-console ARGS` in tmux with INCIDENT_OPERATOR=e2e, the private HOME, data
/// directory and config file of `dirs`, and no DATABASE_URL.
fn open(dirs: &Dirs, args: &[&str]) -> Console {
    Console::options()
        .home(dirs.home.path())
        .env("INCIDENT_CONSOLE_DATA_DIR", dirs.data.path())
        .env("INCIDENT_CONSOLE_CONFIG", dirs.config())
        .open(args)
}

/// In the focused Messages pane: moves the cursor to the message titled `title`.
async fn select_message(c: &Console, title: &str) -> String {
    let s = c.wait_until("the Messages pane's cursor", T, |s| message_rows(s).iter().any(|l| l.contains("┃▶"))).await;
    let rows = message_rows(&s);
    let at = rows.iter().position(|l| l.contains("┃▶")).expect("a selected row");
    let to = rows.iter().position(|l| l.contains(title)).unwrap_or_else(|| panic!("no message {title:?}:\n{s}"));
    let key = if to > at { "j" } else { "k" };
    for _ in 0..to.abs_diff(at) {
        c.keys(&[key]);
    }
    c.wait_until(&format!("{title} under the cursor"), T, |s| selected_line(s).is_some_and(|l| l.contains(title))).await
}

/// On the rollback screen: filters the burst, selects all matching and rolls it back
/// as a batch (reason, then the count typed).
async fn batch_rollback_burst(c: &Console) {
    c.wait_for("Orders ·", T).await;
    c.keys(&["/"]);
    c.wait_for("typing the filter", T).await;
    c.type_text("GBPUSD executed from:13:02 to:13:06");
    c.keys(&["Enter"]);
    c.wait_for("of 60", T).await;
    c.keys(&["A"]);
    c.wait_for("Batch: every executed order matching the filter", T).await;
    c.keys(&["b"]);
    let s = c.wait_for("Reason (required):", T).await;
    assert!(s.contains("60 order(s) (60 executed)"), "{s}");
    c.enter_text(ROLLBACK_REASON).await;
    c.wait_for("Type 60 to roll back", T).await;
    c.type_text("60");
    c.keys(&["Enter"]);
    let s = c.wait_for("60 rolled back", Duration::from_secs(30)).await;
    assert!(s.contains("60 rolled back, 0 already rolled back, 0 refused, 0 failed"), "{s}");
}

/// From the rollback screen: the incident screen's Messages pane, the report's three
/// fields filled, then W.
async fn write_report(c: &Console) {
    c.keys(&["i"]);
    c.wait_until("the checklist", T, |s| s.contains("┏ ▶ Checklist")).await;
    // Checklist, Team, Messages: the panes as drawn, left column then right.
    c.keys(&["Tab"]);
    c.keys(&["Tab"]);
    let s = select_message(c, "Post-incident report").await;
    assert!(
        selected_line(&s).is_some_and(|l| l.contains("needs summary, root_cause, lessons_learned")),
        "the report needs its three fields:\n{s}"
    );
    fill(c, "summary", "Deploy 4711 executed 60 GBPUSD orders twice; all 60 were rolled back.").await;
    fill(c, "root_cause", "A retry loop in deploy 4711 resent acknowledged orders.").await;
    fill(c, "lessons_learned", "Idempotency keys must survive retries.").await;
    c.wait_until("the report to be ready", T, |s| selected_line(s).is_some_and(|l| l.contains("ready"))).await;
    c.keys(&["W"]);
    c.wait_for("Report written to", T).await;
}

/// Fills the selected message's next required field (`name`) with `value`; its dialog
/// names it in words ("Fill: Root cause (post-incident report)").
async fn fill(c: &Console, name: &str, value: &str) {
    let words = name.replace('_', " ");
    let title = format!("Fill: {}{}", words[..1].to_uppercase(), &words[1..]);
    c.keys(&["f"]);
    c.wait_for(&title, T).await;
    c.enter_text(value).await;
    c.wait_until(&format!("{name} to be filled"), T, |s| {
        !s.contains(&title) && selected_line(s).is_some_and(|l| !l.contains(name))
    })
    .await;
}

/// The row under the cursor of the focused incident pane (drawn with a thick border; its
/// title's mark is "┏ ▶", a row's is "┃▶").
fn selected_line(screen: &str) -> Option<&str> {
    screen.lines().find(|l| l.contains("┃▶"))
}

/// The rows of the focused Messages pane's list, in order: each says its audience and
/// whether it is ready or what it needs.
fn message_rows(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|l| {
            (l.contains("┃▶") || l.contains("┃ "))
                && (l.contains(" internal ") || l.contains(" customer "))
                && (l.contains(" needs ") || l.contains(" ready"))
        })
        .collect()
}

/// The line of the checklist item whose text starts with `text`.
fn item_line<'a>(screen: &'a str, text: &str) -> &'a str {
    screen.lines().find(|l| l.contains(&format!("] {text}"))).unwrap_or("")
}

/// What a journal entry must look like.
type EntryCheck<'a> = (&'a str, &'a dyn Fn(&Value) -> bool);

/// `entries` hold, in order, an entry matching each check (others may come between).
fn assert_in_order(entries: &[Value], wanted: &[EntryCheck<'_>]) {
    let mut it = entries.iter();
    for (what, pred) in wanted {
        assert!(it.any(pred), "no {what} after the previous expected entry; the journal's kinds: {:?}", kinds(entries));
    }
}

fn kind_is(e: &Value, kind: &str) -> bool {
    e["kind"].as_str() == Some(kind)
}

/// Poll the database copy of the journal until it holds the file's (seq, hash) list.
async fn wait_for_db_copy(t: &TestDb, id: &str, dir: &Path, timeout: Duration) -> Vec<(i64, String)> {
    let start = Instant::now();
    loop {
        let file: Vec<(i64, String)> = journal(dir)
            .iter()
            .map(|e| (e["seq"].as_i64().expect("seq"), e["hash"].as_str().expect("hash").to_string()))
            .collect();
        let db = db_events(t, id).await;
        if db == file {
            return file;
        }
        assert!(
            start.elapsed() < timeout,
            "incident_events never matched the journal file after {timeout:?}:\nfile {file:?}\ndb   {db:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ----------------------------------------------------------------------------------------
// The Level 3 drill
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_3_drill_from_classification_to_the_report() {
    let started = Instant::now();
    let t = seeded().await;
    let burst = burst_ids(&t).await;
    assert_eq!(burst.len(), 60, "the demo book's burst");
    let dirs = Dirs::new();
    let c = open(&dirs, &["--database-url", &t.url, "--title", TITLE, "--level", "3"]);
    c.wait_until("the Orders pane to list orders", T, |s| {
        s.contains("symbol") && s.contains("quantity") && s.contains("executed")
    })
    .await;
    let s = c.wait_for("maintenance off", T).await;
    assert!(s.contains("L3") && s.contains("CRITICAL"), "the header says Level 3 in words:\n{s}");
    assert!(s.contains(TITLE), "{s}");
    let (id, dir) = dirs.incident();
    assert!(s.contains(&id), "the header names the incident {id}:\n{s}");

    // 1. The incident screen: classify (data corrupted: Level 3), the commander, a tick.
    c.keys(&["i"]);
    c.wait_for("Checklist · Assessment · Level 3", T).await;
    c.keys(&["C"]);
    c.wait_for("Question 1 of 10", T).await;
    // Only "Is data corrupted or lost" (question 2) is a yes.
    for n in 1..=10 {
        c.keys(&[if n == 2 { "y" } else { "n" }]);
        if n < 10 {
            c.wait_for(&format!("Question {} of 10", n + 1), T).await;
        }
    }
    let s = c.wait_for("Proposed:", T).await;
    assert!(s.contains("Level 3 CRITICAL") && s.contains("(unchanged)"), "{s}");
    assert!(s.contains("because: Is data corrupted or lost"), "{s}");
    c.keys(&["Enter"]);
    let s = c
        .wait_until("the classification to be recorded", T, |s| {
            s.contains("level 3 confirmed") && item_line(s, "Classification").contains("[x]")
        })
        .await;
    assert!(!s.contains("Proposed:"), "the dialog closed:\n{s}");

    // Tick "Detection" (the first row).
    assert!(item_line(&s, "Detection").contains("▶[ ]"), "the cursor is on Detection:\n{s}");
    c.keys(&["d"]);
    c.wait_until("Detection to be ticked", T, |s| item_line(s, "Detection").contains("[x]")).await;

    // The Team pane (below the checklist): the commander, pre-filled from the config's
    // contact.
    c.keys(&["Tab"]);
    let s = c
        .wait_until("the Team pane's cursor", T, |s| selected_line(s).is_some_and(|l| l.contains("Incident Commander")))
        .await;
    // The e-mail is cut at the pane's edge at 160 columns.
    assert!(s.contains("on call: Dana Okafor · +1 555 0100"), "{s}");
    assert!(s.contains("Sam Rivera · +1 555 0199"), "the CTO escalation contact:\n{s}");
    c.keys(&["a"]);
    let s = c.wait_for("Who is Incident Commander?", T).await;
    assert!(s.contains(COMMANDER), "the dialog is pre-filled with the on-call commander:\n{s}");
    c.keys(&["Enter"]);
    let s = c
        .wait_until("the commander to be assigned", T, |s| {
            !s.contains("Who is Incident Commander?")
                && selected_line(s).is_some_and(|l| l.contains(COMMANDER) && !l.contains("on call"))
        })
        .await;
    assert!(selected_line(&s).is_some_and(|l| l.contains("+1 555 0100")), "{s}");

    // 2. Maintenance mode on, verified by a probe order, and nothing of the probe left.
    let orders_before = count(&t, "SELECT count(*) FROM orders").await;
    c.keys(&["M"]);
    c.wait_for("Maintenance mode ON: why?", T).await;
    c.enter_text(MAINTENANCE_REASON).await;
    let s = c
        .wait_until("maintenance on and verified in the header", T, |s| {
            // The checklist also draws ' ✓ ', so look at the header's maintenance line itself;
            // a periodic refresh can show 'ON since' before the probe's answer arrives.
            s.lines().any(|l| l.contains("MAINTENANCE ON since") && l.contains(" ✓ "))
                && s.contains("Maintenance mode ON, verified: a probe order was refused")
        })
        .await;
    assert!(!s.contains("UNVERIFIED"), "{s}");
    let m = incident_console::store::db::maintenance_state(&t.pool).await.expect("maintenance state");
    assert!(m.maintenance_mode, "system_settings says maintenance is on: {m:?}");
    assert_eq!(m.maintenance_reason.as_deref(), Some(MAINTENANCE_REASON), "{m:?}");
    assert!(m.maintenance_since.is_some(), "{m:?}");
    assert_eq!(count(&t, "SELECT count(*) FROM orders").await, orders_before, "the probe left no order");
    assert_eq!(count(&t, "SELECT count(*) FROM orders WHERE idempotency_key LIKE 'maintenance-probe-%'").await, 0);

    // 3. Messages: the internal alert, then the customer notice; filled and copied.
    c.keys(&["Tab"]);
    let s = select_message(&c, "Internal alert").await;
    assert!(
        selected_line(&s).is_some_and(|l| l.contains("needs impact, estimated_resolution")),
        "the alert needs its two fields:\n{s}"
    );
    fill(&c, "impact", "GBPUSD orders executed twice between 13:02 and 13:06 UTC").await;
    fill(&c, "estimated_resolution", "2 hours").await;
    let s = c.wait_until("the alert to be ready", T, |s| selected_line(s).is_some_and(|l| l.contains("ready"))).await;
    assert!(s.contains("Maintenance mode: ON since"), "the preview says maintenance is on:\n{s}");
    c.keys(&["y"]);
    let s = c.wait_for("Copied internal_alert", T).await;
    assert!(s.contains("messages/"), "the footer says where the file went:\n{s}");
    assert!(s.contains("tmux paste buffer"), "the footer says the copy reached tmux:\n{s}");
    // What a person pastes with prefix-] is what was copied: read from tmux itself.
    let out = c.tmux().arg("show-buffer").output().expect("tmux show-buffer");
    let pasted = String::from_utf8_lossy(&out.stdout).into_owned();
    let written = std::fs::read_to_string(file_named(&dir.join("messages"), "internal_alert")).expect("the alert file");
    assert!(out.status.success() && pasted == written, "tmux's buffer holds the alert:\n{pasted}\n---\n{written}");
    assert!(pasted.contains("INCIDENT ALERT - Level 3") && pasted.contains("Affected so far:"), "{pasted}");

    let s = select_message(&c, "Customer notice").await;
    assert!(
        selected_line(&s).is_some_and(|l| l.contains("needs customer_impact, customer_resolution")),
        "the customers' estimate is the notice's own field, not the alert's:\n{s}"
    );
    fill(&c, "customer_impact", "Some orders placed this afternoon may show twice in your history.").await;
    // The dialog shows the sentence the field goes into, as the person fills it.
    c.keys(&["f"]);
    let s = c.wait_for("Fill: Customer resolution (customer notice)", T).await;
    assert!(s.contains("In Customer notice:") && s.contains("We expect to resolve this within"), "{s}");
    c.keys(&["Escape"]);
    fill(&c, "customer_resolution", "2 hours").await;
    c.wait_until("the notice to be ready", T, |s| selected_line(s).is_some_and(|l| l.contains("ready"))).await;
    c.keys(&["y"]);
    c.wait_for("Copied customer_notice", T).await;

    let messages = dir.join("messages");
    let alert = std::fs::read_to_string(file_named(&messages, "internal_alert")).expect("read the alert");
    assert!(alert.contains("Level 3 (CRITICAL)") && alert.contains(&id), "{alert}");
    assert!(alert.contains("Incident Commander: Dana Okafor"), "{alert}");
    assert!(alert.contains(MAINTENANCE_REASON), "{alert}");
    let notice = std::fs::read_to_string(file_named(&messages, "customer_notice")).expect("read the notice");
    for (order, user) in &burst {
        for id in [order, user] {
            for form in [id.to_string(), id.simple().to_string(), id.simple().to_string()[..8].to_string()] {
                assert!(!notice.contains(&form), "the customer notice holds the internal id {form}:\n{notice}");
            }
        }
    }
    assert!(notice.contains("New order processing has been temporarily suspended"), "{notice}");
    assert!(notice.contains("New order placement is temporarily unavailable"), "{notice}");
    assert!(notice.contains("within 2 hours"), "{notice}");
    assert!(!notice.contains("[TO FILL"), "{notice}");

    // 4. Response, Recovery; then the batch on the rollback screen.
    for (to, label) in [("Response", "Response"), ("Recovery", "Recovery")] {
        c.keys(&["P"]);
        c.wait_for(&format!("Move to {to}?"), T).await;
        c.keys(&["y"]);
        c.wait_for(&format!("Checklist · {label} · Level 3"), T).await;
    }
    c.keys(&["i"]);
    batch_rollback_burst(&c).await;
    assert_eq!(
        count(&t, &format!("SELECT count(*) FROM orders WHERE {BURST_SQL} AND status = 'rolled_back'")).await,
        60
    );
    assert_eq!(count(&t, "SELECT count(*) FROM orders WHERE status = 'rolled_back'").await, 60);
    assert_consistent(&t.pool).await;

    // 5. The report: its three fields, then W; after the audit that follows the rollback,
    // so nothing is journaled between the report and the reads below.
    wait_for_audit_after_rollback(&c, &dir).await;
    write_report(&c).await;

    let report_path = file_named(&dir.join("reports"), "post_incident_report");
    let report = std::fs::read_to_string(&report_path).expect("read the report");
    let entries = journal(&dir);
    let written = entries.last().expect("the journal has entries");
    assert_eq!(written["kind"], "report_written", "the report is the last entry: {:?}", kinds(&entries));
    assert_eq!(written["data"]["path"].as_str(), Some(report_path.to_string_lossy().as_ref()));
    assert_eq!(
        written["data"]["hash"].as_str(),
        Some(incident_console::core::journal::sha256_hex(report.as_bytes()).as_str()),
        "the journal holds the report's hash"
    );
    // Level history, or the classification that confirmed the level.
    let levels = section(&report, "## Level history");
    assert!(levels.contains("Level 3") && levels.contains("CRITICAL"), "{levels}");
    assert!(report.contains("level 3 confirmed, classified: Is data corrupted or lost"), "{report}");
    let phases = section(&report, "## Time in each phase");
    for p in ["Assessment", "Response", "Recovery"] {
        assert!(phases.contains(p), "{p} in the phases:\n{phases}");
    }
    let rollbacks = section(&report, "## Rollbacks");
    assert!(rollbacks.contains("batch of 60 orders"), "{rollbacks}");
    assert!(rollbacks.contains(ROLLBACK_REASON), "{rollbacks}");
    assert!(rollbacks.contains("60 rolled back"), "{rollbacks}");
    let maintenance = section(&report, "## Maintenance mode");
    assert!(maintenance.contains(MAINTENANCE_REASON) && maintenance.contains("still on"), "{maintenance}");
    let sent = section(&report, "## Messages sent");
    assert!(sent.contains("internal_alert") && sent.contains("customer_notice"), "{sent}");
    let audit = section(&report, "## Ledger audit");
    if entries.iter().any(|e| kind_is(e, "audit")) {
        assert!(audit.contains("found no inconsistencies"), "an audit was recorded:\n{audit}");
    } else {
        assert!(audit.contains("NOT run"), "{audit}");
    }
    // The journal's hash as it was when the report was written: the entry before.
    let before = &entries[entries.len() - 2];
    let hash = before["hash"].as_str().expect("hash");
    assert!(report.contains(&format!("final hash `{hash}` (chain verified)")), "{report}");
    assert!(report.contains(&format!("Journal: {} entries", entries.len() - 1)), "{report}");

    // The database copy catches up before quitting, then q.
    wait_for_db_copy(&t, &id, &dir, Duration::from_secs(10)).await;
    c.keys(&["q"]);
    c.wait_for("console-exited-0", Duration::from_secs(5)).await;

    // 6. After: verify, the journal's order, the database copy.
    let out = dirs.run(&["incident", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "verify: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let entries = journal(&dir);
    let last = entries.last().expect("entries")["hash"].as_str().expect("hash").to_string();
    assert!(stdout.contains(&format!("Journal intact: {} entries, final hash {last}", entries.len())), "{stdout}");
    assert_in_order(
        &entries,
        &[
            ("incident_opened at Level 3", &|e| kind_is(e, "incident_opened") && e["data"]["level"] == 3),
            ("the classification", &|e| {
                (kind_is(e, "level_changed") || kind_is(e, "note"))
                    && e["data"].to_string().contains("classified: Is data corrupted or lost")
            }),
            ("classify ticked", &|e| kind_is(e, "item_ticked") && e["data"]["item"] == "classify"),
            ("detect ticked", &|e| kind_is(e, "item_ticked") && e["data"]["item"] == "detect"),
            ("the commander", &|e| {
                kind_is(e, "role_assigned")
                    && e["data"]["role"] == "incident_commander"
                    && e["data"]["person"] == COMMANDER
            }),
            ("maintenance on, verified", &|e| {
                kind_is(e, "maintenance")
                    && e["data"]["on"] == true
                    && e["data"]["verified"] == true
                    && e["data"]["reason"] == MAINTENANCE_REASON
            }),
            ("a field", &|e| kind_is(e, "field_set") && e["data"]["name"] == "impact"),
            ("the alert copied", &|e| kind_is(e, "message_copied") && e["data"]["template"] == "internal_alert"),
            ("the notice copied", &|e| kind_is(e, "message_copied") && e["data"]["template"] == "customer_notice"),
            ("to Response", &|e| kind_is(e, "phase_changed") && e["data"]["to"] == "response"),
            ("to Recovery", &|e| kind_is(e, "phase_changed") && e["data"]["to"] == "recovery"),
            ("the batch", &|e| {
                kind_is(e, "rollback")
                    && e["data"]["mode"] == "batch"
                    && e["data"]["orders"] == 60
                    && e["data"]["success"] == true
                    && e["data"]["reason"] == ROLLBACK_REASON
            }),
            ("the report", &|e| kind_is(e, "report_written")),
        ],
    );
    for e in &entries {
        assert_eq!(e["operator"], "e2e", "every entry is by the operator: {e}");
    }
    let file = wait_for_db_copy(&t, &id, &dir, Duration::from_secs(5)).await;
    assert_eq!(file.len(), entries.len());
    eprintln!("the Level 3 drill took {:?} ({} journal entries)", started.elapsed(), entries.len());
}

/// After a rollback the ledger must be audited again before anyone states data integrity:
/// the report (and the customers' resolution notice) say "the ledger audit at T found no
/// inconsistencies" from the last audit recorded in the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_written_after_a_rollback_cites_an_audit_taken_after_it() {
    let t = seeded().await;
    let dirs = Dirs::new();
    let c = open(&dirs, &["--database-url", &t.url, "--title", TITLE, "--level", "3"]);
    // The start-up audit, recorded in the journal.
    c.wait_for("ledger audit clean at", T).await;
    let (_, dir) = dirs.incident();
    batch_rollback_burst(&c).await;
    assert_consistent(&t.pool).await;

    // Within seconds, an audit taken after the rollback is recorded.
    wait_for_audit_after_rollback(&c, &dir).await;

    // The report cites it.
    write_report(&c).await;
    let report = std::fs::read_to_string(file_named(&dir.join("reports"), "post_incident_report")).expect("report");
    let entries = journal(&dir);
    let rollback = entries.iter().find(|e| kind_is(e, "rollback")).expect("the rollback entry");
    let audit = entries.iter().rev().find(|e| kind_is(e, "audit")).expect("an audit entry");
    assert!(audit["seq"].as_u64() > rollback["seq"].as_u64(), "the last audit recorded predates the rollback");
    assert!(section(&report, "## Ledger audit").contains("found no inconsistencies"), "{report}");
    c.keys(&["q"]);
    c.wait_for("console-exited-0", Duration::from_secs(5)).await;
}

/// Waits until the journal holds a ledger audit recorded after the (first) rollback entry:
/// the console audits at once after a rollback.
async fn wait_for_audit_after_rollback(c: &Console, dir: &Path) {
    let start = Instant::now();
    let audit_deadline = Duration::from_secs(10);
    loop {
        let entries = journal(dir);
        let rollback = entries.iter().position(|e| kind_is(e, "rollback"));
        if rollback.is_some_and(|r| entries[r..].iter().any(|e| kind_is(e, "audit"))) {
            break;
        }
        if start.elapsed() > audit_deadline {
            let s = c.screen();
            let dashboard = s.lines().find(|l| l.contains("ledger audit")).unwrap_or("").trim().to_string();
            panic!(
                "no ledger audit recorded in the {audit_deadline:?} after the batch rollback; the journal's kinds: \
                 {:?}; the dashboard: {dashboard}",
                kinds(&entries)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ----------------------------------------------------------------------------------------
// No database
// ----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_works_without_the_database() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("postgres://bob:s3cret@127.0.0.1:{port}/nope");
    let dirs = Dirs::new();
    let c = open(&dirs, &["--database-url", &url, "--title", "database down", "--level", "3"]);
    c.wait_for("UNREACHABLE", T).await;
    let (id, dir) = dirs.incident();

    c.keys(&["i"]);
    c.wait_for("Checklist · Assessment · Level 3", T).await;
    c.keys(&["n"]);
    c.wait_for("Note for the timeline", T).await;
    c.enter_text("database unreachable: working from the journal").await;
    c.wait_until("the note in the timeline", T, |s| {
        !s.contains("Note for the timeline") && s.contains("database unreachable: working from the journal")
    })
    .await;
    c.keys(&["d"]);
    let s = c.wait_until("Detection to be ticked", T, |s| item_line(s, "Detection").contains("[x]")).await;
    assert!(
        s.contains("Timeline · 3/3 · 3 not copied (db down)"),
        "the timeline holds three entries, none in the database:\n{s}"
    );
    assert!(!s.contains("copied to db"), "{s}");
    // Maintenance mode needs the database, and says so.
    c.keys(&["M"]);
    c.wait_for("Maintenance mode needs the database", T).await;
    c.keys(&["q"]);
    c.wait_for("console-exited-0", Duration::from_secs(5)).await;

    let out = dirs.run(&["incident", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "verify: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let entries = journal(&dir);
    assert!(stdout.contains(&format!("Journal intact: {} entries", entries.len())), "{stdout}");
    assert_in_order(
        &entries,
        &[
            ("incident_opened", &|e| kind_is(e, "incident_opened") && e["data"]["id"] == id.as_str()),
            ("the note", &|e| {
                kind_is(e, "note") && e["data"]["text"] == "database unreachable: working from the journal"
            }),
            ("detect ticked", &|e| kind_is(e, "item_ticked") && e["data"]["item"] == "detect"),
        ],
    );
    assert!(
        !entries.iter().any(|e| kind_is(e, "maintenance")),
        "nothing recorded for maintenance: {:?}",
        kinds(&entries)
    );
    let journal_text = std::fs::read_to_string(dir.join("journal.jsonl")).expect("journal");
    assert!(!journal_text.contains("s3cret"), "the password is in the journal");
}

/// What another process appends to the incident's journal (here `incident note` in another
/// terminal) is on the console's timeline within seconds, without the console writing
/// anything itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_shows_what_a_cli_run_journals() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("postgres://bob:s3cret@127.0.0.1:{port}/nope");
    let dirs = Dirs::new();
    let c = open(&dirs, &["--database-url", &url, "--title", "two writers", "--level", "2"]);
    c.wait_for("UNREACHABLE", T).await;
    c.keys(&["i"]);
    c.wait_for("Checklist · Assessment", T).await;
    let out = dirs.run(&["incident", "note", "bridge: the CLI rolled back 0b5e001c"]);
    assert!(out.status.success(), "incident note: {}", String::from_utf8_lossy(&out.stderr));
    let started = Instant::now();
    c.wait_for("bridge: the CLI rolled back 0b5e001c", Duration::from_secs(5)).await;
    eprintln!("the CLI's note was on the timeline after {:?}", started.elapsed());
    c.keys(&["q"]);
    c.wait_for("console-exited-0", Duration::from_secs(5)).await;
}

/// Level 3 in the console: the release overlay (D) on a book whose fast-path release is
/// current, maintenance on; a reason and the release's name typed; the proof on screen,
/// the revert in the database, the journal's `release_rollback` and the checklist's item
/// ticked by observation.
#[tokio::test]
async fn a_release_rollback_from_the_console_is_proved_and_journaled() {
    let t = seeded().await;
    let dirs = Dirs::new();
    let plan = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sandbox/releases");
    let out = dirs.run(&["release", "deploy", "--plan", plan, "--database-url", &t.url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dirs.run(&["maintenance", "on", "--reason", MAINTENANCE_REASON, "--database-url", &t.url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let executions = "SELECT (release_probe_idempotency() ->> 'executions')::bigint";
    assert_eq!(count(&t, executions).await, 2, "the fast path executes a repeated key twice");

    let c = open(&dirs, &["--database-url", &t.url, "--title", TITLE, "--level", "3"]);
    c.wait_until("the Orders pane to list orders", T, |s| s.contains("symbol") && s.contains("executed")).await;
    c.keys(&["D"]);
    let s = c.wait_for("Current: fast-path", T).await;
    assert!(s.contains("Previous: gateway-lookup") && s.contains("orders.execution_route"), "{s}");
    assert!(s.contains("Maintenance mode: ON"), "{s}");
    c.enter_text("fast path skipped the idempotency check").await;
    c.wait_for("Type gateway-lookup to roll back to it", T).await;
    c.enter_text("gateway-lookup").await;
    let s = c.wait_for("Release rollback PROVED.", Duration::from_secs(30)).await;
    assert!(s.contains("PASS  idempotency_probe"), "{s}");

    assert_eq!(count(&t, "SELECT count(*) FROM release_reverts").await, 1);
    assert_eq!(count(&t, executions).await, 1, "after the rollback a repeated key executes once");
    let (_, dir) = dirs.incident();
    let entries = journal(&dir);
    let rolled: Vec<&Value> = entries.iter().filter(|e| kind_is(e, "release_rollback")).collect();
    assert_eq!(rolled.len(), 1, "{:?}", kinds(&entries));
    assert_eq!(rolled[0]["data"]["proved"], true, "{}", rolled[0]);
    assert!(
        entries.iter().any(|e| kind_is(e, "item_ticked") && e["data"]["item"] == "release_rollback"),
        "the Level 3 item is ticked by observation: {:?}",
        kinds(&entries)
    );
    assert_consistent(&t.pool).await;
}

/// The breaker opened from another process shows in the console's header at once (it
/// hears the switch); K closes it from the console with a reason, which is journaled.
#[tokio::test]
async fn the_header_says_so_when_another_process_opens_the_breaker() {
    let t = seeded().await;
    let dirs = Dirs::new();
    let c = open(&dirs, &["--database-url", &t.url, "--title", TITLE, "--level", "2"]);
    c.wait_until("the Orders pane to list orders", T, |s| s.contains("symbol") && s.contains("executed")).await;
    let opened = Instant::now();
    let out = dirs.run(&["breaker", "open", "--reason", "ledger looks wrong", "--database-url", &t.url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = c.wait_for("BREAKER OPEN", Duration::from_secs(5)).await;
    assert!(s.contains("ledger looks wrong"), "{s}");
    println!("breaker shown {} ms after the CLI opened it", opened.elapsed().as_millis());
    c.keys(&["K"]);
    c.wait_for("Close the circuit breaker", T).await;
    c.enter_text("the ledger was checked: clean").await;
    c.wait_until("the breaker to leave the header", Duration::from_secs(5), |s| !s.contains("BREAKER OPEN")).await;
    c.wait_for("Circuit breaker closed", T).await;
    let open: bool =
        sqlx::query_scalar("SELECT open FROM circuit_breaker").fetch_one(&t.pool).await.expect("breaker state");
    assert!(!open);
    let (_, dir) = dirs.incident();
    let entries = journal(&dir);
    // The CLI's opening (it journals into the current incident) and the console's closing.
    let switches: Vec<&Value> = entries.iter().filter(|e| kind_is(e, "breaker")).collect();
    assert_eq!(switches.len(), 2, "{:?}", kinds(&entries));
    assert_eq!(switches[0]["data"]["open"], true);
    assert_eq!(switches[1]["data"]["open"], false);
    assert_eq!(switches[1]["data"]["reason"], "the ledger was checked: clean");
}

/// Four eyes, end to end: two consoles on one database under two logins. The first asks to
/// roll back the burst as a batch above the policy; the request shows live in the second
/// (header and V), which approves it with a reason; the first's batch then runs under the
/// approval. Both journals and the database's approval log say who asked, who approved, and
/// that it was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consoles_one_requests_the_other_approves() {
    let t = seeded().await;
    sqlx::query("SELECT set_approval_policy('{\"enabled\": true, \"batch_orders\": 10}')")
        .execute(&t.pool)
        .await
        .expect("switch the policy on");
    let (asker, approver) = (format!("ic_ask_{}", std::process::id()), format!("ic_ok_{}", std::process::id()));
    for role in [&asker, &approver] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
             CREATE ROLE {role} LOGIN IN ROLE incident_operator; END IF; END $$"
        )))
        .execute(&t.pool)
        .await
        .expect("a login");
    }
    let (dirs_a, dirs_b) = (Dirs::new(), Dirs::new());
    let url_a = t.url_as(&asker, "unused");
    let url_b = t.url_as(&approver, "unused");
    let a = open(&dirs_a, &["--database-url", &url_a, "--title", TITLE, "--level", "2"]);
    let b = Console::options()
        .home(dirs_b.home.path())
        .env("INCIDENT_CONSOLE_DATA_DIR", dirs_b.data.path())
        .env("INCIDENT_CONSOLE_CONFIG", dirs_b.config())
        .env("INCIDENT_OPERATOR", "bo")
        .open(&["--database-url", &url_b, "--title", "second pair of eyes", "--level", "2"]);
    b.wait_until("the second console's orders", T, |s| s.contains("symbol") && s.contains("executed")).await;

    // The first console asks for the batch: the policy wants a second person.
    a.wait_for("Orders ·", T).await;
    a.keys(&["/"]);
    a.wait_for("typing the filter", T).await;
    a.type_text("GBPUSD executed from:13:02 to:13:06");
    a.keys(&["Enter"]);
    a.wait_for("of 60", T).await;
    a.keys(&["A"]);
    a.wait_for("Batch: every executed order matching the filter", T).await;
    a.keys(&["b"]);
    a.wait_for("Reason (required):", T).await;
    a.enter_text(ROLLBACK_REASON).await;
    a.wait_for("Type 60 to roll back", T).await;
    a.type_text("60");
    a.keys(&["Enter"]);
    let s = a.wait_for("Waiting for a second person", T).await;
    assert!(s.contains("batch of 60"), "{s}");
    assert_eq!(
        count(&t, &format!("SELECT count(*) FROM orders WHERE {BURST_SQL} AND status = 'rolled_back'")).await,
        0
    );

    // The second console hears it, shows it, and approves it.
    let shown = Instant::now();
    b.wait_for("1 APPROVAL WAITING", Duration::from_secs(5)).await;
    println!("request shown in the second console {} ms after the first asked", shown.elapsed().as_millis());
    b.keys(&["V"]);
    let s = b.wait_for("Needs a second person", T).await;
    assert!(s.contains("batch of 60 order(s) (60 executed)") && s.contains(ROLLBACK_REASON), "{s}");
    assert!(s.contains(&asker), "the requester's login is shown: {s}");
    // The same preview the requester's confirmation showed.
    assert!(s.contains("preview: Batch: 60 order(s) (60 executed) of 20 user(s)"), "{s}");
    b.keys(&["y"]);
    b.wait_for("APPROVE — why:", T).await;
    b.enter_text("checked the 60 duplicates against the blast radius").await;
    b.wait_for("You approved request", T).await;

    // The first console's batch goes ahead under the approval.
    let s = a.wait_for("60 rolled back", Duration::from_secs(30)).await;
    assert!(s.contains("60 rolled back, 0 already rolled back, 0 refused, 0 failed"), "{s}");
    assert_consistent(&t.pool).await;
    let log: Vec<(String, String, String)> =
        sqlx::query_as("SELECT action, operator, login FROM approval_log ORDER BY id")
            .fetch_all(&t.pool)
            .await
            .expect("log");
    let actions: Vec<&str> = log.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(actions, ["requested", "approved", "used"], "{log:?}");
    assert_eq!(log[0].2, asker);
    // The name is the one the second console claimed, attributed to its login.
    assert!(log[1].1.starts_with("bo") && log[1].2 == approver, "{log:?}");
    // Every order of the burst carries the approved operation.
    let under: i64 = count(
        &t,
        &format!(
            "SELECT count(*) FROM order_audit_log l JOIN approval_requests r ON r.operation_id = l.batch_id \
             WHERE l.action = 'order_rolled_back' AND l.order_id IN (SELECT id FROM orders WHERE {BURST_SQL})"
        ),
    )
    .await;
    assert_eq!(under, 60);

    // Both journals say it.
    let (_, dir_a) = dirs_a.incident();
    let approvals_a: Vec<String> = journal(&dir_a)
        .iter()
        .filter(|e| kind_is(e, "approval"))
        .map(|e| e["data"]["action"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(approvals_a, ["requested", "approved", "used"], "{:?}", kinds(&journal(&dir_a)));
    let (_, dir_b) = dirs_b.incident();
    let approvals_b: Vec<Value> = journal(&dir_b).into_iter().filter(|e| kind_is(e, "approval")).collect();
    assert_eq!(approvals_b.len(), 1);
    assert_eq!(approvals_b[0]["data"]["action"], "approved");
    assert!(approvals_b[0]["data"]["by"].as_str().is_some_and(|b| b.starts_with("bo")), "{approvals_b:?}");
}
