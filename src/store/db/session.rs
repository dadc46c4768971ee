//! Session settings and the server-side handles of a connection (backend pid, cancel).

use sqlx::{Executor, PgConnection, Postgres};
use uuid::Uuid;

use crate::core::error::Result;

/// Marks what this session does next as part of a batch, and defers its NOTIFYs to the
/// batch (one per interval, not one per commit).
pub async fn join_batch(conn: &mut PgConnection, batch_id: Uuid) -> Result<()> {
    sqlx::query("SELECT set_config('incident.batch_id', $1, false), set_config('incident.defer_notify', 'on', false)")
        .bind(batch_id.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks accounts this session creates as drill accounts (left out of the metrics).
pub async fn mark_session_as_drill(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT set_config('incident.drill', 'on', false)").execute(conn).await?;
    Ok(())
}

/// Tells dashboards listening on `order_audit` that the audit log changed.
pub async fn notify_audit_changed<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<()> {
    sqlx::query("SELECT pg_notify('order_audit', 'batch')").execute(e).await?;
    Ok(())
}

/// Sets the isolation level of the next transactions of this session.
pub async fn set_serializable(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE").execute(conn).await?;
    Ok(())
}

/// Backend process id of this connection.
pub async fn backend_pid(conn: &mut PgConnection) -> Result<i32> {
    Ok(sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn).await?)
}

/// Whether a backend is waiting for a lock.
pub async fn is_waiting_for_lock<'e, E: Executor<'e, Database = Postgres>>(e: E, pid: i32) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = $1",
    )
    .bind(pid)
    .fetch_one(e)
    .await?)
}

/// `pg_cancel_backend(pid)`.
pub async fn cancel_backend<'e, E: Executor<'e, Database = Postgres>>(e: E, pid: i32) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT pg_cancel_backend($1)").bind(pid).fetch_one(e).await?)
}

/// Round trip of a trivial query.
pub async fn ping<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<()> {
    sqlx::query("SELECT 1").execute(e).await?;
    Ok(())
}
