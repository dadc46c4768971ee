//! The ledger audit: whole book, some users, and the checkpoints that make it incremental.

use serde_json::Value;
use sqlx::{Executor, PgPool, Postgres};
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

/// Records a new audit checkpoint: the figures of the book in one snapshot, built from the
/// previous checkpoint, or with `full` (or when there is none) from the tables alone. The
/// server takes the snapshot and locks nothing, so trading goes on while it runs; the
/// call is one transaction of its own (the function refuses a transaction that has
/// written), retried after a serialization failure or a deadlock.
pub async fn refresh_audit_checkpoint(pool: &PgPool, full: bool) -> Result<CheckpointInfo> {
    let mut retry = super::Retry::new(5);
    loop {
        let r = call_json(pool, sqlx::query("SELECT ledger_audit_checkpoint($1)").bind(full)).await;
        if !retry.again(&r, |n| Some(std::time::Duration::from_millis(20 << n))).await {
            return checkpoint_result(r?);
        }
    }
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

/// `record_journal_waiver(operation, orders, users, mode, reason)`: the commander's decision
/// to roll back without the incident's journal, written to the audit log before the
/// rollback runs (one `journal_waived` row per order, with the operator, the login, the
/// operation id as `batch_id` and the reason). Returns the rows written. A refusal is an
/// error: the rollback must not go ahead without its record.
pub async fn record_journal_waiver<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    operation: Uuid,
    orders: &[(Uuid, Uuid)],
    mode: &str,
    reason: &str,
) -> Result<u64> {
    let (order_ids, user_ids): (Vec<Uuid>, Vec<Uuid>) = orders.iter().copied().unzip();
    let v = call_json(
        e,
        sqlx::query("SELECT record_journal_waiver($1, $2, $3, $4, $5)")
            .bind(operation)
            .bind(order_ids)
            .bind(user_ids)
            .bind(mode.to_string())
            .bind(reason.to_string()),
    )
    .await?;
    if v.get("success").and_then(Value::as_bool) != Some(true) {
        return Err(Error::CheckFailed(format!(
            "the journal waiver was refused ({}): {}",
            crate::core::sanitize::line(v.get("error_code").and_then(Value::as_str).unwrap_or("unknown")),
            crate::core::sanitize::line(v.get("message").and_then(Value::as_str).unwrap_or(""))
        )));
    }
    v.get("recorded").and_then(Value::as_u64).ok_or_else(|| Error::UnexpectedAnswer {
        what: "record_journal_waiver".into(),
        detail: format!("no count of rows recorded in {v}"),
    })
}
