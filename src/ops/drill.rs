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
use crate::core::error::{Error, Result};
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

/// Runs the drill.
pub async fn run(settings: &ConnectSettings) -> Result<Report> {
    let started_at = chrono::Utc::now();
    let mut conn = settings.connection().await?;
    db::mark_session_as_drill(&mut conn).await?;
    let mut d = Drill { steps: Vec::new() };
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let tx = Uuid::new_v4();
    let run_tag = &Uuid::new_v4().simple().to_string()[..8];

    // 1. Accounts.
    let t = Instant::now();
    let mut created = 0;
    for user in [a, b, c] {
        if success(&db::create_account(&mut conn, user, DEPOSIT).await?) {
            created += 1;
        }
    }
    if !d.record("create drill accounts", t, Ok((created == 3, format!("{created} of 3 accounts with {DEPOSIT} each"))))
    {
        return Ok(report(settings, started_at, vec![a, b, c], d));
    }

    // 2. Orders: a group of two executed orders and one that fails for lack of funds,
    //    a single order without transaction id, and one order each for B and C.
    let t = Instant::now();
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
        order(a, "EURUSD", "buy", 10_000, Decimal::new(10850, 4), 0, Some(tx)),
        order(a, "GBPUSD", "sell", 5_000, Decimal::new(12700, 4), 1, Some(tx)),
        order(a, "GBPUSD", "buy", 50_000_000, Decimal::new(12700, 4), 2, Some(tx)),
        order(a, "USDJPY", "buy", 100, Decimal::new(15120, 2), 3, None),
        order(b, "EURUSD", "buy", 20_000, Decimal::new(10851, 4), 4, None),
        order(c, "AUDUSD", "sell", 15_000, Decimal::new(6550, 4), 5, Some(Uuid::new_v4())),
    ];
    let mut results = Vec::new();
    for s in &specs {
        results.push(db::execute_order(&mut conn, s).await?);
    }
    let refused_for_funds = results[2].get("error_code").and_then(Value::as_str) == Some("insufficient_funds");
    let executed = [0, 1, 3, 4, 5].iter().all(|&i| success(&results[i]));
    let replay = db::execute_order(&mut conn, &specs[0]).await?;
    let replay_same = replay.get("duplicate").and_then(Value::as_bool) == Some(true)
        && replay.get("order_id") == results[0].get("order_id");
    let maintenance = results.iter().any(|r| r.get("error_code").and_then(Value::as_str) == Some("maintenance_mode"));
    let ok = executed && refused_for_funds && replay_same;
    let detail = if maintenance {
        "maintenance mode is on, so the drill cannot execute orders; turn it off or drill on the sandbox".to_string()
    } else {
        format!(
            "5 executed: {executed}; oversized order refused for funds: {refused_for_funds}; replayed key returned the first order: {replay_same}"
        )
    };
    if !d.record("execute orders (and replay an idempotency key)", t, Ok((ok, detail))) {
        return Ok(report(settings, started_at, vec![a, b, c], d));
    }
    let (a1, a3, a4, b1, c1) = (
        order_id(&results[0])?,
        order_id(&results[2])?,
        order_id(&results[3])?,
        order_id(&results[4])?,
        order_id(&results[5])?,
    );

    // 3-5. One order: pre-check, rollback with post-check, and a second rollback.
    let t = Instant::now();
    let pre = db::precheck(&mut conn, a4, a).await?;
    let failed: Vec<&str> = pre.checks.iter().filter(|c| !c.passed).map(|c| c.check.as_str()).collect();
    d.record(
        "pre-check one order",
        t,
        Ok((pre.ready, format!("{} checks, {} failed {}", pre.checks.len(), failed.len(), failed.join(", ")))),
    );

    let t = Instant::now();
    let baseline = pre.baseline.clone().unwrap_or(Value::Null);
    let r = db::rollback_with_postcheck(&mut conn, a4, a, REASON, &baseline, false).await?;
    let post_ok = r.postcheck.as_ref().is_some_and(|p| p.successful);
    let expected = pre.figures().map(|f| f.expected_refund);
    d.record(
        "roll back one order, post-check against the baseline",
        t,
        Ok((
            r.rollback.success && post_ok && r.rollback.refunded == expected,
            format!(
                "refunded {} (expected {}); post-check passed: {post_ok}",
                shown(r.rollback.refunded),
                shown(expected)
            ),
        )),
    );

    let t = Instant::now();
    let before = balance(&mut conn, a).await?;
    let again = db::rollback_order(&mut conn, a4, a, REASON).await?;
    let after = balance(&mut conn, a).await?;
    d.record(
        "roll back the same order again",
        t,
        Ok((
            again.error_code.as_deref() == Some("already_rolled_back") && before == after,
            format!(
                "refused with {}; balance {} before, {} after",
                shown(again.error_code.as_ref()),
                before.0,
                after.0
            ),
        )),
    );

    // 6. The transaction group, with a failed order inside.
    let t = Instant::now();
    let pre = db::precheck(&mut conn, a1, a).await?;
    let baseline = pre.baseline.clone().unwrap_or(Value::Null);
    let r = db::rollback_with_postcheck(&mut conn, a1, a, REASON, &baseline, true).await?;
    let post_ok = r.postcheck.as_ref().is_some_and(|p| p.successful);
    let a3_row = db::find_orders(
        &mut conn,
        &crate::core::orders::OrderFilter { id: Some(a3), include_drill: true, limit: 1, ..Default::default() },
    )
    .await?;
    let a3_intact = a3_row.first().is_some_and(|o| {
        o.status == "failed" && o.failure_reason.as_deref().is_some_and(|f| f.starts_with("insufficient_funds"))
    });
    d.record(
        "roll back a transaction group holding a failed order",
        t,
        Ok((
            pre.ready && r.rollback.success && post_ok && r.rollback.order_ids.as_ref().map_or(0, Vec::len) == 2 && a3_intact,
            format!(
                "{} order(s) rolled back, refunded {}; failed order untouched: {a3_intact}; post-check passed: {post_ok}",
                r.rollback.order_ids.as_ref().map_or(0, Vec::len),
                shown(r.rollback.refunded)
            ),
        )),
    );

    // 7. Refusals change nothing.
    let t = Instant::now();
    let before = (balance(&mut conn, a).await?, balance(&mut conn, b).await?);
    let empty = db::rollback_order(&mut conn, b1, b, "  ").await?;
    let foreign = db::rollback_order(&mut conn, b1, a, REASON).await?;
    let failed_order = db::rollback_order(&mut conn, a3, a, REASON).await?;
    let after = (balance(&mut conn, a).await?, balance(&mut conn, b).await?);
    let codes = [empty.error_code.clone(), foreign.error_code.clone(), failed_order.error_code.clone()];
    let want =
        [Some("invalid_reason".to_string()), Some("order_not_found".to_string()), Some("not_rollbackable".to_string())];
    d.record(
        "refusals: empty reason, another user's order, a failed order",
        t,
        Ok((
            codes == want && before == after,
            format!(
                "refused with {}; balances unchanged: {}",
                codes.iter().map(|c| shown(c.as_ref())).collect::<Vec<_>>().join(", "),
                before == after
            ),
        )),
    );

    // 8. Two operators roll back one order at the same moment.
    let t = Instant::now();
    let outcome = concurrent_double_rollback(settings, b1, b).await;
    d.record("two rollbacks of one order at once", t, outcome);

    // 9. The batch path, for the last order.
    let t = Instant::now();
    let opts = BatchOptions { concurrency: 1, ..BatchOptions::new(REASON.to_string()) };
    let (summary, _) =
        batch::run(settings, vec![BatchItem { order_id: c1, user_id: c }], &opts, Arc::new(Progress::default()))
            .await?;
    d.record(
        "roll back through the batch path",
        t,
        Ok((
            summary.rolled_back == 1 && summary.complete(),
            format!("rolled back {}, refunded {}", summary.rolled_back, summary.refunded),
        )),
    );

    // 10. Every drill account is exactly where it started.
    let t = Instant::now();
    let mut restored = Vec::new();
    for user in [a, b, c] {
        restored.push(balance(&mut conn, user).await?);
    }
    let all = restored.iter().all(|&(bal, margin)| bal == DEPOSIT && margin.is_zero());
    d.record(
        "every drill account is back to its deposit",
        t,
        Ok((all, restored.iter().map(|(b, m)| format!("balance {b} margin {m}")).collect::<Vec<_>>().join("; "))),
    );

    // 11. The whole book.
    let t = Instant::now();
    let violations = db::ledger_audit(&mut conn).await?;
    d.record(
        "ledger audit of the whole book",
        t,
        Ok((violations.is_empty(), format!("{} violation(s)", violations.len()))),
    );
    let _ = conn.close().await;
    Ok(report(settings, started_at, vec![a, b, c], d))
}

async fn concurrent_double_rollback(settings: &ConnectSettings, order: Uuid, user: Uuid) -> Result<(bool, String)> {
    let mut first = settings.connection().await?;
    let mut second = settings.connection().await?;
    let mut observer = settings.connection().await?;
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
    let (r2, _second) = racer.await.map_err(|e| Error::Other(e.to_string()))?;
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
