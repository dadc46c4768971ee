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
