//! What the metrics and the dashboard read from the audit log and the server.

use chrono::{DateTime, Utc};
use sqlx::{Executor, Postgres};

use crate::core::contract::*;
use crate::core::error::Result;

/// Rollback calls and recorded failures since `since` (drill data left out).
pub async fn rollback_records<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    since: DateTime<Utc>,
) -> Result<Vec<RollbackRecord>> {
    Ok(sqlx::query_as(
        "SELECT min(created_at) AS at, max(duration_us) AS duration_us, \
                bool_and(action = 'order_rolled_back') AS success, \
                coalesce(batch_id, rollback_id) AS operation, count(*) AS orders \
         FROM order_audit_log \
         WHERE NOT is_drill AND action IN ('order_rolled_back', 'rollback_failed') AND created_at >= $1 \
         GROUP BY rollback_id, batch_id \
         ORDER BY 1",
    )
    .bind(since)
    .fetch_all(e)
    .await?)
}

/// Post-checks that failed since `since` (drill data left out).
pub async fn failed_postchecks<'e, E: Executor<'e, Database = Postgres>>(e: E, since: DateTime<Utc>) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM order_audit_log WHERE NOT is_drill AND action = 'postcheck_failed' AND created_at >= $1",
    )
    .bind(since)
    .fetch_one(e)
    .await?)
}

/// The audit log's highest id (0: empty): it moves whenever a rollback or a failure is
/// recorded, so a poll that sees it unchanged need not refresh the dashboard.
pub async fn audit_log_mark<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM order_audit_log").fetch_one(e).await?)
}

/// Successful rollback calls per minute over the last `minutes` minutes, oldest first.
pub async fn rollbacks_per_minute<'e, E: Executor<'e, Database = Postgres>>(e: E, minutes: i32) -> Result<Vec<u64>> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT (extract(epoch FROM date_trunc('minute', now()) - date_trunc('minute', created_at)) / 60)::int AS ago, \
                count(DISTINCT rollback_id) \
         FROM order_audit_log \
         WHERE action = 'order_rolled_back' AND NOT is_drill \
           AND created_at >= date_trunc('minute', now()) - make_interval(mins => $1 - 1) \
         GROUP BY 1",
    )
    .bind(minutes)
    .fetch_all(e)
    .await?;
    let n = minutes.max(1) as usize;
    let mut out = vec![0u64; n];
    for (ago, count) in rows {
        if (0..n as i32).contains(&ago) {
            out[n - 1 - ago as usize] = count.max(0) as u64;
        }
    }
    Ok(out)
}

/// Rollback calls running now on any connection (0 when this role cannot see others').
pub async fn rollbacks_in_flight<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() \
           AND (query LIKE '%rollback_execute_order_atomic(%' OR query LIKE '%rollback_order_execution(%' \
                OR query LIKE '%rollback_with_postcheck(%')",
    )
    .fetch_one(e)
    .await?)
}
