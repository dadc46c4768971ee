//! The ledger audit: whole book, some users, and the checkpoints that make it incremental.

use serde_json::Value;
use sqlx::{Executor, PgConnection, PgPool, Postgres};
use uuid::Uuid;

use super::{call_json, decode};
use crate::core::contract::*;
use crate::core::error::{Error, Result};

/// `ledger_audit()`: every invariant violation in the whole book.
pub async fn ledger_audit<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Vec<Violation>> {
    Ok(sqlx::query_as("SELECT user_id, check_name, expected, actual FROM ledger_audit()").fetch_all(e).await?)
}

/// `ledger_audit_full()`: the same, recomputed from the tables alone (no checkpoint).
pub async fn ledger_audit_full<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Vec<Violation>> {
    Ok(sqlx::query_as("SELECT user_id, check_name, expected, actual FROM ledger_audit_full()").fetch_all(e).await?)
}

/// Records a new audit checkpoint. First a horizon (`audit_horizon()`, which waits for
/// the writes in flight and returns the highest ids); then the figures up to it, from the
/// previous checkpoint, or with `full` (or when there is none) from the tables alone. A
/// full checkpoint reads the tables in the snapshot taken under the horizon's locks
/// (exported to a second connection), so the locks are held for milliseconds, not for the
/// whole computation.
pub async fn refresh_audit_checkpoint(pool: &PgPool, full: bool) -> Result<CheckpointInfo> {
    if !full {
        let (l, a, c) = horizon(pool).await?;
        let v = checkpoint_call(pool, l, a, c, false).await?;
        if v.get("error_code").and_then(Value::as_str) != Some("no_checkpoint") {
            return checkpoint_result(v);
        }
    }
    let mut holder = pool.acquire().await?.detach();
    let mut reader = pool.acquire().await?.detach();
    let result = full_checkpoint(&mut holder, &mut reader).await;
    // Whatever happened, neither connection goes back into the pool mid-transaction.
    let _ = sqlx::Connection::close(holder).await;
    let _ = sqlx::Connection::close(reader).await;
    checkpoint_result(result?)
}

async fn horizon<'e, E: Executor<'e, Database = Postgres> + Copy>(e: E) -> Result<(i64, i64, i64)> {
    // A deadlock with a rollback taking its locks at the same moment is retried.
    let mut retry = super::Retry::new(5);
    loop {
        let r = sqlx::query_as("SELECT ledger_max, audit_max, changes_max FROM audit_horizon()").fetch_one(e).await;
        let r = r.map_err(Error::from);
        if !retry.again(&r, |n| Some(std::time::Duration::from_millis(20 << n))).await {
            return r;
        }
    }
}

async fn checkpoint_call<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    ledger_max: i64,
    audit_max: i64,
    changes_max: i64,
    full: bool,
) -> Result<Value> {
    call_json(
        e,
        sqlx::query("SELECT ledger_audit_checkpoint($1, $2, $3, $4)")
            .bind(ledger_max)
            .bind(audit_max)
            .bind(changes_max)
            .bind(full),
    )
    .await
}

async fn full_checkpoint(holder: &mut PgConnection, reader: &mut PgConnection) -> Result<Value> {
    sqlx::query("BEGIN").execute(&mut *holder).await?;
    let (l, a, c): (i64, i64, i64) = sqlx::query_as("SELECT ledger_max, audit_max, changes_max FROM audit_horizon()")
        .fetch_one(&mut *holder)
        .await?;
    // READ COMMITTED: this statement's snapshot is taken after the locks were granted.
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()").fetch_one(&mut *holder).await?;
    if !snapshot.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '-') {
        return Err(Error::UnexpectedAnswer {
            what: "pg_export_snapshot()".into(),
            detail: "not a snapshot id".into(),
        });
    }
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ").execute(&mut *reader).await?;
    // SET TRANSACTION SNAPSHOT takes no parameters; the id comes from the server and was
    // checked above to be hex digits and dashes.
    sqlx::query(sqlx::AssertSqlSafe(format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))).execute(&mut *reader).await?;
    sqlx::query("COMMIT").execute(&mut *holder).await?;
    let v = checkpoint_call(&mut *reader, l, a, c, true).await?;
    sqlx::query("COMMIT").execute(&mut *reader).await?;
    Ok(v)
}

fn checkpoint_result(v: Value) -> Result<CheckpointInfo> {
    if v.get("success").and_then(Value::as_bool) != Some(true) {
        return Err(Error::CheckFailed(format!(
            "the checkpoint was refused: {}",
            crate::core::sanitize::line(v.get("message").and_then(Value::as_str).unwrap_or("unknown"))
        )));
    }
    decode(v, "ledger_audit_checkpoint")
}

/// The same invariants, for some users only.
pub async fn ledger_audit_users<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    users: &[Uuid],
) -> Result<Vec<Violation>> {
    Ok(sqlx::query_as("SELECT user_id, check_name, expected, actual FROM ledger_audit_users($1)")
        .bind(users.to_vec())
        .fetch_all(e)
        .await?)
}
