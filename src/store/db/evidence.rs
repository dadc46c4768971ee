//! What an incident's evidence bundle reads from the database: the audit-log rows of its
//! operations and orders, the server's version and the migrations applied.

use serde_json::Value;
use sqlx::{Executor, Postgres};
use uuid::Uuid;

use super::call_json;
use crate::core::error::Result;

/// Every `order_audit_log` row of these operations (`batch_id`) or orders, oldest first.
pub async fn audit_rows_of<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    operations: &[Uuid],
    orders: &[Uuid],
) -> Result<Value> {
    call_json(
        e,
        sqlx::query(
            "SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.created_at, a.id), '[]')
             FROM order_audit_log a WHERE a.batch_id = ANY ($1) OR a.order_id = ANY ($2)",
        )
        .bind(operations.to_vec())
        .bind(orders.to_vec()),
    )
    .await
}

/// The server's version string and the migrations applied.
pub async fn server_versions<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Value> {
    call_json(
        e,
        sqlx::query(
            "SELECT jsonb_build_object('server', version(),
                    'migrations', (SELECT coalesce(jsonb_agg(version ORDER BY version), '[]') FROM _sqlx_migrations))",
        ),
    )
    .await
}
