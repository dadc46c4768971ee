//! A batch under faults (issue 9): its connections terminated mid-batch, twice. Workers
//! reconnect and keep their queues; a call cut off is read back before it is retried, so
//! every order is rolled back exactly once and the summary's money is the database's.

use std::sync::Arc;
use std::time::Duration;

use crate::support::db::*;
use incident_console::core::batch::BatchItem;
use incident_console::ops::batch::{self, BatchOptions, Progress};
use rust_decimal::Decimal;
use uuid::Uuid;

async fn burst_items(t: &TestDb) -> Vec<BatchItem> {
    let sql =
        format!("SELECT id, user_id FROM orders WHERE {BURST_SQL} AND status = 'executed' ORDER BY created_at, id");
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&t.pool).await.expect("burst");
    rows.into_iter().map(|(order_id, user_id)| BatchItem { order_id, user_id }).collect()
}

/// Waits until one of the batch's connections waits on a lock.
async fn until_waiting(t: &TestDb, progress: &Progress) {
    for _ in 0..400 {
        let pids = progress.backend_pids();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) AND wait_event_type = 'Lock'",
        )
        .bind(&pids)
        .fetch_one(&t.pool)
        .await
        .expect("pg_stat_activity");
        if n > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no connection of the batch ever waited on the held lock");
}

async fn terminate(t: &TestDb, pids: &[i32]) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM unnest($1::int[]) AS p(pid)",
    )
    .bind(pids)
    .fetch_one(&t.pool)
    .await
    .expect("terminate")
}

#[tokio::test]
async fn terminated_connections_reconnect_and_every_order_is_rolled_back_once() {
    let t = seeded().await;
    let items = burst_items(&t).await;
    assert_eq!(items.len(), 60);
    // Two users held: their workers wait on the lock while their connections are killed.
    let mut held: Vec<Uuid> = items.iter().map(|i| i.user_id).collect();
    held.dedup();
    held.truncate(2);
    let mut holder = t.conn().await;
    sqlx::raw_sql("BEGIN").execute(&mut holder).await.expect("begin");
    sqlx::query("SELECT 1 FROM profiles WHERE id = ANY($1) FOR UPDATE")
        .bind(&held)
        .execute(&mut holder)
        .await
        .expect("lock");

    let progress = Arc::new(Progress::default());
    let mut opts = BatchOptions::new("duplicate execution".into());
    opts.concurrency = 4;
    let batch_id = opts.batch_id;
    let settings = t.settings();
    let run = {
        let (items, progress) = (items.clone(), progress.clone());
        tokio::spawn(async move { batch::run(&settings, items, &opts, progress).await })
    };

    until_waiting(&t, &progress).await;
    let first = progress.backend_pids();
    // Workers whose queues are done have closed theirs; every one still open is ended.
    assert!(terminate(&t, &first).await >= 1, "connections of the batch ended");
    // The workers come back on new connections; end those too, once some wait again.
    until_waiting(&t, &progress).await;
    let second = progress.backend_pids();
    assert!(second.iter().all(|p| !first.contains(p)), "new connections: {first:?} then {second:?}");
    assert!(terminate(&t, &second).await >= 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.expect("release");

    let (summary, outcomes) = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the batch ended")
        .expect("join")
        .expect("batch");
    assert!(summary.failed.is_empty(), "no failure: {:?}", summary.failed);
    assert!(summary.unknown.is_empty(), "nothing unknown: {:?}", summary.unknown);
    assert_eq!(summary.rolled_back, 60, "{}", summary.outcome_sentence());
    assert!(summary.complete());
    assert_eq!(outcomes.len(), 60);

    // The database agrees: each order once, all by this batch, the same money.
    let (rows, orders, refunded): (i64, i64, Decimal) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT order_id), coalesce(sum((details->>'refunded')::numeric), 0) \
         FROM order_audit_log WHERE action = 'order_rolled_back' AND batch_id = $1",
    )
    .bind(batch_id)
    .fetch_one(&t.pool)
    .await
    .expect("audit rows");
    assert_eq!((rows, orders), (60, 60));
    assert_eq!(refunded, summary.refunded, "the summary's refund is the audit log's");
    let failures: i64 = sqlx::query_scalar("SELECT count(*) FROM order_audit_log WHERE action = 'rollback_failed'")
        .fetch_one(&t.pool)
        .await
        .expect("failures");
    assert_eq!(failures, 0, "nothing failed, so nothing was recorded as failed");
    assert_consistent(&t.pool).await;
}

/// The journal's entries (`kind`, `data`), in order.
fn journal(dir: &std::path::Path, incident: &str) -> Vec<(String, serde_json::Value)> {
    let path = dir.join("incidents").join(incident).join("journal.jsonl");
    let text = std::fs::read_to_string(path).expect("read the journal");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("journal line");
            (v["kind"].as_str().unwrap_or_default().to_string(), v["data"].clone())
        })
        .collect()
}

/// The audit log's figures for one operation: orders rolled back, cash given back.
async fn db_figures(t: &TestDb, operation: Uuid) -> (i64, Decimal) {
    sqlx::query_as(
        "SELECT count(*), coalesce(sum((details->>'refunded')::numeric), 0) FROM order_audit_log \
         WHERE action = 'order_rolled_back' AND batch_id = $1",
    )
    .bind(operation)
    .fetch_one(&t.pool)
    .await
    .expect("audit figures")
}

/// A batch killed with SIGKILL mid-run leaves its intent and no outcome; the rerun finds
/// those orders already rolled back, finishes the rest, and settles the killed run from its
/// audit rows, so the journal's figures add up to the database's.
#[tokio::test]
async fn a_batch_killed_mid_run_is_settled_from_the_database_by_the_rerun() {
    // One order per call, so the orders before the held one commit before the kill.
    killed_mid_run_settled_by_rerun("1").await;
}

/// The same in chunks of 10: the held user's order is the 30th, so the first two chunks
/// commit before the kill and the third, in flight, is rolled back whole by it.
#[tokio::test]
async fn a_chunked_batch_killed_mid_run_is_settled_from_the_database_by_the_rerun() {
    killed_mid_run_settled_by_rerun("10").await;
}

async fn killed_mid_run_settled_by_rerun(chunk: &str) {
    use crate::support::cli::{console_in, run_cmd};
    let t = seeded().await;
    let dir = tempfile::tempdir().expect("data dir");
    let ic = |args: &[&str]| {
        let mut c = console_in(dir.path(), "settler");
        c.arg("--database-url").arg(&t.url).args(args);
        c
    };
    let opened = run_cmd(ic(&["--json", "incident", "new", "--title", "Burst", "--level", "2"]), None).await;
    let incident = opened.code(0).clean().json()["incident"].as_str().expect("incident id").to_string();

    // One worker, the 30th order's user held: the first orders go through, then it waits.
    let items = burst_items(&t).await;
    let held = items[29].user_id;
    let mut holder = t.conn().await;
    sqlx::raw_sql("BEGIN").execute(&mut holder).await.expect("begin");
    sqlx::query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE").bind(held).execute(&mut holder).await.expect("lock");
    let batch = [
        "rollback",
        "--symbol",
        "GBPUSD",
        "--from",
        "13:02",
        "--to",
        "13:06",
        "--reason",
        "duplicate execution",
        "--yes",
        "--concurrency",
        "1",
        "--chunk-size",
        chunk,
    ];
    let mut first = ic(&batch);
    first.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut child = first.spawn().expect("spawn");
    let mut waiting = false;
    for _ in 0..400 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'incident-console' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&t.pool)
        .await
        .expect("pg_stat_activity");
        if n > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(waiting, "the batch never waited on the held lock");
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    // The server abandons the call of a client that is gone (client_connection_check_interval).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.expect("release");

    let entries = journal(dir.path(), &incident);
    let intents: Vec<Uuid> = entries
        .iter()
        .filter(|(k, _)| k == "rollback_intended")
        .filter_map(|(_, d)| d["operation"].as_str().and_then(|s| s.parse().ok()))
        .collect();
    assert_eq!(intents.len(), 1, "the killed run's intent: {entries:?}");
    assert!(!entries.iter().any(|(k, _)| k == "rollback"), "no outcome: it was killed");
    let killed = intents[0];
    let (killed_orders, killed_refunded) = db_figures(&t, killed).await;
    assert!(killed_orders > 0 && killed_orders < 60, "some orders went through before the kill: {killed_orders}");

    let rerun = run_cmd(ic(&[&batch[..], &["--json"]].concat()), None).await;
    let r = rerun.code(0).clean().json();
    // A window takes the orders still executed: the rest of the burst.
    assert_eq!(r["summary"]["rolled_back"], 60 - killed_orders, "{r}");
    assert!(rerun.stderr.contains("Settled 1 earlier rollback(s)"), "{}", rerun.stderr);

    let entries = journal(dir.path(), &incident);
    let settled: Vec<&serde_json::Value> =
        entries.iter().filter(|(k, _)| k == "rollback_settled").map(|(_, d)| d).collect();
    assert_eq!(settled.len(), 1, "{entries:?}");
    assert_eq!(settled[0]["operation"], killed.to_string());
    assert_eq!(settled[0]["orders"], killed_orders);
    assert_eq!(settled[0]["refunded"].as_str().and_then(|s| s.parse::<Decimal>().ok()), Some(killed_refunded));
    assert_eq!(settled[0]["was"], "no outcome");
    // The journal's figures now add up to the database's for the whole burst.
    let outcome = entries.iter().find(|(k, _)| k == "rollback").map(|(_, d)| d).expect("the rerun's outcome");
    let rerun_op: Uuid = outcome["operation"].as_str().and_then(|s| s.parse().ok()).expect("operation");
    let (rerun_orders, rerun_refunded) = db_figures(&t, rerun_op).await;
    assert_eq!(outcome["orders"], rerun_orders);
    assert_eq!(outcome["refunded"].as_str().and_then(|s| s.parse::<Decimal>().ok()), Some(rerun_refunded));
    assert_eq!(killed_orders + rerun_orders, 60);
    let total: Decimal = sqlx::query_scalar(
        "SELECT sum((details->>'refunded')::numeric) FROM order_audit_log WHERE action = 'order_rolled_back'",
    )
    .fetch_one(&t.pool)
    .await
    .expect("total");
    assert_eq!(killed_refunded + rerun_refunded, total);
    eprintln!(
        "FAULT sigkill-batch-then-rerun: killed run db={killed_orders} orders/{killed_refunded} \
         journal settled={}/{}; rerun db={rerun_orders}/{rerun_refunded} journal={}/{}; burst db=60/{total}",
        settled[0]["orders"], settled[0]["refunded"], outcome["orders"], outcome["refunded"]
    );

    // A second rerun settles nothing more: the figures already agree.
    let again = run_cmd(ic(&batch), None).await;
    again.code(0).clean();
    assert!(!again.stderr.contains("Settled"), "{}", again.stderr);
    assert_consistent(&t.pool).await;
}

/// Any session may claim an operation id (`incident.batch_id` is a setting): rows another
/// login wrote under ours are not counted as ours, neither when a lost reply is read back
/// nor when the journal is settled.
#[tokio::test]
async fn another_login_claiming_our_operation_id_is_not_counted_as_ours() {
    use crate::attribution::{drop_role, login_role};
    use incident_console::store::db;
    use sqlx::Connection;
    let t = test_db().await;
    let user = account(&t.pool, "100000").await;
    let ours = executed(&t.pool, user, "1000", None).await;
    let theirs = executed(&t.pool, user, "2000", None).await;
    let operation = Uuid::new_v4();
    let role = login_role(&t, "claimer", "incident_operator").await;
    {
        let mut c = sqlx::PgConnection::connect(&t.url_as(&role, "irrelevant")).await.expect("login");
        sqlx::query(
            "SELECT set_config('incident.batch_id', $1, false), set_config('incident.operator', 'mallory', false)",
        )
        .bind(operation.to_string())
        .execute(&mut c)
        .await
        .expect("claim the id");
        let r = db::rollback_order(&mut c, theirs, user, "claimed").await.expect("their rollback");
        assert!(r.success, "{r:?}");
        let _ = c.close().await;
    }
    let mut me = t.conn().await;
    sqlx::query("SELECT set_config('incident.batch_id', $1, false)")
        .bind(operation.to_string())
        .execute(&mut me)
        .await
        .expect("our id");
    assert!(db::rollback_order(&mut me, ours, user, "ours").await.expect("our rollback").success);

    let states = db::order_rollback_states(&mut me, &[ours, theirs]).await.expect("states");
    let by = |id: Uuid| states.iter().find(|s| s.order_id == id).expect("state");
    assert!(by(ours).rolled_back_by(operation), "ours: {:?}", by(ours));
    assert!(!by(theirs).rolled_back_by(operation), "the same id, another login: {:?}", by(theirs));
    let totals = db::operation_totals(&mut me, &[operation]).await.expect("totals");
    assert_eq!(totals.len(), 1);
    assert_eq!(totals[0].1, 1, "only our login's row counts: {totals:?}");
    let _ = me.close().await;
    drop_role(&t, &role).await;
}
