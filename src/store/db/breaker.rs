//! The circuit breaker (migration 18): open it, close it.

use serde_json::Value;
use sqlx::{Executor, Postgres};

use super::call_json;
use crate::core::error::Result;

/// `open_breaker(reason, source)`: source person, ledger_audit or failures.
pub async fn open_breaker<'e, E: Executor<'e, Database = Postgres>>(e: E, reason: &str, source: &str) -> Result<Value> {
    call_json(e, sqlx::query("SELECT open_breaker($1, $2)").bind(reason.to_string()).bind(source.to_string())).await
}

/// `close_breaker(reason)`.
pub async fn close_breaker<'e, E: Executor<'e, Database = Postgres>>(e: E, reason: &str) -> Result<Value> {
    call_json(e, sqlx::query("SELECT close_breaker($1)").bind(reason.to_string())).await
}

/// Every opening and closing of the circuit breaker, oldest first.
pub async fn breaker_log<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Vec<Value>> {
    Ok(sqlx::query_scalar("SELECT to_jsonb(l) FROM breaker_log l ORDER BY id").fetch_all(e).await?)
}
