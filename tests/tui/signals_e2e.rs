//! A hang-up while the console runs a batch: the real binary in a private tmux server,
//! an incident open, the burst rolled back as a batch while another session holds one
//! user's profile row (so that worker's call waits on it), then SIGHUP to the console's
//! process. The console must end as quitting does: the batch cancelled on the server,
//! an `interrupted: SIGHUP …` entry in the journal that says what the database holds,
//! exit code 129; and the same batch run again from the command line finishes the burst.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::support::cli::{console_in, run_cmd};
use crate::support::db::{BURST_SQL, TestDb, assert_consistent, seeded};
use crate::support::tmux::{Console, WAIT as T};

const REASON: &str = "duplicate executions of deploy 4711";

/// The server processes of the binary in this test's database; those waiting on a lock
/// when `waiting`.
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

/// The burst as the database has it: orders rolled back; the audit rows of their
/// rollbacks, the orders among them and their refund; and the batch ids on those rows.
async fn burst_rows(t: &TestDb) -> (i64, i64, i64, Decimal, Vec<Uuid>) {
    let (status, rows, orders, refunded): (i64, i64, i64, Decimal) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT (SELECT count(*) FROM orders WHERE {BURST_SQL} AND status = 'rolled_back'), \
                count(*), count(DISTINCT order_id), coalesce(sum((details->>'refunded')::numeric), 0) \
         FROM order_audit_log WHERE action = 'order_rolled_back' \
         AND order_id IN (SELECT id FROM orders WHERE {BURST_SQL})"
    )))
    .fetch_one(&t.pool)
    .await
    .expect("burst rows");
    let batches: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT batch_id FROM order_audit_log WHERE action = 'order_rolled_back' AND batch_id IS NOT NULL",
    )
    .fetch_all(&t.pool)
    .await
    .expect("batch ids");
    (status, rows, orders, refunded, batches)
}

/// The console's own process: the child of the pane's shell (found in /proc), so the
/// signal reaches it and not the shell that reports how it ended.
fn console_pid(c: &Console) -> libc::pid_t {
    let shell: i32 = c.pane_format("#{pane_pid}").parse().expect("the pane's pid");
    let children: Vec<i32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            // The fields after the command name (which may hold spaces) start with state, ppid.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<i32>().ok()) == Some(shell)
            })
        })
        .collect();
    assert_eq!(children.len(), 1, "one process under the pane's shell {shell}: {children:?}");
    children[0]
}

fn money(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("not money: {s:?} ({e})")),
        other => panic!("not money: {other}"),
    }
}

/// How many entries of the journal are of `kind`.
fn kinds(dir: &std::path::Path, kind: &str) -> usize {
    let text = std::fs::read_to_string(dir.join("journal.jsonl")).expect("read journal.jsonl");
    text.lines().filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|e| e["kind"] == kind)).count()
}

/// The data of the journal's `rollback` entries, in order.
fn rollbacks(dir: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("journal.jsonl")).expect("read journal.jsonl");
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a journal line is JSON"))
        .filter(|e| e["kind"] == "rollback")
        .map(|e| e["data"].clone())
        .collect()
}

async fn release(mut holder: PgConnection) {
    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.expect("release the lock");
}

/// SIGHUP once the batch has settled into waiting on the held lock and the console shows
/// every rollback the database has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_during_a_batch_cancels_it_and_journals_what_the_database_holds() {
    sighup_mid_batch(true).await;
}

/// SIGHUP as soon as the held lock is waited on, while the other workers still commit:
/// the console cancels the batch and waits for its summary before it ends, so the journal
/// has every rollback that committed, not only those its progress events (every 250 ms)
/// had reported. (It journaled the progress heard until this test found it 12, 15 and 41
/// rollbacks short.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_while_orders_commit_journals_every_rollback_the_database_holds() {
    sighup_mid_batch(false).await;
}

/// The batch over the burst in the console with the first order's user held, then
/// SIGHUP: once the console has caught up with the database when `settled`, else as soon
/// as the lock is waited on.
async fn sighup_mid_batch(settled: bool) {
    let t = seeded().await;
    let data = tempfile::tempdir().expect("data dir");
    let config = data.path().join("config.toml");
    let (first, user): (Uuid, Uuid) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, user_id FROM orders WHERE {BURST_SQL} ORDER BY created_at, id LIMIT 1"
    )))
    .fetch_one(&t.pool)
    .await
    .expect("the burst's first order");
    let mut holder = t.conn().await;
    sqlx::raw_sql("BEGIN").execute(&mut holder).await.expect("begin");
    sqlx::query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE")
        .bind(user)
        .execute(&mut holder)
        .await
        .expect("lock the profile");

    let c = Console::options()
        .env("INCIDENT_CONSOLE_DATA_DIR", data.path())
        .env("INCIDENT_CONSOLE_CONFIG", &config)
        .open(&["--database-url", &t.url, "--title", "GBPUSD duplicate executions", "--level", "3"]);
    // The batch over the burst, confirmed with the count (as in incident_e2e).
    c.wait_for("Orders ·", T).await;
    c.keys(&["/"]);
    c.wait_for("typing the filter", T).await;
    c.type_text("GBPUSD executed from:13:02 to:13:06");
    c.keys(&["Enter"]);
    c.wait_for("of 60", T).await;
    c.keys(&["A"]);
    c.wait_for("Batch: every executed order matching the filter", T).await;
    c.keys(&["b"]);
    c.wait_for("Reason (required):", T).await;
    c.enter_text(REASON).await;
    c.wait_for("Type 60 to roll back", T).await;
    c.type_text("60");
    c.keys(&["Enter"]);

    // In progress: one worker waits on the held user, the others finish their queues and
    // the console shows what the database has.
    let start = Instant::now();
    let mut seen = (-1, Instant::now());
    let before = loop {
        assert!(start.elapsed() < T, "the batch never settled into waiting on the lock; the screen:\n{}", c.screen());
        let waiting = !console_backends(&t, true).await.is_empty();
        let (done, ..) = burst_rows(&t).await;
        // A few have committed and more are on their way.
        if waiting && !settled && done >= 3 {
            break done;
        }
        if done != seen.0 {
            seen = (done, Instant::now());
        } else if waiting && seen.1.elapsed() > Duration::from_millis(600) {
            let shown = format!(" rolled back {done} · refused or failed 0");
            if c.screen().contains(&shown) {
                break done;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(before < 60, "the held user's orders are not rolled back yet");
    let label = if settled { "sighup-console" } else { "sighup-console-while-committing" };

    // What the console showed of the batch just before the signal (its progress events).
    let screen = c.screen();
    let shown: i64 = screen
        .lines()
        .find(|l| l.contains(" · refused or failed "))
        .and_then(|l| l.split(" rolled back ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1);
    let pid = console_pid(&c);
    // SAFETY: kill sends SIGHUP to the console this test started (its pid read above).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0, "send SIGHUP");
    let sent = Instant::now();
    c.wait_for("console-exited-129", Duration::from_secs(10)).await;
    let elapsed = sent.elapsed();
    // Nothing of the console is left on the server to commit when the lock comes free.
    let gone = Instant::now();
    while !console_backends(&t, false).await.is_empty() {
        assert!(gone.elapsed() < Duration::from_secs(5), "the console's server processes outlived it");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    release(holder).await;
    let status: String = sqlx::query_scalar("SELECT status::text FROM orders WHERE id = $1")
        .bind(first)
        .fetch_one(&t.pool)
        .await
        .expect("status");
    assert_eq!(status, "executed", "the order in flight was cancelled, not left to commit");

    // The journal's entry says SIGHUP, and what the database holds.
    let incidents = data.path().join("incidents");
    let dir = std::fs::read_dir(&incidents)
        .expect("incidents")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("the incident's directory");
    let entries = rollbacks(&dir);
    assert_eq!(entries.len(), 1, "one rollback entry: {entries:?}");
    let entry = &entries[0];
    let detail = entry["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("interrupted: SIGHUP ended the console with "), "{entry}");
    assert_eq!((entry["mode"].as_str(), entry["success"].as_bool()), (Some("batch"), Some(false)), "{entry}");
    let (done, rows, orders, refunded, batches) = burst_rows(&t).await;
    let operation: Uuid = entry["operation"].as_str().and_then(|o| o.parse().ok()).expect("the entry's operation");
    if done > 0 {
        assert_eq!(batches, vec![operation], "every rollback of the burst carries the entry's batch id");
    }
    assert_eq!((rows, orders), (done, done), "each order rolled back once");
    if settled {
        // Nothing was left to commit but the call on the held lock, which was cancelled.
        assert_eq!(done, before, "nothing committed after the signal");
        assert!(
            detail.contains(&format!(
                "with {before} of 60 finished ({before} rolled back, 0 already rolled back, 0 refused, 0 failed, {} \
                 not attempted)",
                60 - before
            )),
            "{entry}"
        );
    }
    assert_eq!(entry["orders"].as_i64(), Some(done), "the journal's orders are the database's: {entry}");
    assert_eq!(money(&entry["refunded"]), refunded, "the journal's refund is the database's: {entry}");
    assert_consistent(&t.pool).await;

    // The same batch from the command line, in the same incident, finishes the burst.
    let mut rerun = console_in(data.path(), "e2e");
    rerun.args(["--database-url", &t.url, "rollback", "--symbol", "GBPUSD", "--from", "2026-11-25 13:02"]);
    rerun.args(["--to", "2026-11-25 13:06", "--reason", REASON, "--yes", "--json"]);
    let r = run_cmd(rerun, None).await.code(0).clean().json();
    assert_eq!(r["summary"]["rolled_back"].as_i64(), Some(60 - done), "{r}");
    let (all, rows, orders, total_refunded, _) = burst_rows(&t).await;
    assert_eq!((all, rows, orders), (60, 60, 60), "the whole burst, each order once");
    let entries = rollbacks(&dir);
    assert_eq!(entries.len(), 2, "the rerun journaled in the same incident: {entries:?}");
    // The rerun settles earlier rollbacks whose journal figures differ from their audit rows:
    // the console's entry already had the database's.
    assert_eq!(kinds(&dir, "rollback_settled"), 0, "the rerun found nothing to settle");
    let journal_orders: i64 = entries.iter().filter_map(|e| e["orders"].as_i64()).sum();
    let journal_refunded: Decimal = entries.iter().map(|e| money(&e["refunded"])).sum();
    assert_eq!((journal_orders, journal_refunded), (60, total_refunded), "the journal's totals are the database's");
    assert_consistent(&t.pool).await;
    let mut verify = console_in(data.path(), "e2e");
    verify.args(["incident", "verify"]);
    run_cmd(verify, None).await.code(0).clean().says("Journal intact");
    eprintln!(
        "FAULT {label}: exit=129 elapsed_ms={} screen_before_signal={shown} db_before_signal>={before} \
         journal.orders={} db={} in_flight_status={status} \
         refunded journal={} db={refunded} | rerun: rolled_back={} journal.orders total={journal_orders} \
         refunded total={journal_refunded} db={total_refunded}",
        elapsed.as_millis(),
        entry["orders"],
        done,
        money(&entry["refunded"]),
        60 - done,
    );
}
