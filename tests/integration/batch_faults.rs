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
