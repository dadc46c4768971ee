//! Session settings and the server-side handles of a connection (backend pid, cancel).
//!
//! What a session tells the server about itself (the operator's name, timeouts, the batch
//! it works for) is set with `set_config` after connecting, never as startup parameters:
//! a pooler may drop or refuse those (PgBouncer's `ignore_startup_parameters`). Behind a
//! transaction pooler the same settings are set again, locally, at the start of every
//! transaction (see `scope`).

use sqlx::{Executor, PgConnection, Postgres};
use uuid::Uuid;

use super::call_json;
use super::scope::{Db, DbConn};
use crate::core::contract::SessionOperator;
use crate::core::error::{Error, Result};

/// What every statement of a session runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSettings {
    /// The name claimed for the audit rows (`incident.operator`).
    pub operator: String,
    /// `statement_timeout` in milliseconds (0: none).
    pub statement_timeout_ms: u64,
    /// `lock_timeout` in milliseconds (0: none).
    pub lock_timeout_ms: u64,
    /// The batch this session works for (`incident.batch_id`).
    pub batch_id: Option<Uuid>,
    /// NOTIFYs are the batch's to send (`incident.defer_notify`).
    pub defer_notify: bool,
}

/// Sets a session's settings for the session (`local` false) or for the transaction it
/// is in. Either way the server checks every second that the client is still there while
/// a statement runs: a client that died (or was cut off, or behind a transaction pooler
/// cancelled a request by closing its connection) must not have its rollback commit
/// minutes later when a lock it waited for comes free.
pub async fn apply_settings(conn: &mut PgConnection, s: &SessionSettings, local: bool) -> Result<()> {
    Ok(apply(conn, s, local).await?)
}

// Per transaction (behind a transaction pooler) the search path is pinned as the contract
// functions pin theirs: another client of the login may have left a temporary table named
// like one of the book's on the server connection, and pg_temp would otherwise come first.
// A session of its own has no such neighbour (and migrations create in its first schema).
pub(super) async fn apply(conn: &mut PgConnection, s: &SessionSettings, local: bool) -> sqlx::Result<()> {
    let sql = if local {
        "SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true), \
                set_config('incident.operator', $3, true), set_config('incident.batch_id', $4, true), \
                set_config('incident.defer_notify', $5, true), \
                set_config('client_connection_check_interval', '1000', true), \
                set_config('search_path', 'pg_catalog, public, pg_temp', true)"
    } else {
        "SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $2, false), \
                set_config('incident.operator', $3, false), set_config('incident.batch_id', $4, false), \
                set_config('incident.defer_notify', $5, false), \
                set_config('client_connection_check_interval', '1000', false)"
    };
    let on = |b: bool| if b { "on" } else { "" };
    sqlx::query(sql)
        .bind(s.statement_timeout_ms.to_string())
        .bind(s.lock_timeout_ms.to_string())
        .bind(s.operator.clone())
        .bind(s.batch_id.map(|b| b.to_string()).unwrap_or_default())
        .bind(on(s.defer_notify))
        // Behind a transaction pooler (local), no statement may keep a name.
        .persistent(!local)
        .execute(conn)
        .await?;
    Ok(())
}

/// What this session's rows will say (`session_operator()`): None on a database migrated
/// before the function existed, where nothing can be checked.
pub async fn session_operator<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Option<SessionOperator>> {
    match call_json(e, sqlx::query("SELECT session_operator()")).await {
        Ok(v) => super::decode::<SessionOperator>(v, "session_operator").map(Some),
        Err(Error::Database(d)) if d.code.as_deref() == Some("42883") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Marks what this connection does next as part of a batch, and defers its NOTIFYs to
/// the batch (one per interval, not one per commit): for its session, or behind a
/// transaction pooler for every transaction it starts.
pub async fn join_batch(conn: &mut DbConn, batch_id: Uuid) -> Result<()> {
    if let Some(s) = conn.per_transaction_settings() {
        s.batch_id = Some(batch_id);
        s.defer_notify = true;
        return Ok(());
    }
    if let Some(c) = conn.session() {
        sqlx::query(
            "SELECT set_config('incident.batch_id', $1, false), set_config('incident.defer_notify', 'on', false)",
        )
        .bind(batch_id.to_string())
        .execute(c)
        .await?;
    }
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

/// The backend's process id, asked without preparing a statement (the simple protocol):
/// asked before it is known whether a transaction pooler is in between, where a named
/// statement would stay on a server connection other clients get.
pub async fn backend_pid_unprepared(conn: &mut PgConnection) -> Result<i32> {
    use sqlx::Row;
    let row = sqlx::raw_sql("SELECT pg_backend_pid()").fetch_one(conn).await?;
    Ok(row.try_get(0)?)
}

/// Backend process id of this connection.
pub async fn backend_pid(conn: &mut PgConnection) -> Result<i32> {
    Ok(sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn).await?)
}

/// Who this session's backend is: its pid and when it started (a pid alone may be reused).
pub async fn backend_identity(conn: &mut PgConnection) -> Result<(i32, chrono::DateTime<chrono::Utc>)> {
    Ok(sqlx::query_as("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        .fetch_one(conn)
        .await?)
}

/// Ends a backend of this login that lost its client, waiting up to `wait_ms` for it to be
/// gone, so that what it was doing has committed or rolled back before anyone reads the
/// result. True when it is gone (or was already).
pub async fn fence_backend<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    pid: i32,
    started: chrono::DateTime<chrono::Utc>,
    wait_ms: i64,
) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(bool_and(pg_terminate_backend(pid, $3)), true) \
         FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2",
    )
    .bind(pid)
    .bind(started)
    .bind(wait_ms)
    .fetch_one(e)
    .await?)
}

/// Ends a backend of this login (a batch's, whose wait was given up), waiting up to
/// `wait_ms` for it to be gone. True when it is gone (or was already): false means it may
/// still be running its call.
pub async fn terminate_backend<'e, E: Executor<'e, Database = Postgres>>(e: E, pid: i32, wait_ms: i64) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT coalesce(bool_and(pg_terminate_backend(pid, $2)), true) FROM pg_stat_activity WHERE pid = $1",
    )
    .bind(pid)
    .bind(wait_ms)
    .fetch_one(e)
    .await?)
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

/// Whether a backend still runs a statement (its cancel not yet acted on).
pub async fn backend_active<'e, E: Executor<'e, Database = Postgres>>(e: E, pid: i32) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT coalesce(bool_or(state = 'active'), false) FROM pg_stat_activity WHERE pid = $1")
        .bind(pid)
        .fetch_one(e)
        .await?)
}

/// The console's health probe: a trivial query under a server-side limit of its own, in
/// one round trip. The limit is set for this transaction only (`SET LOCAL`), so behind a
/// transaction pooler it does not stay on a server connection another client gets next;
/// the simple protocol names no statement, which such a pooler would lose.
pub async fn health_probe(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql("BEGIN; SET LOCAL statement_timeout = '1s'; SELECT 1; COMMIT").execute(conn).await?;
    Ok(())
}

/// One trivial round trip on a pool (on any of its connections, behind a transaction
/// pooler in a transaction of its own): the console times it when it connects.
pub async fn ping(db: &Db) -> Result<()> {
    sqlx::query("SELECT 1").execute(db).await?;
    Ok(())
}
