//! Signals and interrupts, end to end with the real binary: a batch and a single rollback
//! cut short by SIGTERM, SIGHUP and Ctrl-C (SIGINT, once and twice) while another session
//! holds a row lock the call in flight waits on, and a batch whose server processes are
//! ended twice mid-run. Each test checks that what the command printed (text or `--json`),
//! what the incident's journal holds and what the database holds agree: the ledger
//! consistent, no order rolled back twice, the summary's count and refund those of the
//! audit rows carrying the batch's id, and the journal's entry the same. Each prints one
//! `FAULT …` line with its figures (`-- --nocapture` shows them).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::cli::{Out, console_in, run_cmd};
use crate::support::db::{BURST_SQL, TestDb, assert_consistent, fingerprint, seeded};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use uuid::Uuid;

const BURST_FROM: &str = "2026-11-25 13:02";
const BURST_TO: &str = "2026-11-25 13:06";
const REASON: &str = "duplicate executions of deploy 4711";

/// The batch over the burst, confirmed.
const WINDOW: [&str; 10] =
    ["rollback", "--symbol", "GBPUSD", "--from", BURST_FROM, "--to", BURST_TO, "--reason", REASON, "--yes"];

/// How long the acknowledgement of a signal may take to show on stderr.
const ACK: Duration = Duration::from_secs(10);

// ----------------------------------------------------------------------------------------
// One test's world: a data directory with an incident open, and the binary run in it
// ----------------------------------------------------------------------------------------

struct World {
    dir: tempfile::TempDir,
}

impl World {
    /// A data directory of its own with a current incident, so commands journal what they
    /// observed. Returns it with the incident's id.
    async fn with_incident() -> (World, String) {
        let w = World { dir: tempfile::tempdir().expect("data dir") };
        let mut c = w.console();
        c.args(["--json", "incident", "new", "--title", "duplicate GBPUSD executions", "--level", "3"]);
        let j = run_cmd(c, None).await.code(0).clean().json();
        let id = j["incident"].as_str().unwrap_or_else(|| panic!("no incident id in {j}")).to_string();
        (w, id)
    }

    fn console(&self) -> tokio::process::Command {
        console_in(self.dir.path(), "sig-test")
    }

    /// `incident-console --database-url URL ARGS` to its end.
    async fn ic(&self, url: &str, args: &[&str]) -> Out {
        let mut c = self.console();
        c.arg("--database-url").arg(url).args(args);
        run_cmd(c, None).await
    }

    /// `incident-console --database-url URL ARGS` started, its output collected as it comes.
    fn spawn(&self, url: &str, args: &[&str]) -> Running {
        let mut c = self.console();
        c.arg("--database-url").arg(url).args(args);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let what = format!("{args:?}");
        let mut child = c.spawn().expect("spawn incident-console");
        let pid = child.id().expect("pid") as libc::pid_t;
        let mut out = child.stdout.take().expect("stdout");
        let stdout = tokio::spawn(async move {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s).await;
            s
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let stderr_done = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut s = sink.lock().expect("stderr buffer");
                s.push_str(&line);
                s.push('\n');
            }
        });
        Running { child, pid, stdout, stderr, stderr_done, what }
    }

    /// The incident's journal entries, parsed.
    fn entries(&self, id: &str) -> Vec<Value> {
        let path = self.dir.path().join("incidents").join(id).join("journal.jsonl");
        let text = std::fs::read_to_string(&path).expect("read the journal");
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l:?}: {e}"))).collect()
    }

    /// The data of the journal's `rollback` entries, in order.
    fn rollbacks(&self, id: &str) -> Vec<Value> {
        self.entries(id).into_iter().filter(|e| e["kind"] == "rollback").map(|e| e["data"].clone()).collect()
    }

    /// The journal's hash chain verifies: an interrupted command left no torn line.
    async fn verified(&self, id: &str) {
        let mut c = self.console();
        c.args(["incident", "verify"]);
        let out = run_cmd(c, None).await;
        out.code(0).clean();
        let n = self.entries(id).len();
        assert!(out.stdout.contains(&format!("Journal intact: {n} entries")), "{}", out.stdout);
    }
}

/// The binary running, its stdout collected whole and its stderr line by line (so a test
/// can wait for the acknowledgement of a signal while it runs).
struct Running {
    child: tokio::process::Child,
    pid: libc::pid_t,
    stdout: tokio::task::JoinHandle<String>,
    stderr: Arc<Mutex<String>>,
    stderr_done: tokio::task::JoinHandle<()>,
    what: String,
}

impl Running {
    /// Sends `sig` to the process; returns when it was sent.
    fn signal(&self, sig: libc::c_int) -> Instant {
        // SAFETY: kill sends a signal to the child this test started and has not reaped.
        let sent = unsafe { libc::kill(self.pid, sig) };
        assert_eq!(sent, 0, "send signal {sig} to {}", self.pid);
        Instant::now()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// Waits until stderr shows `needle`.
    async fn until_stderr(&self, needle: &str) {
        let start = Instant::now();
        while !self.stderr().contains(needle) {
            assert!(start.elapsed() < ACK, "`{}` never printed {needle:?}; stderr:\n{}", self.what, self.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether it still runs.
    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for it to end (at most `within`): what it left, and when it ended.
    async fn finish(mut self, within: Duration) -> (Out, Instant) {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(s) => s.expect("wait for incident-console"),
            Err(_) => panic!("`{}` still running {within:?} later; stderr:\n{}", self.what, self.stderr()),
        };
        let ended = Instant::now();
        let Running { stdout, stderr, stderr_done, what, .. } = self;
        let _ = stderr_done.await;
        let stdout = stdout.await.expect("stdout reader");
        let stderr = stderr.lock().expect("stderr buffer").clone();
        let code = status.code().unwrap_or_else(|| panic!("`{what}` was killed by a signal: {status}"));
        (Out { code, stdout, stderr, what }, ended)
    }
}

// ----------------------------------------------------------------------------------------
// The database
// ----------------------------------------------------------------------------------------

/// The burst's orders (id, user), oldest first.
async fn burst(t: &TestDb) -> Vec<(Uuid, Uuid)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, user_id FROM orders WHERE {BURST_SQL} ORDER BY created_at, id"
    )))
    .fetch_all(&t.pool)
    .await
    .expect("burst query")
}

/// Another session holding `users`' profile rows (`FOR UPDATE`) in an open transaction:
/// a rollback of their orders waits on it.
async fn hold(t: &TestDb, users: &[Uuid]) -> PgConnection {
    let mut holder = t.conn().await;
    sqlx::raw_sql("BEGIN").execute(&mut holder).await.expect("begin");
    sqlx::query("SELECT 1 FROM profiles WHERE id = ANY($1) FOR UPDATE")
        .bind(users)
        .execute(&mut holder)
        .await
        .expect("lock the profiles");
    holder
}

async fn release(mut holder: PgConnection) {
    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.expect("release the lock");
}

/// The server processes of the binary (its application name) in this test's database;
/// those waiting on a lock when `waiting`.
async fn console_backends(t: &TestDb, waiting: bool) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND application_name = 'incident-console' AND (NOT $1 OR wait_event_type = 'Lock') ORDER BY pid",
    )
    .bind(waiting)
    .fetch_all(&t.pool)
    .await
    .expect("pg_stat_activity")
}

/// Waits until a server process of the binary waits on the held lock; returns them.
async fn until_waiting(t: &TestDb) -> Vec<i32> {
    for _ in 0..400 {
        let pids = console_backends(t, true).await;
        if !pids.is_empty() {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no server process of the binary ever waited on the held lock");
}

/// Waits (up to `within`) until no server process of the binary is left in the database:
/// nothing it started can still commit.
async fn until_no_backends(t: &TestDb, within: Duration) {
    let start = Instant::now();
    loop {
        let left = console_backends(t, false).await;
        if left.is_empty() {
            return;
        }
        assert!(start.elapsed() < within, "server processes of the binary still there {within:?} later: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ends the server processes `pids`, waiting for each to be gone; how many were ended.
async fn terminate(t: &TestDb, pids: &[i32]) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM unnest($1::int[]) AS p(pid)",
    )
    .bind(pids)
    .fetch_one(&t.pool)
    .await
    .expect("terminate")
}

/// The audit rows of one operation (a batch's id, or a single rollback's).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rows {
    /// `order_rolled_back` rows.
    rows: i64,
    /// Distinct orders among them.
    orders: i64,
    /// Their `refunded`, summed.
    refunded: Decimal,
}

async fn rows_of(t: &TestDb, operation: Uuid) -> Rows {
    let (rows, orders, refunded) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT order_id), coalesce(sum((details->>'refunded')::numeric), 0) \
         FROM order_audit_log WHERE action = 'order_rolled_back' AND batch_id = $1",
    )
    .bind(operation)
    .fetch_one(&t.pool)
    .await
    .expect("audit rows of the operation");
    Rows { rows, orders, refunded }
}

/// The burst as the database has it: orders rolled back, and the refund of every
/// rollback of them (by any run).
async fn burst_done(t: &TestDb) -> (i64, Decimal) {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM orders WHERE {BURST_SQL} AND status = 'rolled_back'), \
                (SELECT coalesce(sum((details->>'refunded')::numeric), 0) FROM order_audit_log \
                 WHERE action = 'order_rolled_back' AND order_id IN (SELECT id FROM orders WHERE {BURST_SQL}))"
    )))
    .fetch_one(&t.pool)
    .await
    .expect("burst totals")
}

/// No order has more than one rollback in the audit log.
async fn none_twice(t: &TestDb) {
    let twice: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT order_id, count(*) FROM order_audit_log WHERE action = 'order_rolled_back' \
         GROUP BY order_id HAVING count(*) > 1",
    )
    .fetch_all(&t.pool)
    .await
    .expect("rollbacks per order");
    assert!(twice.is_empty(), "orders rolled back more than once: {twice:?}");
}

async fn status_of(t: &TestDb, order: Uuid) -> String {
    sqlx::query_scalar("SELECT status::text FROM orders WHERE id = $1")
        .bind(order)
        .fetch_one(&t.pool)
        .await
        .expect("order status")
}

// ----------------------------------------------------------------------------------------
// Reading what the binary said
// ----------------------------------------------------------------------------------------

/// A money value of the JSON output or the journal (a string or a number).
fn money(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("not money: {s:?} ({e})")),
        Value::Number(n) => n.to_string().parse().unwrap_or_else(|e| panic!("not money: {n} ({e})")),
        other => panic!("not money: {other}"),
    }
}

/// Money as the text output shows it: at least two decimals.
fn shown(d: Decimal) -> String {
    let n = d.normalize();
    if n.scale() < 2 { format!("{n:.2}") } else { n.to_string() }
}

fn count(v: &Value) -> i64 {
    v.as_i64().or_else(|| v.as_array().map(|a| a.len() as i64)).unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The order ids of a summary's list (`unknown`, `failed`, `refused`: each entry starts
/// with the order id).
fn ids_of(list: &Value) -> Vec<Uuid> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| Uuid::parse_str(e[0].as_str().expect("an order id first")).expect("uuid"))
        .collect()
}

/// A batch's `--json` summary, its journal entry and the database agree: the summary's
/// rolled-back count and refund are those of the audit rows with its batch id (one per
/// order), so are the journal entry's, every order of the batch is counted or listed,
/// and the ledger is consistent. Returns the audit rows.
async fn batch_agrees(t: &TestDb, r: &Value, entry: &Value) -> Rows {
    let s = &r["summary"];
    let batch = Uuid::parse_str(s["batch_id"].as_str().expect("batch id")).expect("uuid");
    let db = rows_of(t, batch).await;
    assert_eq!(db.rows, db.orders, "one audit row per order of the batch: {db:?}");
    assert_eq!(count(&s["rolled_back"]), db.orders, "the summary's rolled back are the database's: {r}");
    assert_eq!(money(&s["refunded"]), db.refunded, "the summary's refund is the audit log's: {r}");
    let accounted = count(&s["rolled_back"])
        + count(&s["already_rolled_back"])
        + count(&s["refused"])
        + count(&s["failed"])
        + count(&s["not_attempted"])
        + count(&s["unknown"]);
    assert_eq!(accounted, count(&s["total"]), "every order counted or listed: {r}");
    assert_eq!(entry["mode"], "batch", "{entry}");
    assert_eq!(entry["operation"].as_str(), Some(batch.to_string().as_str()), "the entry is the batch's: {entry}");
    assert_eq!(count(&entry["orders"]), db.orders, "the journal's orders are the database's: {entry}");
    assert_eq!(money(&entry["refunded"]), db.refunded, "the journal's refund is the audit log's: {entry}");
    assert_eq!(entry["reason"], REASON, "{entry}");
    assert!(
        entry["detail"].as_str().is_some_and(|d| d.starts_with(&format!("{} rolled back", db.orders))),
        "the journal says what happened: {entry}"
    );
    none_twice(t).await;
    assert_consistent(&t.pool).await;
    db
}

/// After an interrupted batch: the same command again finishes it (exit 0), and the
/// journal's rollback entries together hold what the database holds for the burst.
async fn rerun_finishes(t: &TestDb, w: &World, id: &str, first: &Rows) -> (i64, Decimal) {
    let mut args = WINDOW.to_vec();
    args.push("--json");
    let r = w.ic(&t.url, &args).await.code(0).clean().json();
    assert_eq!(count(&r["summary"]["rolled_back"]), 60 - first.orders, "the rest: {r}");
    let entries = w.rollbacks(id);
    let again = entries.last().expect("the rerun's journal entry");
    let rerun = batch_agrees(t, &r, again).await;
    assert_eq!(again["success"], true, "{again}");
    let (done, refunded) = burst_done(t).await;
    assert_eq!(done, 60, "the whole burst rolled back");
    let journal_orders: i64 = entries.iter().map(|e| count(&e["orders"])).sum();
    let journal_refunded: Decimal = entries.iter().map(|e| money(&e["refunded"])).sum();
    assert_eq!(journal_orders, done, "the journal's totals are the database's: {entries:?}");
    assert_eq!(journal_refunded, refunded, "the journal's refund is the database's: {entries:?}");
    assert_eq!(first.refunded + rerun.refunded, refunded);
    // The rerun settles earlier rollbacks of the incident whose journal figures are not
    // their audit rows' (`rollback_settled`): the interrupted run's entry already had them.
    let settled: Vec<Value> = w.entries(id).into_iter().filter(|e| e["kind"] == "rollback_settled").collect();
    assert!(settled.is_empty(), "the rerun found nothing to settle: {settled:?}");
    w.verified(id).await;
    (journal_orders, journal_refunded)
}

// ----------------------------------------------------------------------------------------
// 1-3. A batch waiting on a lock, one signal
// ----------------------------------------------------------------------------------------

/// Which signal, with which limits and output: `name` as the binary says it.
struct OneSignal {
    label: &'static str,
    sig: libc::c_int,
    name: &'static str,
    limits: [&'static str; 4],
    json: bool,
}

/// A batch of the burst (4 workers) with the first order's user held by another session:
/// its worker waits on the lock while the others finish their queues. One signal: it is
/// acknowledged, the call in flight is cancelled on the server (promptly, well within the
/// lock timeout), the batch ends cancelled (exit 1) with what it did reported and
/// journaled as the database has it; the held order stays executed; a rerun finishes.
async fn batch_cut_short_by(case: OneSignal) {
    let t = seeded().await;
    let (w, id) = World::with_incident().await;
    let (first, user) = burst(&t).await[0];
    let holder = hold(&t, &[user]).await;

    let mut args = WINDOW.to_vec();
    args.extend(case.limits);
    if case.json {
        args.push("--json");
    }
    let run = w.spawn(&t.url, &args);
    let waiting = until_waiting(&t).await;
    assert_eq!(waiting.len(), 1, "one worker waits on the held user: {waiting:?}");
    // Let the other workers finish their queues, so the batch has done something to report.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = run.signal(case.sig);
    run.until_stderr(&format!("{}: cancelling on the server", case.name)).await;
    let (out, ended) = run.finish(Duration::from_secs(20)).await;
    let elapsed = ended - sent;
    out.code(1).clean();
    // The lock is still held: the batch ended because its call was cancelled, not
    // because it got the lock or timed out on it.
    assert!(elapsed < Duration::from_secs(5), "{} to exit {elapsed:?} after the signal", case.name);
    until_no_backends(&t, Duration::from_secs(3)).await;
    release(holder).await;
    assert_eq!(status_of(&t, first).await, "executed", "the call in flight was cancelled, not left to commit");

    let entries = w.rollbacks(&id);
    assert_eq!(entries.len(), 1, "one journal entry for the batch: {entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["success"], false, "a cancelled batch is not a success: {entry}");
    let db = if case.json {
        let r = out.json();
        assert_eq!(r["summary"]["cancelled"], true, "{r}");
        assert!(count(&r["summary"]["not_attempted"]) >= 1, "the held user's orders were not attempted: {r}");
        assert_eq!(count(&r["summary"]["unknown"]), 0, "a cancel leaves nothing unknown: {r}");
        assert_eq!(r["audit_of_touched_users"], serde_json::json!([]), "{r}");
        batch_agrees(&t, &r, entry).await
    } else {
        // The text summary: the same counts, in words.
        let batch: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT batch_id FROM order_audit_log WHERE action = 'order_rolled_back' AND batch_id IS NOT NULL",
        )
        .fetch_all(&t.pool)
        .await
        .expect("batch ids");
        assert_eq!(batch.len(), 1, "one batch wrote rollbacks: {batch:?}");
        assert_eq!(
            entry["operation"].as_str(),
            Some(batch[0].to_string().as_str()),
            "the entry is the batch's: {entry}"
        );
        let db = rows_of(&t, batch[0]).await;
        assert_eq!(db.rows, db.orders, "one audit row per order: {db:?}");
        let done = out.stdout.lines().find(|l| l.starts_with("Done in")).unwrap_or_else(|| panic!("{}", out.stdout));
        assert!(done.contains(&format!(": {} rolled back, 0 already rolled back", db.orders)), "{done}");
        assert!(done.ends_with("(cancelled)."), "{done}");
        let left = 60 - db.orders;
        assert!(done.contains(&format!(", {left} not attempted")), "{done}");
        out.says(&format!("Refunded {},", shown(db.refunded)))
            .says("Audit of the touched users: no violations")
            .says(&format!("Run the same command again to finish the {left} order(s) not done"));
        assert_eq!(count(&entry["orders"]), db.orders, "{entry}");
        assert_eq!(money(&entry["refunded"]), db.refunded, "{entry}");
        none_twice(&t).await;
        assert_consistent(&t.pool).await;
        db
    };
    assert!(db.orders < 60, "the held user's orders were not rolled back");
    let progress_end = out.stderr.lines().rev().find(|l| l.starts_with("progress:")).unwrap_or("").to_string();
    assert!(progress_end.contains(&format!("{} rolled back", db.orders)), "the last progress line: {progress_end}");

    let (journal_orders, journal_refunded) = rerun_finishes(&t, &w, &id, &db).await;
    eprintln!(
        "FAULT {}: exit={} elapsed_ms={} summary.rolled_back={} db={} journal.orders={} refunded summary={} db={} \
         journal={} | rerun: journal.orders total={journal_orders} refunded total={journal_refunded} db=60",
        case.label,
        out.code,
        elapsed.as_millis(),
        db.orders,
        db.orders,
        count(&entry["orders"]),
        db.refunded,
        db.refunded,
        money(&entry["refunded"]),
    );
}

#[tokio::test]
async fn sigterm_cancels_a_batch_waiting_on_a_lock_and_the_journal_holds_what_the_database_does() {
    batch_cut_short_by(OneSignal {
        label: "sigterm-batch",
        sig: libc::SIGTERM,
        name: "SIGTERM",
        limits: ["--lock-timeout", "20s", "--statement-timeout", "60s"],
        json: true,
    })
    .await;
}

#[tokio::test]
async fn sighup_cancels_a_batch_waiting_on_a_lock_and_the_text_summary_says_what_the_database_holds() {
    batch_cut_short_by(OneSignal {
        label: "sighup-batch",
        sig: libc::SIGHUP,
        name: "SIGHUP",
        limits: ["--lock-timeout", "20s", "--statement-timeout", "60s"],
        json: false,
    })
    .await;
}

#[tokio::test]
async fn ctrl_c_cancels_a_batch_that_would_wait_forever() {
    // No lock timeout, no statement timeout: only the cancel ends the wait.
    batch_cut_short_by(OneSignal {
        label: "sigint-batch-no-timeouts",
        sig: libc::SIGINT,
        name: "Ctrl-C",
        limits: ["--lock-timeout", "0", "--statement-timeout", "0"],
        json: true,
    })
    .await;
}

// ----------------------------------------------------------------------------------------
// 4. A second Ctrl-C
// ----------------------------------------------------------------------------------------

/// A server process of the harness's own cluster stopped (SIGSTOP), so it answers nothing,
/// a cancel included, until it is continued (on drop, whatever happens to the test).
struct Stopped(libc::pid_t);

impl Stopped {
    /// Stops `pid` if it is a PostgreSQL process on this machine, that is, when the tests
    /// run their own cluster (a `DATABASE_URL` server's pids may name anything here).
    fn stop(pid: i32) -> Option<Stopped> {
        if std::env::var("DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        if !String::from_utf8_lossy(&cmdline).contains("postgres") {
            return None;
        }
        // SAFETY: kill sends SIGSTOP to a server process of the test cluster, checked above.
        (unsafe { libc::kill(pid, libc::SIGSTOP) } == 0).then_some(Stopped(pid))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: continues the process this guard stopped.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// The first Ctrl-C made ineffective: the server process of the call in flight is stopped,
/// so the cancel cannot end it and the batch keeps waiting. The second Ctrl-C stops the
/// wait: the summary is printed at once, the order in flight is not claimed done or not
/// done while its server process may still commit (it is listed unknown, exit 3), every
/// other order is counted as the database has it, and the journal says the same. After
/// the process is continued it ends without committing, and a rerun finishes the burst.
#[tokio::test]
async fn a_second_ctrl_c_stops_waiting_for_a_server_process_that_does_not_answer() {
    let t = seeded().await;
    let (w, id) = World::with_incident().await;
    let (first, user) = burst(&t).await[0];
    let holder = hold(&t, &[user]).await;
    let mut args = WINDOW.to_vec();
    args.extend(["--lock-timeout", "20s", "--json"]);
    let mut run = w.spawn(&t.url, &args);
    let waiting = until_waiting(&t).await;
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let Some(stopped) = Stopped::stop(waiting[0]) else {
        eprintln!("FAULT second-sigint-stopped-backend: skipped (the server is not the harness's own cluster)");
        return;
    };

    run.signal(libc::SIGINT);
    run.until_stderr("Ctrl-C: cancelling on the server").await;
    // The cancel reached a process that cannot act on it: the batch still waits.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(run.running(), "the first Ctrl-C ended the batch although its call could not be cancelled");
    let sent = run.signal(libc::SIGINT);
    run.until_stderr("Ctrl-C: not waiting any longer").await;
    let (out, ended) = run.finish(Duration::from_secs(15)).await;
    let elapsed = ended - sent;
    assert!(elapsed < Duration::from_secs(8), "exit {elapsed:?} after the second Ctrl-C");
    let still_there = console_backends(&t, false).await.contains(&waiting[0]);

    let r = out.json();
    let s = &r["summary"];
    assert_eq!(s["cancelled"], true, "{r}");
    let entries = w.rollbacks(&id);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let db = batch_agrees(&t, &r, &entries[0]).await;
    // The call in flight (a chunk: the held worker's orders): its server process did not
    // end when asked, so it may yet commit; the report must call none of its orders done
    // nor not done.
    assert!(still_there, "the stopped server process is still there while the report is made");
    let unknown = ids_of(&s["unknown"]);
    assert!(unknown.contains(&first), "the order in flight is unknown: {r}");
    assert_eq!(count(&s["rolled_back"]) + unknown.len() as i64, 60, "every other order is done: {r}");
    assert!(ids_of(&s["failed"]).is_empty() && count(&s["not_attempted"]) == 0, "{r}");
    let why = s["unknown"][0][1].as_str().unwrap_or_default();
    assert!(!why.is_empty(), "the unknown order says why: {r}");
    out.code(3).clean();
    assert_eq!(entries[0]["success"], false, "{}", entries[0]);
    assert!(
        entries[0]["detail"].as_str().is_some_and(|d| d.contains(&format!(", {} unknown", unknown.len()))),
        "the journal says how many are unknown: {}",
        entries[0]
    );

    // Continued, the process takes the termination it was sent and ends; nothing commits.
    drop(stopped);
    until_no_backends(&t, Duration::from_secs(5)).await;
    release(holder).await;
    assert_eq!(status_of(&t, first).await, "executed");
    let (journal_orders, journal_refunded) = rerun_finishes(&t, &w, &id, &db).await;
    eprintln!(
        "FAULT second-sigint-stopped-backend: exit={} elapsed_after_second_ms={} summary.rolled_back={} db={} \
         journal.orders={} not_attempted={} unknown={} failed={} refunded summary={} db={} journal={} \
         | rerun: journal.orders total={journal_orders} refunded total={journal_refunded} db=60",
        out.code,
        elapsed.as_millis(),
        count(&s["rolled_back"]),
        db.orders,
        count(&entries[0]["orders"]),
        count(&s["not_attempted"]),
        count(&s["unknown"]),
        count(&s["failed"]),
        money(&s["refunded"]),
        db.refunded,
        money(&entries[0]["refunded"]),
    );
}

/// Two Ctrl-C in quick succession (the second as soon as the first is acknowledged), with
/// the call in flight waiting on a lock: whichever way the race goes (the cancel ends the
/// batch first, or the second signal stops the wait), the summary is printed promptly,
/// every order is counted or listed, and the report, the journal and the database agree.
#[tokio::test]
async fn two_ctrl_c_in_quick_succession_lose_no_order() {
    let t = seeded().await;
    let (w, id) = World::with_incident().await;
    let (first, user) = burst(&t).await[0];
    let holder = hold(&t, &[user]).await;
    let mut args = WINDOW.to_vec();
    args.extend(["--lock-timeout", "20s", "--json"]);
    let run = w.spawn(&t.url, &args);
    until_waiting(&t).await;
    let sent = run.signal(libc::SIGINT);
    run.until_stderr("Ctrl-C: cancelling on the server").await;
    run.signal(libc::SIGINT);
    let (out, ended) = run.finish(Duration::from_secs(15)).await;
    let elapsed = ended - sent;
    assert!(elapsed < Duration::from_secs(8), "exit {elapsed:?} after the first Ctrl-C");
    let second_heard = out.stderr.contains("Ctrl-C: not waiting any longer");
    until_no_backends(&t, Duration::from_secs(5)).await;
    release(holder).await;

    let r = out.json();
    let s = &r["summary"];
    assert_eq!(s["cancelled"], true, "{r}");
    let entries = w.rollbacks(&id);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let db = batch_agrees(&t, &r, &entries[0]).await;
    // The order in flight was cancelled or its server process ended: not rolled back,
    // and not reported as rolled back.
    assert_eq!(status_of(&t, first).await, "executed");
    assert_eq!(count(&s["unknown"]), 0, "every server process ended when asked: nothing unknown: {r}");
    // Only the order in flight can be failed: the second signal gave up its wait, and its
    // server process was ended before the database was read.
    let failed = ids_of(&s["failed"]);
    assert!(failed.iter().all(|f| *f == first), "{r}");
    if !failed.is_empty() {
        assert!(second_heard, "a failure without the second signal: {r}");
        assert!(s["failed"][0][1].as_str().is_some_and(|e| e.contains("not rolled back")), "{r}");
    }
    out.code(1).clean();
    let (journal_orders, journal_refunded) = rerun_finishes(&t, &w, &id, &db).await;
    eprintln!(
        "FAULT two-quick-sigints: second_signal_heard={second_heard} exit={} elapsed_ms={} summary.rolled_back={} \
         db={} journal.orders={} not_attempted={} failed={} unknown={} refunded summary={} db={} journal={} \
         | rerun: journal.orders total={journal_orders} refunded total={journal_refunded} db=60",
        out.code,
        elapsed.as_millis(),
        count(&s["rolled_back"]),
        db.orders,
        count(&entries[0]["orders"]),
        count(&s["not_attempted"]),
        count(&s["failed"]),
        count(&s["unknown"]),
        money(&s["refunded"]),
        db.refunded,
        money(&entries[0]["refunded"]),
    );
}

// ----------------------------------------------------------------------------------------
// 5. A single rollback waiting on a lock
// ----------------------------------------------------------------------------------------

/// One order's rollback waits on its user's held profile; the signal cancels it on the
/// server: exit 1, "nothing was changed" (said on stderr, and as the JSON error), the
/// database exactly as it was, and the journal records the attempt as not done. Run for
/// Ctrl-C then SIGTERM on the same order; then, the lock released, the rollback goes
/// through and the journal's entry is the database's.
#[tokio::test]
async fn a_signal_cancels_a_single_rollback_on_the_server_and_nothing_changes() {
    let t = seeded().await;
    let (w, id) = World::with_incident().await;
    let (order, user) = burst(&t).await[0];
    let (os, us) = (order.to_string(), user.to_string());
    let args = ["rollback", &os, "--user", &us, "--reason", REASON, "--yes", "--lock-timeout", "20s", "--json"];
    let before = fingerprint(&t.pool).await;
    let holder = hold(&t, &[user]).await;

    for (sig, name, label) in [(libc::SIGINT, "Ctrl-C", "sigint-single"), (libc::SIGTERM, "SIGTERM", "sigterm-single")]
    {
        let run = w.spawn(&t.url, &args);
        until_waiting(&t).await;
        let sent = run.signal(sig);
        run.until_stderr(&format!("{name}: cancelling on the server")).await;
        let (out, ended) = run.finish(Duration::from_secs(15)).await;
        let elapsed = ended - sent;
        out.code(1).clean().complains("nothing was changed");
        let j = out.json();
        assert_eq!(j["exit_code"], 1, "{j}");
        assert!(j["error"].as_str().is_some_and(|e| e.contains("cancelled on the server")), "{j}");
        assert!(elapsed < Duration::from_secs(5), "{name}: exit {elapsed:?} after the signal");
        // Nothing of it is left on the server to commit when the lock comes free.
        until_no_backends(&t, Duration::from_secs(3)).await;
        assert_eq!(fingerprint(&t.pool).await, before, "{name}: the database is as it was");

        let last = w.rollbacks(&id).pop().expect("the attempt is journaled");
        assert_eq!(last["mode"], "single", "{last}");
        assert_eq!(last["order"], os.as_str(), "{last}");
        assert_eq!(last["success"], false, "{last}");
        assert_eq!(count(&last["orders"]), 0, "{last}");
        assert_eq!(money(&last["refunded"]), Decimal::ZERO, "{last}");
        assert!(last["detail"].as_str().is_some_and(|d| d.contains("nothing was changed")), "{last}");
        eprintln!(
            "FAULT {label}: exit={} elapsed_ms={} db_unchanged=true status={} journal.success={} journal.orders={} \
             journal.refunded={} detail={:?}",
            out.code,
            elapsed.as_millis(),
            status_of(&t, order).await,
            last["success"],
            last["orders"],
            last["refunded"],
            last["detail"].as_str().unwrap_or_default(),
        );
    }
    release(holder).await;
    assert_eq!(fingerprint(&t.pool).await, before, "nothing committed after the lock came free");
    assert_eq!(w.rollbacks(&id).len(), 2, "one entry per attempt");

    // Now it goes through, and the journal's entry is the audit row's.
    let r = w.ic(&t.url, &args).await.code(0).clean().json();
    let operation: Uuid =
        sqlx::query_scalar("SELECT batch_id FROM order_audit_log WHERE action = 'order_rolled_back' AND order_id = $1")
            .bind(order)
            .fetch_one(&t.pool)
            .await
            .expect("the rollback's audit row");
    let db = rows_of(&t, operation).await;
    assert_eq!((db.rows, db.orders), (1, 1));
    assert_eq!(money(&r["rollback"]["refunded"]), db.refunded, "{r}");
    let last = w.rollbacks(&id).pop().expect("the rollback's entry");
    assert_eq!((last["success"].as_bool(), count(&last["orders"])), (Some(true), 1), "{last}");
    assert_eq!(money(&last["refunded"]), db.refunded, "{last}");
    none_twice(&t).await;
    assert_consistent(&t.pool).await;
    w.verified(&id).await;
}

// ----------------------------------------------------------------------------------------
// 6. A batch whose server processes are ended mid-run, twice
// ----------------------------------------------------------------------------------------

/// The binary's batch (with an incident open) while two users are held: when its workers
/// wait on them, every server process of the binary in the database is ended; they
/// reconnect and wait again, and are ended again; then the lock is released. The batch
/// finishes: exit 0, all 60 rolled back once, and the summary, the journal and the audit
/// rows agree on the count and the money.
#[tokio::test]
async fn a_batch_whose_server_processes_are_ended_twice_finishes_and_journals_what_the_database_holds() {
    let t = seeded().await;
    let (w, id) = World::with_incident().await;
    let mut users: Vec<Uuid> = burst(&t).await.into_iter().map(|(_, u)| u).collect();
    users.dedup();
    users.truncate(2);
    let holder = hold(&t, &users).await;
    let mut args = WINDOW.to_vec();
    args.push("--json");
    let run = w.spawn(&t.url, &args);

    until_waiting(&t).await;
    let first = console_backends(&t, false).await;
    let ended_first = terminate(&t, &first).await;
    assert!(ended_first >= 1, "server processes of the binary ended: {first:?}");
    // The workers come back on new server processes and wait on the lock again.
    until_waiting(&t).await;
    let second = console_backends(&t, false).await;
    assert!(second.iter().all(|p| !first.contains(p)), "new server processes: {first:?} then {second:?}");
    let ended_second = terminate(&t, &second).await;
    assert!(ended_second >= 1, "{second:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    release(holder).await;

    let (out, _) = run.finish(Duration::from_secs(60)).await;
    out.code(0).clean();
    assert!(!out.stderr.contains("cancelling"), "no signal, no cancel: {}", out.stderr);
    let r = out.json();
    let s = &r["summary"];
    assert_eq!(count(&s["rolled_back"]), 60, "{r}");
    assert_eq!((count(&s["failed"]), count(&s["unknown"]), count(&s["not_attempted"])), (0, 0, 0), "{r}");
    assert_eq!(s["cancelled"], false, "{r}");
    assert_eq!(r["audit_of_touched_users"], serde_json::json!([]), "{r}");
    let entries = w.rollbacks(&id);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["success"], true, "{}", entries[0]);
    let db = batch_agrees(&t, &r, &entries[0]).await;
    assert_eq!(db.orders, 60);
    assert_eq!(burst_done(&t).await, (60, db.refunded), "the burst is this batch's");
    w.verified(&id).await;
    eprintln!(
        "FAULT terminated-twice-batch: exit={} ended={}+{} summary.rolled_back={} reply_lost={} retries={} db={} \
         journal.orders={} refunded summary={} db={} journal={}",
        out.code,
        ended_first,
        ended_second,
        count(&s["rolled_back"]),
        count(&s["reply_lost"]),
        count(&s["retries"]),
        db.orders,
        count(&entries[0]["orders"]),
        money(&s["refunded"]),
        db.refunded,
        money(&entries[0]["refunded"]),
    );
}
