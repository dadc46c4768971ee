//! Every SQL statement of the console, in one place. Statements are static text with
//! bound parameters; nothing from a user is ever formatted into SQL.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgRow;
use sqlx::{Executor, FromRow, PgConnection, PgPool, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::protocol::TimeBound;

/// The schema migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./assets/migrations");

// ----------------------------------------------------------------------------------------
// Result types of the SQL contract
// ----------------------------------------------------------------------------------------

/// One check of a pre-check or post-check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    /// Stable name of the check.
    pub check: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was checked, in words.
    #[serde(default)]
    pub detail: Option<String>,
    /// Expected value (post-check), money as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<Value>,
    /// Actual value (post-check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<Value>,
    /// Ledger invariant violations behind a failed consistency check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<Vec<Value>>,
}

/// The figures of a pre-check baseline the console shows. The baseline itself travels as
/// JSON, untouched, back to the post-check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaselineFigures {
    /// The order the baseline was taken for.
    pub order_id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// When the pre-check ran.
    pub captured_at: DateTime<Utc>,
    /// Order status at the time.
    pub order_status: String,
    /// Transaction group of the order.
    pub transaction_id: Option<Uuid>,
    /// The user's balance.
    pub balance: Decimal,
    /// The user's margin in use.
    pub margin_used: Decimal,
    /// Open positions of the user.
    pub open_positions: i64,
    /// Refund a single-order rollback gives.
    pub expected_refund: Decimal,
    /// Margin a single-order rollback releases.
    pub expected_margin_release: Decimal,
    /// What a transaction-group rollback would do.
    pub group: GroupFigures,
}

/// The transaction-group part of a baseline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupFigures {
    /// Executed orders of the group.
    pub order_ids: Vec<Uuid>,
    /// Orders of the group that are not executed (left alone).
    #[serde(default)]
    pub skipped: Vec<Value>,
    /// Refund of the whole group.
    pub expected_refund: Decimal,
    /// Margin released by the whole group.
    pub expected_margin_release: Decimal,
}

/// Result of `rollback_precheck`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Precheck {
    /// Every check passed.
    pub ready: bool,
    /// Set when the call itself was refused (NULL arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The baseline for the post-check (absent when the order or profile is missing).
    pub baseline: Option<Value>,
}

impl Precheck {
    /// The baseline's figures, if there is a baseline and it has the expected shape.
    pub fn figures(&self) -> Option<BaselineFigures> {
        self.baseline.as_ref().and_then(|b| serde_json::from_value(b.clone()).ok())
    }
}

/// Result of `rollback_postcheck`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Postcheck {
    /// Every check passed.
    pub successful: bool,
    /// Set when the baseline itself was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// `single` or `group`.
    #[serde(default)]
    pub mode: Option<String>,
    /// The orders the verified rollback covered.
    #[serde(default)]
    pub order_ids: Option<Vec<Uuid>>,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

/// Result of a rollback function (`rollback_execute_order_atomic`, `rollback_order_execution`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RollbackResult {
    /// The rollback happened.
    pub success: bool,
    /// Why not: `order_not_found`, `not_rollbackable`, `already_rolled_back`, `invalid_reason`, ...
    #[serde(default)]
    pub error_code: Option<String>,
    /// Human explanation of a refusal.
    #[serde(default)]
    pub message: Option<String>,
    /// `single` or `transaction`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Orders rolled back by this call.
    #[serde(default)]
    pub order_ids: Option<Vec<Uuid>>,
    /// Cash given back to the user.
    #[serde(default)]
    pub refunded: Option<Decimal>,
    /// Margin released.
    #[serde(default)]
    pub margin_released: Option<Decimal>,
    /// Ledger transfers reversed.
    #[serde(default)]
    pub transfers_reversed: Option<i64>,
    /// Time the function took, in microseconds.
    #[serde(default)]
    pub duration_us: Option<i64>,
    /// Orders of the group left alone (failed, cancelled).
    #[serde(default)]
    pub skipped: Option<Vec<Value>>,
    /// Orders of the group that were rolled back before.
    #[serde(default)]
    pub already_rolled_back: Option<Vec<Uuid>>,
    /// Status of the order when refused.
    #[serde(default)]
    pub status: Option<String>,
}

/// The rollback and its post-check, from `rollback_with_postcheck`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RollbackAndPostcheck {
    /// The rollback's result.
    pub rollback: RollbackResult,
    /// The post-check (absent when the rollback was refused).
    pub postcheck: Option<Postcheck>,
}

/// One violation found by `ledger_audit()`.
#[derive(Debug, Clone, Serialize, Deserialize, FromRow, PartialEq)]
pub struct Violation {
    /// The user (none for book-wide checks).
    pub user_id: Option<Uuid>,
    /// Which invariant.
    pub check_name: String,
    /// What it should be.
    pub expected: Option<Decimal>,
    /// What it is.
    pub actual: Option<Decimal>,
}

/// An order as listed by `orders`.
#[derive(Debug, Clone, Serialize, Deserialize, FromRow, PartialEq)]
pub struct OrderRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub quantity: Decimal,
    pub price: Option<Decimal>,
    pub status: String,
    pub transaction_id: Option<Uuid>,
    pub total_cost: Option<Decimal>,
    pub commission: Option<Decimal>,
    pub failure_reason: Option<String>,
    pub rolled_back_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub executed_at: Option<DateTime<Utc>>,
    pub rolled_back_at: Option<DateTime<Utc>>,
}

/// Which orders to find. Empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub transaction_id: Option<Uuid>,
    pub symbol: Option<String>,
    pub status: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Include the accounts created by `drill`.
    pub include_drill: bool,
    /// At most this many rows.
    pub limit: i64,
}

/// What a batch will touch, before it runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BatchPreview {
    /// Orders in the batch.
    pub orders: i64,
    /// Of which executed (the others will be refused or reported as already rolled back).
    pub executed: i64,
    /// Distinct users.
    pub users: i64,
    /// Cash the executed orders' rollbacks give back.
    pub total_refund: Decimal,
    /// Margin they release.
    pub total_margin_release: Decimal,
}

/// One rollback call (or a failure) as the metrics see it.
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct RollbackRecord {
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// How long the call took (none for failures recorded by a client).
    pub duration_us: Option<i64>,
    /// Rolled back, or failed.
    pub success: bool,
    /// The batch it belonged to, else the call itself.
    pub operation: Uuid,
    /// Orders it covered.
    pub orders: i64,
}

/// Maintenance mode as stored.
#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
pub struct MaintenanceState {
    pub maintenance_mode: bool,
    pub maintenance_reason: Option<String>,
    pub maintenance_since: Option<DateTime<Utc>>,
    pub maintenance_by: Option<String>,
}

/// An executed order to write in bulk (demo book, benchmarks): the amounts are computed
/// in SQL from the instrument's rates, exactly as `execute_order_atomic` does.
#[derive(Debug, Clone)]
pub struct SeedOrder {
    pub id: Uuid,
    pub position_id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub order_type: &'static str,
    pub side: &'static str,
    pub quantity: Decimal,
    pub price: Decimal,
    pub transaction_id: Option<Uuid>,
    pub idempotency_key: String,
    pub at: DateTime<Utc>,
}

fn decode<T: for<'de> Deserialize<'de>>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Other(format!("unexpected result from {what}: {e}")))
}

// ----------------------------------------------------------------------------------------
// Migrations
// ----------------------------------------------------------------------------------------

/// Applies every pending migration, each in its own transaction.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    // On a dedicated connection, closed afterwards: sqlx holds a session advisory lock
    // while migrating and does not release it when a migration fails; a pooled connection
    // would carry that lock back into the pool and the next migrate would wait forever.
    let mut conn = pool.acquire().await?.detach();
    let result = MIGRATOR.run_direct(None, &mut conn, false).await;
    let _ = sqlx::Connection::close(conn).await;
    result.map_err(migrate_error)
}

/// Undoes the migrations above `target`, newest first, all in one transaction: a down
/// migration that refuses (it would delete financial history) leaves every migration in
/// place. Returns the versions undone.
pub async fn undo_to(pool: &PgPool, target: i64) -> Result<Vec<i64>> {
    let applied = applied_migrations(pool).await?;
    let mut downs: Vec<&sqlx::migrate::Migration> = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_down_migration() && m.version > target && applied.contains(&m.version))
        .collect();
    downs.sort_by_key(|m| std::cmp::Reverse(m.version));
    let mut conn = pool.acquire().await?.detach();
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    // The key sqlx's migrator locks, so an undo and a migrate never interleave.
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut *tx).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(migration_lock_id(&database)).execute(&mut *tx).await?;
    let mut failure = None;
    for m in &downs {
        if let Err(e) = sqlx::raw_sql(m.sql.clone()).execute(&mut *tx).await {
            failure = Some(migrate_error(sqlx::migrate::MigrateError::ExecuteMigration(e, m.version)));
            break;
        }
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1").bind(m.version).execute(&mut *tx).await?;
    }
    if let Some(e) = failure {
        // Roll back now, not when the connection goes: the lock must be free on return.
        tx.rollback().await?;
        let _ = sqlx::Connection::close(conn).await;
        return Err(e);
    }
    tx.commit().await?;
    let _ = sqlx::Connection::close(conn).await;
    Ok(downs.iter().map(|m| m.version).collect())
}

/// The advisory lock id sqlx's migrator takes for a database (CRC-32 of its name).
fn migration_lock_id(database: &str) -> i64 {
    let mut crc: u32 = !0;
    for b in database.bytes() {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    0x3d32_ad9e_i64 * i64::from(!crc)
}

fn migrate_error(e: sqlx::migrate::MigrateError) -> Error {
    use sqlx::migrate::MigrateError as M;
    match e {
        M::Execute(inner) => Error::from(inner),
        M::ExecuteMigration(inner, version) => match Error::from(inner) {
            Error::Database(mut text) => {
                text.message = format!("migration {version}: {}", text.message);
                Error::Database(text)
            }
            other => other,
        },
        other => Error::Database(crate::error::DbErrorText {
            code: None,
            message: crate::sanitize::line(&other.to_string()).into_owned(),
        }),
    }
}

/// Versions already applied (empty on a fresh database).
pub async fn applied_migrations(pool: &PgPool) -> Result<Vec<i64>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?)
}

// ----------------------------------------------------------------------------------------
// The contract functions
// ----------------------------------------------------------------------------------------

async fn call_json<'e, E: Executor<'e, Database = Postgres>>(
    executor: E,
    query: sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>,
) -> Result<Value> {
    let row: PgRow = query.fetch_one(executor).await?;
    Ok(row.try_get::<Value, _>(0)?)
}

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
    let v = call_json(
        e,
        sqlx::query("SELECT rollback_execute_order_atomic($1, $2, $3)").bind(order).bind(user).bind(reason.to_string()),
    )
    .await?;
    decode(v, "rollback_execute_order_atomic")
}

/// `rollback_order_execution`: the order's whole transaction group.
pub async fn rollback_group<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    order: Uuid,
    user: Uuid,
    reason: &str,
) -> Result<RollbackResult> {
    let v = call_json(
        e,
        sqlx::query("SELECT rollback_order_execution($1, $2, $3)").bind(order).bind(user).bind(reason.to_string()),
    )
    .await?;
    decode(v, "rollback_order_execution")
}

/// Rollback and post-check in one round trip.
pub async fn rollback_with_postcheck<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    order: Uuid,
    user: Uuid,
    reason: &str,
    baseline: &Value,
    whole_transaction: bool,
) -> Result<RollbackAndPostcheck> {
    let v = call_json(
        e,
        sqlx::query("SELECT rollback_with_postcheck($1, $2, $3, $4, $5)")
            .bind(order)
            .bind(user)
            .bind(reason.to_string())
            .bind(baseline.clone())
            .bind(whole_transaction),
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

/// `ledger_audit()`: every invariant violation in the whole book.
pub async fn ledger_audit<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Vec<Violation>> {
    Ok(sqlx::query_as("SELECT user_id, check_name, expected, actual FROM ledger_audit()").fetch_all(e).await?)
}

/// `ledger_audit_full()`: the same, recomputed from the tables alone (no checkpoint).
pub async fn ledger_audit_full<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Vec<Violation>> {
    Ok(sqlx::query_as("SELECT user_id, check_name, expected, actual FROM ledger_audit_full()").fetch_all(e).await?)
}

/// What a new audit checkpoint recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointInfo {
    /// Its id.
    pub checkpoint_id: i64,
    /// Built from the tables alone (not from the previous checkpoint).
    pub full: bool,
    /// Users it holds figures for.
    pub users: i64,
    /// Time the database took to build it.
    pub elapsed_ms: f64,
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
    let mut attempt = 0;
    loop {
        attempt += 1;
        // A deadlock with a rollback taking its locks at the same moment is retried.
        match sqlx::query_as("SELECT ledger_max, audit_max, changes_max FROM audit_horizon()").fetch_one(e).await {
            Err(err) if attempt < 5 && crate::error::is_retryable(Error::from_ref(&err).as_deref()) => {
                tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
            }
            other => return Ok(other?),
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
        return Err(Error::Other("unexpected snapshot id from the server".into()));
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
            crate::sanitize::line(v.get("message").and_then(Value::as_str).unwrap_or("unknown"))
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

/// `set_maintenance_mode(enabled, reason)`.
pub async fn set_maintenance<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    enabled: bool,
    reason: &str,
) -> Result<Value> {
    call_json(e, sqlx::query("SELECT set_maintenance_mode($1, $2)").bind(enabled).bind(reason.to_string())).await
}

/// Current maintenance mode.
pub async fn maintenance_state<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<MaintenanceState> {
    Ok(sqlx::query_as(
        "SELECT maintenance_mode, maintenance_reason, maintenance_since, maintenance_by FROM system_settings",
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

// ----------------------------------------------------------------------------------------
// Session settings
// ----------------------------------------------------------------------------------------

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

// ----------------------------------------------------------------------------------------
// Reading the book
// ----------------------------------------------------------------------------------------

const ORDER_COLUMNS: &str = "SELECT o.id, o.user_id, o.symbol, o.side, o.order_type, o.quantity, o.price, o.status, \
     o.transaction_id, o.total_cost, o.commission, o.failure_reason, o.rolled_back_reason, o.created_at, \
     o.executed_at, o.rolled_back_at FROM orders o";

/// Orders matching the filter, oldest first.
pub async fn find_orders<'e, E: Executor<'e, Database = Postgres>>(e: E, f: &OrderFilter) -> Result<Vec<OrderRow>> {
    // Static fragments chosen by which filters are set; every value is a bound parameter,
    // so each combination gets a plan that can use its index.
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(ORDER_COLUMNS);
    if !f.include_drill {
        q.push(" JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill");
    }
    q.push(" WHERE true");
    push_conditions(
        &mut q,
        &ResolvedQuery {
            id: f.id,
            user_id: f.user_id,
            transaction_id: f.transaction_id,
            symbol: f.symbol.clone(),
            status: f.status.clone(),
            from: f.from,
            to: f.to,
        },
    );
    q.push(" ORDER BY o.created_at, o.id LIMIT ").push_bind(f.limit);
    Ok(q.build_query_as::<OrderRow>().fetch_all(e).await?)
}

/// Users of the given orders (unknown ids are absent from the result).
pub async fn order_owners<'e, E: Executor<'e, Database = Postgres>>(e: E, ids: &[Uuid]) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as("SELECT id, user_id FROM orders WHERE id = ANY($1)").bind(ids.to_vec()).fetch_all(e).await?)
}

/// What rolling back these orders will do.
pub async fn batch_preview<'e, E: Executor<'e, Database = Postgres>>(e: E, ids: &[Uuid]) -> Result<BatchPreview> {
    let row: PgRow = sqlx::query(
        "SELECT count(*) AS orders, \
                count(*) FILTER (WHERE o.status = 'executed') AS executed, \
                count(DISTINCT o.user_id) AS users, \
                coalesce(sum(x.cash_back) FILTER (WHERE o.status = 'executed'), 0) AS refund, \
                coalesce(sum(x.margin_back) FILTER (WHERE o.status = 'executed'), 0) AS margin \
         FROM orders o \
         LEFT JOIN LATERAL ( \
             SELECT sum(CASE WHEN t.debit_account = 'user_cash' THEN t.amount \
                             WHEN t.credit_account = 'user_cash' THEN -t.amount END) AS cash_back, \
                    sum(CASE WHEN t.credit_account = 'user_margin' THEN t.amount \
                             WHEN t.debit_account = 'user_margin' THEN -t.amount END) AS margin_back \
             FROM ledger_transfers t \
             WHERE t.order_id = o.id AND t.reverses_id IS NULL \
               AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.reverses_id = t.id) \
         ) x ON true \
         WHERE o.id = ANY($1)",
    )
    .bind(ids.to_vec())
    .fetch_one(e)
    .await?;
    Ok(BatchPreview {
        orders: row.try_get("orders")?,
        executed: row.try_get("executed")?,
        users: row.try_get("users")?,
        total_refund: row.try_get("refund")?,
        total_margin_release: row.try_get("margin")?,
    })
}

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

/// Rows in the book's main tables (to refuse seeding a non-empty book).
pub async fn book_size<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<(i64, i64)> {
    Ok(sqlx::query_as("SELECT (SELECT count(*) FROM profiles), (SELECT count(*) FROM orders)").fetch_one(e).await?)
}

/// Balance and margin of one user.
pub async fn account<'e, E: Executor<'e, Database = Postgres>>(e: E, user: Uuid) -> Result<Option<(Decimal, Decimal)>> {
    Ok(sqlx::query_as("SELECT balance, margin_used FROM profiles WHERE id = $1").bind(user).fetch_optional(e).await?)
}

/// Audit rows recording a rollback of this order.
pub async fn rollback_audit_rows<'e, E: Executor<'e, Database = Postgres>>(e: E, order: Uuid) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM order_audit_log WHERE order_id = $1 AND action = 'order_rolled_back'")
        .bind(order)
        .fetch_one(e)
        .await?)
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

// ----------------------------------------------------------------------------------------
// Bulk writes (demo book, benchmarks): run by the owner, not part of the contract
// ----------------------------------------------------------------------------------------

/// Creates accounts with their initial deposits through `create_trading_account`.
pub async fn create_accounts<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    accounts: &[(Uuid, Decimal)],
) -> Result<u64> {
    let ids: Vec<Uuid> = accounts.iter().map(|a| a.0).collect();
    let deposits: Vec<Decimal> = accounts.iter().map(|a| a.1).collect();
    let created: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE (r ->> 'success')::boolean) \
         FROM unnest($1::uuid[], $2::numeric[]) AS a(id, deposit) \
         CROSS JOIN LATERAL create_trading_account(a.id, a.deposit) AS r",
    )
    .bind(ids)
    .bind(deposits)
    .fetch_one(e)
    .await?;
    Ok(created as u64)
}

/// Writes executed orders with their positions, ledger transfers and balance changes in
/// one statement, at historical times. Fails (changing nothing) if any account would go
/// negative or a symbol is unknown.
pub async fn insert_executed_orders(conn: &mut PgConnection, orders: &[SeedOrder]) -> Result<u64> {
    let n = orders.len();
    let mut ids = Vec::with_capacity(n);
    let mut positions = Vec::with_capacity(n);
    let mut users = Vec::with_capacity(n);
    let mut symbols = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut sides = Vec::with_capacity(n);
    let mut quantities = Vec::with_capacity(n);
    let mut prices = Vec::with_capacity(n);
    let mut txs: Vec<Option<Uuid>> = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut ats = Vec::with_capacity(n);
    for o in orders {
        ids.push(o.id);
        positions.push(o.position_id);
        users.push(o.user_id);
        symbols.push(o.symbol.clone());
        types.push(o.order_type.to_string());
        sides.push(o.side.to_string());
        quantities.push(o.quantity);
        prices.push(o.price);
        txs.push(o.transaction_id);
        keys.push(o.idempotency_key.clone());
        ats.push(o.at);
    }
    let inserted: i64 = sqlx::query_scalar(
        "WITH input AS ( \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
                                  $7::numeric[], $8::numeric[], $9::uuid[], $10::text[], $11::timestamptz[]) \
                 AS i(id, position_id, user_id, symbol, order_type, side, quantity, price, transaction_id, key, at) \
         ), calc AS ( \
             SELECT i.*, round(i.quantity * i.price * ins.margin_rate, 8) AS margin, \
                    round(i.quantity * i.price * ins.commission_rate, 8) AS commission \
             FROM input i JOIN instruments ins ON ins.symbol = i.symbol \
         ), new_orders AS ( \
             INSERT INTO orders (id, user_id, symbol, order_type, side, quantity, price, status, transaction_id, \
                                 idempotency_key, commission, execution_price, total_cost, executed_at, position_id, \
                                 created_at, updated_at) \
             SELECT id, user_id, symbol, order_type, side, quantity, price, 'executed', transaction_id, key, \
                    commission, price, margin + commission, at, position_id, at, at FROM calc \
             RETURNING 1 \
         ), new_positions AS ( \
             INSERT INTO positions (id, user_id, order_id, symbol, side, quantity, entry_price, margin_used, \
                                    commission_paid, transaction_id, opened_at) \
             SELECT position_id, user_id, id, symbol, side, quantity, price, margin, commission, transaction_id, at \
             FROM calc \
         ), new_transfers AS ( \
             INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, created_at) \
             SELECT c.user_id, 'user_cash', x.credit, x.amount, x.kind, c.id, c.at \
             FROM calc c CROSS JOIN LATERAL (VALUES \
                 ('user_margin'::ledger_account, c.margin, 'margin_lock'::transfer_kind), \
                 ('house_commission'::ledger_account, c.commission, 'commission'::transfer_kind)) \
                 AS x(credit, amount, kind) \
             WHERE x.amount > 0 \
         ), balances AS ( \
             UPDATE profiles p SET balance = p.balance - s.total, margin_used = p.margin_used + s.margin \
             FROM (SELECT user_id, sum(margin + commission) AS total, sum(margin) AS margin \
                   FROM calc GROUP BY user_id) s \
             WHERE p.id = s.user_id \
         ), daily AS ( \
             INSERT INTO daily_pnl_tracking AS d (user_id, trading_date, orders_executed, commission_paid) \
             SELECT user_id, (at AT TIME ZONE 'UTC')::date, count(*), sum(commission) FROM calc GROUP BY 1, 2 \
             ON CONFLICT (user_id, trading_date) DO UPDATE \
             SET orders_executed = d.orders_executed + excluded.orders_executed, \
                 commission_paid = d.commission_paid + excluded.commission_paid \
         ) \
         SELECT count(*) FROM new_orders",
    )
    .bind(ids)
    .bind(positions)
    .bind(users)
    .bind(symbols)
    .bind(types)
    .bind(sides)
    .bind(quantities)
    .bind(prices)
    .bind(txs)
    .bind(keys)
    .bind(ats)
    .fetch_one(&mut *conn)
    .await?;
    if inserted as usize != n {
        return Err(Error::Other(format!("wrote {inserted} of {n} orders: an instrument is unknown")));
    }
    Ok(inserted as u64)
}

/// An order that never executed (pending, or failed with a reason), for the demo book.
#[derive(Debug, Clone)]
pub struct SeedUnexecuted {
    pub id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub side: &'static str,
    pub quantity: Decimal,
    pub price: Decimal,
    pub status: &'static str,
    pub failure_reason: Option<String>,
    pub transaction_id: Option<Uuid>,
    pub idempotency_key: String,
    pub at: DateTime<Utc>,
}

/// Writes orders that moved no money.
pub async fn insert_unexecuted_orders(conn: &mut PgConnection, orders: &[SeedUnexecuted]) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO orders (id, user_id, symbol, order_type, side, quantity, price, status, failure_reason, \
                             transaction_id, idempotency_key, created_at, updated_at) \
         SELECT id, user_id, symbol, 'market', side, quantity, price, status, failure_reason, transaction_id, key, at, at \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::numeric[], $6::numeric[], $7::text[], \
                     $8::text[], $9::uuid[], $10::text[], $11::timestamptz[]) \
              AS i(id, user_id, symbol, side, quantity, price, status, failure_reason, transaction_id, key, at)",
    )
    .bind(orders.iter().map(|o| o.id).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.user_id).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.symbol.clone()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.side.to_string()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.quantity).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.price).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.status.to_string()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.failure_reason.clone()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.transaction_id).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.idempotency_key.clone()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Executed orders of one symbol in a time window with a given status (the batch by window).
pub async fn orders_in_window<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    symbol: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    status: &str,
) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as(
        "SELECT o.id, o.user_id FROM orders o \
         WHERE o.symbol = $1 AND o.created_at >= $2 AND o.created_at < $3 AND o.status = $4 \
         ORDER BY o.created_at, o.id",
    )
    .bind(symbol.to_string())
    .bind(from)
    .bind(to)
    .bind(status.to_string())
    .fetch_all(e)
    .await?)
}

/// The trading date of the newest order outside drill accounts (a filter's times of day
/// refer to it).
pub async fn newest_trading_date<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Option<NaiveDate>> {
    Ok(sqlx::query_scalar(
        "SELECT (o.created_at AT TIME ZONE 'UTC')::date FROM orders o \
         JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill \
         ORDER BY o.created_at DESC LIMIT 1",
    )
    .fetch_optional(e)
    .await?)
}

/// Resolves times of day (`TimeBound::TimeOfDay`) on the book's latest trading day (today
/// when the book is empty); instants stay as they are.
pub async fn resolve_time_bounds<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    bounds: [Option<TimeBound>; 2],
) -> Result<[Option<DateTime<Utc>>; 2]> {
    let needs_day = bounds.iter().any(|b| matches!(b, Some(TimeBound::TimeOfDay(_))));
    let day = if needs_day {
        newest_trading_date(e).await?.unwrap_or_else(|| Utc::now().date_naive())
    } else {
        Utc::now().date_naive()
    };
    Ok(bounds.map(|b| {
        b.map(|b| match b {
            TimeBound::At(t) => t,
            TimeBound::TimeOfDay(t) => day.and_time(t).and_utc(),
        })
    }))
}

/// `CREATE DATABASE name TEMPLATE template` for tests and benchmarks. The names are
/// checked to be plain identifiers: they are the one thing SQL cannot take as parameters.
pub async fn create_database<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    name: &str,
    template: Option<&str>,
) -> Result<()> {
    check_identifier(name)?;
    let sql = match template {
        Some(t) => {
            check_identifier(t)?;
            format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\"")
        }
        None => format!("CREATE DATABASE \"{name}\""),
    };
    e.execute(sqlx::AssertSqlSafe(sql)).await?;
    Ok(())
}

/// `DROP DATABASE IF EXISTS name WITH (FORCE)`.
pub async fn drop_database<'e, E: Executor<'e, Database = Postgres>>(e: E, name: &str) -> Result<()> {
    check_identifier(name)?;
    e.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))).await?;
    Ok(())
}

/// Whether a database exists.
pub async fn database_exists<'e, E: Executor<'e, Database = Postgres>>(e: E, name: &str) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name.to_string())
        .fetch_one(e)
        .await?)
}

fn check_identifier(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::BadInput(format!("not a plain database name: {}", crate::sanitize::line(name))))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_id_matches_sqlx() {
        // sqlx: 0x3d32ad9e * crc32_ieee(name); crc32("incident") = 0x5f8c1bf7 (zlib)
        assert_eq!(super::migration_lock_id(""), 0);
        assert_eq!(super::migration_lock_id("123456789"), 0x3d32_ad9e_i64 * 0xCBF4_3926_i64);
    }
}

// ----------------------------------------------------------------------------------------
// The console's queries
// ----------------------------------------------------------------------------------------

/// A filter of the console with its time bounds resolved to instants.
#[derive(Debug, Clone, Default)]
pub struct ResolvedQuery {
    pub id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub transaction_id: Option<Uuid>,
    pub symbol: Option<String>,
    pub status: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

fn push_filter(q: &mut QueryBuilder<Postgres>, f: &ResolvedQuery) {
    q.push(" JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill WHERE true");
    push_conditions(q, f);
}

/// The filter's conditions, each a static fragment with a bound value, after a WHERE.
fn push_conditions(q: &mut QueryBuilder<Postgres>, f: &ResolvedQuery) {
    if let Some(id) = f.id {
        q.push(" AND o.id = ").push_bind(id);
    }
    if let Some(u) = f.user_id {
        q.push(" AND o.user_id = ").push_bind(u);
    }
    if let Some(t) = f.transaction_id {
        q.push(" AND o.transaction_id = ").push_bind(t);
    }
    if let Some(s) = &f.symbol {
        q.push(" AND o.symbol = ").push_bind(s.clone());
    }
    if let Some(s) = &f.status {
        q.push(" AND o.status = ").push_bind(s.clone());
    }
    if let Some(t) = f.from {
        q.push(" AND o.created_at >= ").push_bind(t);
    }
    if let Some(t) = f.to {
        q.push(" AND o.created_at < ").push_bind(t);
    }
}

/// One page of orders, newest first, after or before a key (keyset paging: the cost of a
/// page does not depend on how deep in the book it is). Returns the rows, closest to the
/// key first, and whether there are more.
pub async fn orders_page<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    f: &ResolvedQuery,
    older_than: Option<(DateTime<Utc>, Uuid)>,
    newer_than: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<(Vec<OrderRow>, bool)> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(ORDER_COLUMNS);
    push_filter(&mut q, f);
    if let Some((t, id)) = older_than {
        q.push(" AND (o.created_at, o.id) < (").push_bind(t).push(", ").push_bind(id).push(")");
    }
    if let Some((t, id)) = newer_than {
        q.push(" AND (o.created_at, o.id) > (").push_bind(t).push(", ").push_bind(id).push(")");
        q.push(" ORDER BY o.created_at, o.id");
    } else {
        q.push(" ORDER BY o.created_at DESC, o.id DESC");
    }
    q.push(" LIMIT ").push_bind(limit + 1);
    let mut rows = q.build_query_as::<OrderRow>().fetch_all(e).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    Ok((rows, more))
}

/// How many orders match, counting at most `cap` (true when there are more).
pub async fn count_orders<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    f: &ResolvedQuery,
    cap: i64,
) -> Result<(i64, bool)> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT count(*) FROM (SELECT 1 FROM orders o");
    push_filter(&mut q, f);
    q.push(" LIMIT ").push_bind(cap + 1).push(") s");
    let n: i64 = q.build_query_scalar().fetch_one(e).await?;
    Ok((n.min(cap), n > cap))
}

/// Executed orders matching a filter, oldest first, at most `cap` (error beyond).
pub async fn executed_matching<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    f: &ResolvedQuery,
    cap: i64,
) -> Result<Vec<(Uuid, Uuid)>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT o.id, o.user_id FROM orders o");
    let mut only_executed = f.clone();
    only_executed.status = Some("executed".into());
    push_filter(&mut q, &only_executed);
    q.push(" ORDER BY o.created_at, o.id LIMIT ").push_bind(cap + 1);
    let rows: Vec<(Uuid, Uuid)> = q.build_query_as().fetch_all(e).await?;
    if rows.len() as i64 > cap {
        return Err(Error::BadInput(format!("more than {cap} orders match: narrow the filter")));
    }
    Ok(rows)
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

/// `pg_cancel_backend(pid)`.
pub async fn cancel_backend<'e, E: Executor<'e, Database = Postgres>>(e: E, pid: i32) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT pg_cancel_backend($1)").bind(pid).fetch_one(e).await?)
}

/// Round trip of a trivial query.
pub async fn ping<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<()> {
    sqlx::query("SELECT 1").execute(e).await?;
    Ok(())
}

// ----------------------------------------------------------------------------------------
// Incident journals
// ----------------------------------------------------------------------------------------

/// The highest journal entry of an incident copied to the database (0: none).
pub async fn incident_events_max_seq<'e, E: Executor<'e, Database = Postgres>>(e: E, incident: &str) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT incident_events_max_seq($1)").bind(incident.to_string()).fetch_one(e).await?)
}

/// The `seq` and `hash` of the journal entries of an incident copied to the database,
/// from `from_seq` on.
pub async fn incident_event_hashes<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    incident: &str,
    from_seq: i64,
) -> Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as("SELECT seq, hash FROM incident_events WHERE incident_id = $1 AND seq >= $2 ORDER BY seq")
        .bind(incident.to_string())
        .bind(from_seq)
        .fetch_all(e)
        .await?)
}

/// Copies journal entries to `incident_events`; returns the number inserted, or an
/// error naming the entries whose hash differs from the copy already there.
pub async fn copy_incident_events<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    incident: &str,
    entries: &[crate::journal::Entry],
) -> Result<i64> {
    let payload = serde_json::to_value(entries).map_err(|e| Error::Other(e.to_string()))?;
    let v = call_json(e, sqlx::query("SELECT record_incident_events($1, $2)").bind(incident.to_string()).bind(payload))
        .await?;
    if v.get("success").and_then(Value::as_bool) != Some(true) {
        return Err(Error::CheckFailed(format!(
            "the database's copy of {} differs at entries {}",
            crate::sanitize::line(incident),
            crate::sanitize::line(&v.get("conflicts").map(|c| c.to_string()).unwrap_or_default())
        )));
    }
    Ok(v.get("inserted").and_then(Value::as_i64).unwrap_or(0))
}

/// What the probe after switching maintenance mode saw.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceProbe {
    /// A probe order was refused with `maintenance_mode`.
    pub new_orders_refused: bool,
    /// The error code the probe got (none: it would have executed).
    pub probe_code: Option<String>,
    /// The state afterwards.
    pub state: MaintenanceState,
}

/// Switches maintenance mode and proves it with a probe order. Returns the function's
/// answer and what the probe saw; a refusal by the function is `BadInput` with its message.
pub async fn switch_maintenance(pool: &PgPool, on: bool, reason: &str) -> Result<(Value, MaintenanceProbe)> {
    let r = set_maintenance(pool, on, reason).await?;
    if r.get("success").and_then(Value::as_bool) != Some(true) {
        return Err(Error::BadInput(format!(
            "refused: {}",
            crate::sanitize::line(r.get("message").and_then(Value::as_str).unwrap_or("unknown"))
        )));
    }
    let probe_code = probe_new_orders(pool).await?;
    let state = maintenance_state(pool).await?;
    let probe =
        MaintenanceProbe { new_orders_refused: probe_code.as_deref() == Some("maintenance_mode"), probe_code, state };
    Ok((r, probe))
}

/// Proves maintenance mode refuses new orders: tries an order inside a transaction that
/// is always rolled back, and returns the error code it got (`maintenance_mode` when on).
pub async fn probe_new_orders(pool: &PgPool) -> Result<Option<String>> {
    let mut tx = pool.begin().await?;
    let key = format!("maintenance-probe-{}", Uuid::new_v4());
    let o = NewOrder {
        user_id: Uuid::new_v4(),
        symbol: "EURUSD",
        order_type: "market",
        side: "buy",
        quantity: Decimal::ONE,
        price: Decimal::ONE,
        idempotency_key: &key,
        transaction_id: None,
    };
    let r = execute_order(&mut *tx, &o).await;
    // Whatever happened, nothing of the probe stays.
    tx.rollback().await?;
    let v = r?;
    Ok(v.get("error_code").and_then(Value::as_str).map(str::to_string))
}
