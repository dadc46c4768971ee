//! The source document's automated rollback testing, done right: on fresh drill accounts
//! it executes orders, pre-checks, rolls back, post-checks against the baseline, tries the
//! refusals, races two rollbacks of one order, and audits the ledger. Every step is
//! checked against numbers, not against "no error". Drill accounts are marked, so their
//! rollbacks stay out of the metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::core::batch::BatchItem;
use crate::core::contract::Precheck;
use crate::core::error::{Error, Result};
use crate::core::orders::{OrderListing, ResolvedQuery};
use crate::core::sanitize;
use crate::ops::batch::{self, BatchOptions, Progress};
use crate::store::connect::ConnectSettings;
use crate::store::db::{self, NewOrder};

/// One step of the drill.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    /// What the step does.
    pub name: String,
    /// Whether what it checks held.
    pub passed: bool,
    /// The figures behind the verdict.
    pub detail: String,
    /// Time taken.
    pub elapsed_ms: u128,
}

/// The drill's report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// When it started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Where it ran (password hidden).
    pub database: String,
    /// Who ran it.
    pub operator: String,
    /// The drill accounts it created.
    pub accounts: Vec<Uuid>,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// All steps passed.
    pub passed: bool,
}

struct Drill {
    steps: Vec<Step>,
}

impl Drill {
    fn record(&mut self, name: &str, started: Instant, outcome: Result<(bool, String)>) -> bool {
        let (passed, detail) = match outcome {
            Ok(x) => x,
            Err(e) => (false, format!("error: {e}")),
        };
        self.steps.push(Step { name: name.into(), passed, detail, elapsed_ms: started.elapsed().as_millis() });
        passed
    }
}

const DEPOSIT: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);
const REASON: &str = "drill: duplicate executions of a faulty deploy";

/// An optional value for the report: the value, or "none".
fn shown<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn success(v: &Value) -> bool {
    v.get("success").and_then(Value::as_bool) == Some(true)
}

fn order_id(v: &Value) -> Result<Uuid> {
    v.get("order_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| Error::CheckFailed(format!("no order id in {}", sanitize::line(&v.to_string()))))
}

async fn balance(conn: &mut PgConnection, user: Uuid) -> Result<(Decimal, Decimal)> {
    db::account(conn, user).await?.ok_or_else(|| Error::CheckFailed(format!("account {user} is missing")))
}

/// The drill's three accounts (A holds a transaction group; B and C one order each).
#[derive(Clone, Copy)]
struct Accounts {
    a: Uuid,
    b: Uuid,
    c: Uuid,
}

/// The orders the steps roll back or refuse.
#[derive(Clone, Copy)]
struct Orders {
    /// A's group, first executed order.
    a1: Uuid,
    /// A's group, the order refused for funds.
    a3: Uuid,
    /// A's single order without a transaction id.
    a4: Uuid,
    b1: Uuid,
    c1: Uuid,
}

/// The circuit breaker's practice order: a new drill account (no customer's money) and one
/// order under a key `breaker-drill-…`, whose post-check the database makes fail when it is
/// rolled back (migration 18). Returns (order, user).
pub async fn breaker_drill_order(pool: &db::Db) -> Result<(Uuid, Uuid)> {
    if db::maintenance_state(pool).await?.maintenance_mode {
        return Err(Error::BadInput(
            "maintenance mode is on, so the drill cannot place its order: turn it off first (maintenance off --reason ...)"
                .into(),
        ));
    }
    let user = Uuid::new_v4();
    let r = db::create_drill_account(pool, user, DEPOSIT).await?;
    if !success(&r) {
        return Err(Error::CheckFailed(format!("the drill account was refused: {}", sanitize::line(&r.to_string()))));
    }
    let key = format!("breaker-drill-{}", Uuid::new_v4());
    let o = NewOrder {
        user_id: user,
        symbol: "EURUSD",
        order_type: "market",
        side: "buy",
        quantity: Decimal::ONE,
        price: Decimal::new(11, 1),
        idempotency_key: &key,
        transaction_id: None,
    };
    let r = db::execute_order(pool, &o).await?;
    Ok((order_id(&r)?, user))
}

/// Runs the drill.
pub async fn run(settings: &ConnectSettings) -> Result<Report> {
    let started_at = chrono::Utc::now();
    let mut conn = settings.session_connection("the drill").await?;
    let mut d = Drill { steps: Vec::new() };
    let acc = Accounts { a: Uuid::new_v4(), b: Uuid::new_v4(), c: Uuid::new_v4() };
    let users = vec![acc.a, acc.b, acc.c];

    let t = Instant::now();
    let created = create_accounts(&mut conn, acc).await?;
    if !d.record("create drill accounts", t, Ok(created)) {
        return Ok(report(settings, started_at, users, d));
    }
    let t = Instant::now();
    let (outcome, results) = execute_orders(&mut conn, acc).await?;
    if !d.record("execute orders (and replay an idempotency key)", t, Ok(outcome)) {
        return Ok(report(settings, started_at, users, d));
    }
    let o = Orders {
        a1: order_id(&results[0])?,
        a3: order_id(&results[2])?,
        a4: order_id(&results[3])?,
        b1: order_id(&results[4])?,
        c1: order_id(&results[5])?,
    };

    let t = Instant::now();
    let (pre, outcome) = precheck_one(&mut conn, acc, o).await?;
    d.record("pre-check one order", t, Ok(outcome));
    let t = Instant::now();
    let outcome = roll_back_one(&mut conn, acc, o, &pre).await?;
    d.record("roll back one order, post-check against the baseline", t, Ok(outcome));
    let t = Instant::now();
    let outcome = roll_back_again(&mut conn, acc, o).await?;
    d.record("roll back the same order again", t, Ok(outcome));
    let t = Instant::now();
    let outcome = roll_back_group(&mut conn, acc, o).await?;
    d.record("roll back a transaction group holding a failed order", t, Ok(outcome));
    let t = Instant::now();
    let outcome = refusals(&mut conn, acc, o).await?;
    d.record("refusals: empty reason, another user's order, a failed order", t, Ok(outcome));
    let t = Instant::now();
    let outcome = concurrent_double_rollback(settings, o.b1, acc.b).await;
    d.record("two rollbacks of one order at once", t, outcome);
    let t = Instant::now();
    let outcome = through_the_batch_path(settings, acc, o).await?;
    d.record("roll back through the batch path", t, Ok(outcome));
    let t = Instant::now();
    let outcome = accounts_restored(&mut conn, acc).await?;
    d.record("every drill account is back to its deposit", t, Ok(outcome));
    let t = Instant::now();
    let violations = db::ledger_audit(&mut conn).await?;
    let outcome = (violations.is_empty(), format!("{} violation(s)", violations.len()));
    d.record("ledger audit of the whole book", t, Ok(outcome));
    let _ = conn.close().await;
    Ok(report(settings, started_at, users, d))
}

/// Step 1: three accounts with a deposit each.
async fn create_accounts(conn: &mut PgConnection, acc: Accounts) -> Result<(bool, String)> {
    let mut created = 0;
    for user in [acc.a, acc.b, acc.c] {
        if success(&db::create_drill_account(&mut *conn, user, DEPOSIT).await?) {
            created += 1;
        }
    }
    Ok((created == 3, format!("{created} of 3 accounts with {DEPOSIT} each")))
}

/// Step 2: a group of two executed orders and one that fails for lack of funds, a single
/// order without transaction id, one order each for B and C, and a replayed idempotency
/// key. Returns the outcome and each order's answer.
async fn execute_orders(conn: &mut PgConnection, acc: Accounts) -> Result<((bool, String), Vec<Value>)> {
    let run_tag = &Uuid::new_v4().simple().to_string()[..8];
    let tx = Uuid::new_v4();
    let keys: Vec<String> =
        ["a1", "a2", "a3", "a4", "b1", "c1"].iter().map(|k| format!("drill-{run_tag}-{k}")).collect();
    let order = |user, symbol, side, quantity: i64, price: Decimal, key: usize, tx| NewOrder {
        user_id: user,
        symbol,
        order_type: "market",
        side,
        quantity: Decimal::from(quantity),
        price,
        idempotency_key: keys[key].as_str(),
        transaction_id: tx,
    };
    let specs = [
        order(acc.a, "EURUSD", "buy", 10_000, Decimal::new(10850, 4), 0, Some(tx)),
        order(acc.a, "GBPUSD", "sell", 5_000, Decimal::new(12700, 4), 1, Some(tx)),
        order(acc.a, "GBPUSD", "buy", 50_000_000, Decimal::new(12700, 4), 2, Some(tx)),
        order(acc.a, "USDJPY", "buy", 100, Decimal::new(15120, 2), 3, None),
        order(acc.b, "EURUSD", "buy", 20_000, Decimal::new(10851, 4), 4, None),
        order(acc.c, "AUDUSD", "sell", 15_000, Decimal::new(6550, 4), 5, Some(Uuid::new_v4())),
    ];
    let mut results = Vec::new();
    for s in &specs {
        results.push(db::execute_order(&mut *conn, s).await?);
    }
    let refused_for_funds = results[2].get("error_code").and_then(Value::as_str) == Some("insufficient_funds");
    let executed = [0, 1, 3, 4, 5].iter().all(|&i| success(&results[i]));
    let replay = db::execute_order(&mut *conn, &specs[0]).await?;
    let replay_same = replay.get("duplicate").and_then(Value::as_bool) == Some(true)
        && replay.get("order_id") == results[0].get("order_id");
    let maintenance = results.iter().any(|r| r.get("error_code").and_then(Value::as_str) == Some("maintenance_mode"));
    let detail = if maintenance {
        "maintenance mode is on, so the drill cannot execute orders; turn it off or drill on the sandbox".to_string()
    } else {
        format!(
            "5 executed: {executed}; oversized order refused for funds: {refused_for_funds}; replayed key returned the first order: {replay_same}"
        )
    };
    Ok(((executed && refused_for_funds && replay_same, detail), results))
}

/// Step 3: pre-check of the single order; the pre-check is kept for the next step's baseline.
async fn precheck_one(conn: &mut PgConnection, acc: Accounts, o: Orders) -> Result<(Precheck, (bool, String))> {
    let pre = db::precheck(conn, o.a4, acc.a).await?;
    let failed: Vec<&str> = pre.checks.iter().filter(|c| !c.passed).map(|c| c.check.as_str()).collect();
    let detail = format!("{} checks, {} failed {}", pre.checks.len(), failed.len(), failed.join(", "));
    let ready = pre.ready;
    Ok((pre, (ready, detail)))
}

/// Step 4: the single order rolled back and post-checked against its baseline.
async fn roll_back_one(conn: &mut PgConnection, acc: Accounts, o: Orders, pre: &Precheck) -> Result<(bool, String)> {
    let baseline = pre.baseline.clone().unwrap_or(Value::Null);
    let r = db::rollback_with_postcheck(conn, o.a4, acc.a, REASON, &baseline, false, uuid::Uuid::new_v4()).await?;
    let post_ok = r.postcheck.as_ref().is_some_and(|p| p.successful);
    let expected = pre.figures().map(|f| f.expected_refund);
    Ok((
        r.rollback.success && post_ok && r.rollback.refunded == expected,
        format!("refunded {} (expected {}); post-check passed: {post_ok}", shown(r.rollback.refunded), shown(expected)),
    ))
}

/// Step 5: a second rollback of the same order is refused and moves nothing.
async fn roll_back_again(conn: &mut PgConnection, acc: Accounts, o: Orders) -> Result<(bool, String)> {
    let before = balance(conn, acc.a).await?;
    let again = db::rollback_order(&mut *conn, o.a4, acc.a, REASON).await?;
    let after = balance(conn, acc.a).await?;
    Ok((
        again.error_code.as_deref() == Some("already_rolled_back") && before == after,
        format!("refused with {}; balance {} before, {} after", shown(again.error_code.as_ref()), before.0, after.0),
    ))
}

/// Step 6: the transaction group, with a failed order inside that must stay as it is.
async fn roll_back_group(conn: &mut PgConnection, acc: Accounts, o: Orders) -> Result<(bool, String)> {
    let pre = db::precheck(&mut *conn, o.a1, acc.a).await?;
    let baseline = pre.baseline.clone().unwrap_or(Value::Null);
    let r = db::rollback_with_postcheck(&mut *conn, o.a1, acc.a, REASON, &baseline, true, uuid::Uuid::new_v4()).await?;
    let post_ok = r.postcheck.as_ref().is_some_and(|p| p.successful);
    let filter = OrderListing { filter: ResolvedQuery::order(o.a3), include_drill: true, limit: 1 };
    let a3_row = db::find_orders(&mut *conn, &filter).await?;
    let a3_intact = a3_row.first().is_some_and(|o| {
        o.status == "failed" && o.failure_reason.as_deref().is_some_and(|f| f.starts_with("insufficient_funds"))
    });
    let rolled_back = r.rollback.order_ids.as_ref().map_or(0, Vec::len);
    Ok((
        pre.ready && r.rollback.success && post_ok && rolled_back == 2 && a3_intact,
        format!(
            "{rolled_back} order(s) rolled back, refunded {}; failed order untouched: {a3_intact}; post-check passed: {post_ok}",
            shown(r.rollback.refunded)
        ),
    ))
}

/// Step 7: refusals change nothing: an empty reason, another user's order, a failed order.
async fn refusals(conn: &mut PgConnection, acc: Accounts, o: Orders) -> Result<(bool, String)> {
    let before = (balance(conn, acc.a).await?, balance(conn, acc.b).await?);
    let empty = db::rollback_order(&mut *conn, o.b1, acc.b, "  ").await?;
    let foreign = db::rollback_order(&mut *conn, o.b1, acc.a, REASON).await?;
    let failed_order = db::rollback_order(&mut *conn, o.a3, acc.a, REASON).await?;
    let after = (balance(conn, acc.a).await?, balance(conn, acc.b).await?);
    let codes = [empty.error_code, foreign.error_code, failed_order.error_code];
    let want =
        [Some("invalid_reason".to_string()), Some("order_not_found".to_string()), Some("not_rollbackable".to_string())];
    Ok((
        codes == want && before == after,
        format!(
            "refused with {}; balances unchanged: {}",
            codes.iter().map(|c| shown(c.as_ref())).collect::<Vec<_>>().join(", "),
            before == after
        ),
    ))
}

/// Step 9: the batch path, for the last order.
async fn through_the_batch_path(settings: &ConnectSettings, acc: Accounts, o: Orders) -> Result<(bool, String)> {
    let opts = BatchOptions { concurrency: 1, ..BatchOptions::new(REASON.to_string()) };
    let items = vec![BatchItem { order_id: o.c1, user_id: acc.c }];
    let (summary, _) = batch::run(settings, items, &opts, Arc::new(Progress::default())).await?;
    Ok((
        summary.rolled_back == 1 && summary.complete(),
        format!("rolled back {}, refunded {}", summary.rolled_back, summary.refunded),
    ))
}

/// Step 10: every drill account is exactly where it started.
async fn accounts_restored(conn: &mut PgConnection, acc: Accounts) -> Result<(bool, String)> {
    let mut restored = Vec::new();
    for user in [acc.a, acc.b, acc.c] {
        restored.push(balance(conn, user).await?);
    }
    let all = restored.iter().all(|&(bal, margin)| bal == DEPOSIT && margin.is_zero());
    Ok((all, restored.iter().map(|(b, m)| format!("balance {b} margin {m}")).collect::<Vec<_>>().join("; ")))
}

async fn concurrent_double_rollback(settings: &ConnectSettings, order: Uuid, user: Uuid) -> Result<(bool, String)> {
    let mut first = settings.session_connection("the drill").await?;
    let mut second = settings.session_connection("the drill").await?;
    let mut observer = settings.session_connection("the drill").await?;
    let before = balance(&mut observer, user).await?;
    let second_pid = db::backend_pid(&mut second).await?;

    let mut tx = first.begin().await?;
    let r1 = db::rollback_order(&mut *tx, order, user, REASON).await?;
    // The second operator's call now has to wait for the first one's row lock.
    let racer = tokio::spawn(async move {
        let r = db::rollback_order(&mut second, order, user, REASON).await;
        (r, second)
    });
    let waited = wait_until_waiting(&mut observer, second_pid, Duration::from_secs(10)).await?;
    tx.commit().await?;
    let (r2, _second) = racer.await.map_err(|e| Error::task("the second rollback", e))?;
    let r2 = r2?;
    let after = balance(&mut observer, user).await?;
    let rows = db::rollback_audit_rows(&mut observer, order).await?;
    let refunded = r1.refunded.unwrap_or_default();
    let ok = waited
        && r1.success
        && r2.error_code.as_deref() == Some("already_rolled_back")
        && rows == 1
        && after.0 == before.0 + refunded;
    Ok((
        ok,
        format!(
            "second call waited on the lock: {waited}; first: {}, second: {}; audit rows {rows}; balance {} -> {} (refund {refunded} once)",
            if r1.success { "rolled back" } else { "refused" },
            shown(r2.error_code.as_ref()),
            before.0,
            after.0
        ),
    ))
}

/// Polls `pg_stat_activity` until the backend waits on a lock.
pub async fn wait_until_waiting(observer: &mut PgConnection, pid: i32, timeout: Duration) -> Result<bool> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if db::is_waiting_for_lock(&mut *observer, pid).await? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(false)
}

fn report(
    settings: &ConnectSettings,
    started_at: chrono::DateTime<chrono::Utc>,
    accounts: Vec<Uuid>,
    d: Drill,
) -> Report {
    let passed = !d.steps.is_empty() && d.steps.iter().all(|s| s.passed);
    Report {
        started_at,
        database: settings.describe(),
        operator: settings.operator.clone(),
        accounts,
        steps: d.steps,
        passed,
    }
}
