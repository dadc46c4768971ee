//! What the benchmark reads besides the contract: the server's version, table sizes, and
//! the `count(*)` baselines its audit timings are divided by.

use std::time::Instant;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::error::Result;

/// `count(*)` over every table the full audit reads.
const COUNT_BOOK: &str = "SELECT (SELECT count(*) FROM profiles) + (SELECT count(*) FROM orders) \
     + (SELECT count(*) FROM positions) + (SELECT count(*) FROM ledger_transfers) \
     + (SELECT count(*) FROM order_audit_log)";
/// ... and the incremental audit, which also reads the checkpoint.
const COUNT_INCREMENTAL: &str = "SELECT (SELECT count(*) FROM profiles) + (SELECT count(*) FROM orders) \
     + (SELECT count(*) FROM positions) + (SELECT count(*) FROM ledger_transfers) \
     + (SELECT count(*) FROM order_audit_log) + (SELECT count(*) FROM ledger_audit_checkpoint_users)";

/// `version()`.
pub async fn server_version(conn: &mut PgConnection) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT version()").fetch_one(conn).await?)
}

/// `VACUUM ANALYZE`: fresh statistics and visibility maps before timing.
pub async fn vacuum_analyze(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("VACUUM ANALYZE").execute(conn).await?;
    Ok(())
}

/// Orders and ledger transfers in the book.
pub async fn book_counts(conn: &mut PgConnection) -> Result<(i64, i64)> {
    Ok(sqlx::query_as("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM ledger_transfers)")
        .fetch_one(conn)
        .await?)
}

/// Executed orders (id, user), at most `limit`, in id order.
pub async fn some_executed_orders(conn: &mut PgConnection, limit: i64) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as("SELECT id, user_id FROM orders WHERE status = 'executed' ORDER BY id LIMIT $1")
        .bind(limit)
        .fetch_all(conn)
        .await?)
}

/// Best of three, in seconds: `count(*)` over the tables the audit reads (with the
/// checkpoint's table for the incremental audit).
pub async fn time_audited_tables_count(conn: &mut PgConnection, incremental: bool) -> Result<f64> {
    let sql = if incremental { COUNT_INCREMENTAL } else { COUNT_BOOK };
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let _: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// The pgbench script of the single-call figure: each transaction takes the next order of
/// `bench_script_queue` and rolls it back with `rollback_execute_order_atomic`, one order
/// per call, as an outside tool would call the contract.
pub const SCRIPT_ROLLBACK: &str = "SELECT rollback_execute_order_atomic(q.order_id, q.user_id, 'bench: pgbench script') \
     FROM bench_script_queue q WHERE q.n = (SELECT nextval('bench_script_next'));\n";

/// Fills `bench_script_queue` (made afresh) with the orders the script rolls back, numbered
/// from 1 in the order given, and resets the sequence the script takes them by.
pub async fn create_script_queue(conn: &mut PgConnection, orders: &[(Uuid, Uuid)]) -> Result<()> {
    for sql in [
        "DROP TABLE IF EXISTS bench_script_queue",
        "DROP SEQUENCE IF EXISTS bench_script_next",
        "CREATE TABLE bench_script_queue (n bigint PRIMARY KEY, order_id uuid NOT NULL, user_id uuid NOT NULL)",
        "CREATE SEQUENCE bench_script_next",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    let (ids, users): (Vec<Uuid>, Vec<Uuid>) = orders.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO bench_script_queue (n, order_id, user_id) \
         SELECT q.n, q.order_id, q.user_id FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS q (order_id, user_id, n)",
    )
    .bind(&ids)
    .bind(&users)
    .execute(&mut *conn)
    .await?;
    sqlx::query("ANALYZE bench_script_queue").execute(&mut *conn).await?;
    Ok(())
}

/// How many of the queued orders are rolled back now (what the script really did, whatever
/// pgbench counted).
pub async fn script_queue_rolled_back(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM bench_script_queue q JOIN orders o ON o.id = q.order_id WHERE o.status = 'rolled_back'",
    )
    .fetch_one(conn)
    .await?)
}

/// How many orders are rolled back with this exact reason.
pub async fn rolled_back_with_reason(conn: &mut PgConnection, reason: &str) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'rolled_back' AND rolled_back_reason = $1")
        .bind(reason)
        .fetch_one(conn)
        .await?)
}
