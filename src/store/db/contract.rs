//! Calls of the SQL contract's functions (the names outside tools rely on).

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{Executor, PgConnection, Postgres};
use uuid::Uuid;

use super::scope::Db;
use super::{call_json, decode};
use crate::core::contract::*;
use crate::core::error::{Error, Result};

/// `rollback_precheck(order, user)`: every pre-check in one round trip.
pub async fn precheck<'e, E: Executor<'e, Database = Postgres>>(e: E, order: Uuid, user: Uuid) -> Result<Precheck> {
    let v = call_json(e, sqlx::query("SELECT rollback_precheck($1, $2)").bind(order).bind(user)).await?;
    decode(v, "rollback_precheck")
}

/// `rollback_postcheck(order, user, baseline)`.
pub async fn postcheck<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    order: Uuid,
    user: Uuid,
    baseline: &Value,
) -> Result<Postcheck> {
    let v = call_json(
        e,
        sqlx::query("SELECT rollback_postcheck($1, $2, $3)").bind(order).bind(user).bind(baseline.clone()),
    )
    .await?;
    decode(v, "rollback_postcheck")
}

/// `rollback_execute_order_atomic`: one order.
pub async fn rollback_order<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    order: Uuid,
    user: Uuid,
    reason: &str,
) -> Result<RollbackResult> {
    let sql = "SELECT rollback_execute_order_atomic($1, $2, $3)";
    rollback_call(e, sql, "rollback_execute_order_atomic", order, user, reason).await
}

/// `rollback_orders(orders, users, reason)` (migration 20): many orders in one call and one
/// transaction, each rolled back by `rollback_execute_order_atomic` in a subtransaction of
/// its own. One answer per order, in the order given; `orders` and `users` pair up.
pub async fn rollback_orders<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    orders: &[Uuid],
    users: &[Uuid],
    reason: &str,
) -> Result<Vec<ChunkAnswer>> {
    let v = call_json(
        e,
        sqlx::query("SELECT rollback_orders($1, $2, $3)")
            .bind(orders.to_vec())
            .bind(users.to_vec())
            .bind(reason.to_string()),
    )
    .await?;
    chunk_answers(v, orders.len()).map_err(|detail| Error::UnexpectedAnswer { what: "rollback_orders".into(), detail })
}

/// `rollback_order_execution`: the order's whole transaction group.
pub async fn rollback_group<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    order: Uuid,
    user: Uuid,
    reason: &str,
) -> Result<RollbackResult> {
    rollback_call(e, "SELECT rollback_order_execution($1, $2, $3)", "rollback_order_execution", order, user, reason)
        .await
}

/// One of the two rollback functions, which take and answer the same.
async fn rollback_call<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    sql: &'static str,
    function: &str,
    order: Uuid,
    user: Uuid,
    reason: &str,
) -> Result<RollbackResult> {
    let v = call_json(e, sqlx::query(sql).bind(order).bind(user).bind(reason.to_string())).await?;
    decode(v, function)
}

/// Rollback and post-check in one round trip.
pub async fn rollback_with_postcheck<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    order: Uuid,
    user: Uuid,
    reason: &str,
    baseline: &Value,
    whole_transaction: bool,
    operation: Uuid,
) -> Result<RollbackAndPostcheck> {
    // The audit rows carry the operation's id (as a batch's carry the batch's): if the reply
    // is lost, the rows prove this call did it. Set for this statement's transaction only;
    // OFFSET 0 keeps the planner from folding the setting away.
    let v = call_json(
        e,
        sqlx::query(
            "SELECT rollback_with_postcheck($1, $2, $3, $4, $5) \
             FROM (SELECT set_config('incident.batch_id', $6, true) OFFSET 0) AS operation",
        )
        .bind(order)
        .bind(user)
        .bind(reason.to_string())
        .bind(baseline.clone())
        .bind(whole_transaction)
        .bind(operation.to_string()),
    )
    .await?;
    decode(v, "rollback_with_postcheck")
}

/// Records a rollback the client could not complete (after its retries).
pub async fn record_failure<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    order: Uuid,
    user: Uuid,
    action: &str,
    detail: &Value,
) -> Result<()> {
    call_json(
        e,
        sqlx::query("SELECT record_rollback_failure($1, $2, $3, $4)")
            .bind(order)
            .bind(user)
            .bind(action.to_string())
            .bind(detail.clone()),
    )
    .await?;
    Ok(())
}

/// `set_maintenance_mode(enabled, reason)`.
pub async fn set_maintenance<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    enabled: bool,
    reason: &str,
) -> Result<Value> {
    call_json(e, sqlx::query("SELECT set_maintenance_mode($1, $2)").bind(enabled).bind(reason.to_string())).await
}

/// `set_symbol_maintenance(symbol, enabled, reason)`: one symbol's new orders stopped or
/// accepted again.
pub async fn set_symbol_maintenance<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    symbol: &str,
    enabled: bool,
    reason: &str,
) -> Result<Value> {
    call_json(
        e,
        sqlx::query("SELECT set_symbol_maintenance($1, $2, $3)")
            .bind(symbol.to_string())
            .bind(enabled)
            .bind(reason.to_string()),
    )
    .await
}

/// Current maintenance mode: the whole book's, and the symbols stopped one by one.
pub async fn maintenance_state<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<MaintenanceState> {
    Ok(sqlx::query_as(
        "SELECT maintenance_mode, maintenance_reason, maintenance_since, maintenance_by, maintenance_by_login, \
                coalesce((SELECT array_agg(symbol ORDER BY symbol) FROM instruments \
                          WHERE suspended_since IS NOT NULL), '{}') AS suspended_symbols, \
                b.since AS breaker_since, b.reason AS breaker_reason, b.source AS breaker_source, \
                b.opened_by AS breaker_by, b.opened_by_login AS breaker_by_login \
         FROM system_settings LEFT JOIN circuit_breaker b ON b.open",
    )
    .fetch_one(e)
    .await?)
}

/// `create_trading_account(user, deposit)`.
pub async fn create_account<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    user: Uuid,
    deposit: Decimal,
) -> Result<Value> {
    call_json(e, sqlx::query("SELECT create_trading_account($1, $2)").bind(user).bind(deposit)).await
}

/// `create_drill_account(user, deposit)`: an account the console leaves out of its lists
/// and metrics.
pub async fn create_drill_account<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    user: Uuid,
    deposit: Decimal,
) -> Result<Value> {
    call_json(e, sqlx::query("SELECT create_drill_account($1, $2)").bind(user).bind(deposit)).await
}

/// Arguments of `execute_order_atomic`.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub user_id: Uuid,
    pub symbol: &'a str,
    pub order_type: &'a str,
    pub side: &'a str,
    pub quantity: Decimal,
    pub price: Decimal,
    pub idempotency_key: &'a str,
    pub transaction_id: Option<Uuid>,
}

/// `execute_order_atomic(...)`.
pub async fn execute_order<'e, E: Executor<'e, Database = Postgres>>(e: E, o: &NewOrder<'_>) -> Result<Value> {
    call_json(
        e,
        sqlx::query("SELECT execute_order_atomic($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(o.user_id)
            .bind(o.symbol.to_string())
            .bind(o.order_type.to_string())
            .bind(o.side.to_string())
            .bind(o.quantity)
            .bind(o.price)
            .bind(o.idempotency_key.to_string())
            .bind(o.transaction_id),
    )
    .await
}

/// The isolation levels a client may run an execution in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// PostgreSQL's default.
    ReadCommitted,
    /// One snapshot for the whole transaction.
    RepeatableRead,
    /// Repeatable read, and no anomaly.
    Serializable,
}

impl Isolation {
    /// Every level, the default first.
    pub const ALL: [Isolation; 3] = [Isolation::ReadCommitted, Isolation::RepeatableRead, Isolation::Serializable];

    fn begin(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "BEGIN ISOLATION LEVEL READ COMMITTED",
            Isolation::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
            Isolation::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::ReadCommitted => "read committed",
            Isolation::RepeatableRead => "repeatable read",
            Isolation::Serializable => "serializable",
        })
    }
}

/// `probe_new_orders()` in a transaction of the given isolation level, always rolled back:
/// the error code the execution path answered (`maintenance_mode` while new orders are
/// refused), none if it would have executed.
pub async fn probe_new_orders(conn: &mut PgConnection, level: Isolation) -> Result<Option<String>> {
    sqlx::query(level.begin()).execute(&mut *conn).await?;
    let answer = call_json(&mut *conn, sqlx::query("SELECT probe_new_orders()")).await;
    // Whatever happened, the transaction ends here (and the probe undid itself anyway).
    let ended = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    probe_answer(answer, ended.map(|_| ()).map_err(Into::into))
}

/// [`probe_new_orders`] on a connection of `pool`, the way it reaches the server (behind a
/// transaction pooler too: the transaction keeps its server connection and carries the
/// session's settings).
pub async fn probe_new_orders_in(pool: &Db, level: Isolation) -> Result<Option<String>> {
    probe_in(pool, level, sqlx::query("SELECT probe_new_orders()")).await
}

/// The same probe for one symbol's new orders: `probe_new_orders(symbol)`.
pub async fn probe_symbol_orders_in(pool: &Db, level: Isolation, symbol: &str) -> Result<Option<String>> {
    probe_in(pool, level, sqlx::query("SELECT probe_new_orders($1)").bind(symbol.to_string())).await
}

/// A probe call in a transaction of `level` that is always rolled back.
async fn probe_in(
    pool: &Db,
    level: Isolation,
    call: sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>,
) -> Result<Option<String>> {
    let mut tx = pool.begin_with(level.begin()).await?;
    let answer = call_json(&mut tx, call).await;
    let ended = tx.rollback().await;
    probe_answer(answer, ended)
}

fn probe_answer(answer: Result<Value>, ended: Result<()>) -> Result<Option<String>> {
    let v = answer?;
    ended?;
    if v.get("executed").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    Ok(Some(v.get("error_code").and_then(Value::as_str).unwrap_or("unknown").to_string()))
}
