//! What the SQL contract's functions and the console's queries answer, as Rust values:
//! pre- and post-checks, rollback results, audit violations, orders, batch previews,
//! maintenance mode. Plain data; the SQL that produces them is in `store::db`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

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
    /// Why a rollback cannot go ahead, in the contract's words (`error_code`, message), as
    /// the rollback function would have said it: for a pre-check that is not ready.
    pub fn refusal(&self) -> (&'static str, &'static str) {
        match self.figures() {
            Some(f) if f.order_status == "rolled_back" => ("already_rolled_back", "the order was already rolled back"),
            Some(_) => ("precheck_failed", "the pre-check did not pass"),
            None if self.checks.iter().any(|c| c.check == "order_exists" && !c.passed) => {
                ("order_not_found", "no order with this id belongs to this user")
            }
            None => ("precheck_failed", "the pre-check did not pass"),
        }
    }

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
    /// Set by the client, never by the server: the reply was lost (what cut it off), and
    /// this result was read back from the rows the call left, which carry its operation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_lost: Option<String>,
    /// The account's own post-check after the rollback failed in the database (migration
    /// 18: its balance or margin disagrees with its ledger, or a breaker drill order): the
    /// rollback stands and the circuit breaker opened.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub breaker_opened: bool,
}

/// One order's answer from `rollback_orders` (migration 20), which rolls back many orders
/// in one transaction, each in a subtransaction of its own.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkAnswer {
    /// `rollback_execute_order_atomic`'s answer for the order (done, or refused: nothing
    /// changed).
    Answered(Box<RollbackResult>),
    /// Its subtransaction hit a retryable error (serialization failure, deadlock, lock
    /// timeout) and was undone alone: send it again.
    Retry {
        /// The SQLSTATE it hit.
        sqlstate: String,
    },
    /// Not tried: the circuit breaker refused an earlier order of the call.
    NotAttempted,
}

/// Reads `rollback_orders`' answer for `n` orders: one answer per order in the order sent.
/// A refusal of the whole call (a bad reason, bad arguments) is every order's answer.
pub fn chunk_answers(v: Value, n: usize) -> std::result::Result<Vec<ChunkAnswer>, String> {
    let Some(results) = v.get("results").and_then(Value::as_array) else {
        let refusal: RollbackResult = serde_json::from_value(v).map_err(|e| e.to_string())?;
        if refusal.success {
            return Err("a success without per-order results".into());
        }
        return Ok(vec![ChunkAnswer::Answered(Box::new(refusal)); n]);
    };
    if results.len() != n {
        return Err(format!("{} answers for {n} orders", results.len()));
    }
    results
        .iter()
        .map(|r| {
            if r.get("retry").and_then(Value::as_bool) == Some(true) {
                let sqlstate = r.get("sqlstate").and_then(Value::as_str).unwrap_or_default().to_string();
                return Ok(ChunkAnswer::Retry { sqlstate });
            }
            if r.get("attempted").and_then(Value::as_bool) == Some(false) {
                return Ok(ChunkAnswer::NotAttempted);
            }
            serde_json::from_value(r.clone()).map(|a| ChunkAnswer::Answered(Box::new(a))).map_err(|e| e.to_string())
        })
        .collect()
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

impl BatchPreview {
    /// The preview in a sentence (the CLI prints it; an approval request carries it).
    pub fn headline(&self) -> String {
        format!(
            "Batch: {} order(s) ({} executed) of {} user(s); refund {}, release margin {}.",
            self.orders,
            self.executed,
            self.users,
            crate::core::format::money(self.total_refund),
            crate::core::format::money(self.total_margin_release)
        )
    }
}

/// One rollback call (or a failure) as the metrics see it.
#[derive(Debug, Clone, PartialEq)]
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

/// What the database shows of one order's rollback, read to settle a call whose reply was
/// lost: the order's status and, when rolled back, who did it (the audit row).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OrderRollbackState {
    /// The order.
    pub order_id: Uuid,
    /// `executed`, `rolled_back`, …
    pub status: String,
    /// The rollback call that rolled it back.
    pub rollback_id: Option<Uuid>,
    /// The batch or single operation whose id its audit row carries (`batch_id`).
    pub operation: Option<Uuid>,
    /// Who rolled it back, as the audit row says.
    pub operator: Option<String>,
    /// When.
    pub at: Option<DateTime<Utc>>,
    /// Whether the audit row was written by this session's login (an operation id can be
    /// claimed by any session; the login cannot).
    pub by_this_login: bool,
    /// Cash given back (the audit row's `refunded`).
    pub refunded: Decimal,
    /// Margin released (its position's margin).
    pub margin_released: Decimal,
}

impl OrderRollbackState {
    /// Whether the operation `operation`, on this login, rolled the order back.
    pub fn rolled_back_by(&self, operation: Uuid) -> bool {
        self.status == "rolled_back" && self.operation == Some(operation) && self.by_this_login
    }
}

/// Maintenance mode as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MaintenanceState {
    pub maintenance_mode: bool,
    pub maintenance_reason: Option<String>,
    pub maintenance_since: Option<DateTime<Utc>>,
    pub maintenance_by: Option<String>,
    /// Symbols whose new orders are stopped one by one (with the book trading), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
    /// The circuit breaker, when it is open: every rollback is refused (migration 18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerOpen>,
}

/// The circuit breaker, open: since when, why, from what, by whom.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BreakerOpen {
    /// Since.
    pub since: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// person, postcheck_failed, ledger_audit or failures.
    pub source: String,
    /// Who opened it (with the login).
    pub opened_by: Option<String>,
}

/// What a session's rows will say, as `session_operator()` answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionOperator {
    /// The name the server received (`incident.operator`), as it received it.
    pub claimed: Option<String>,
    /// The name recorded on this session's rows.
    pub operator: String,
    /// The database login.
    pub login: String,
    /// The names the database's owner registered for the login (none: any name is
    /// recorded as "name (via login)").
    pub registered_names: Vec<String>,
}

impl SessionOperator {
    /// Whether rows written now will be attributed as `sent` asks, and if not, why: the
    /// name did not reach the server (a pooler dropped it, or it reached another
    /// session), or the login may not use it.
    pub fn check(&self, sent: &str) -> Result<(), String> {
        if self.claimed.as_deref() != Some(sent) {
            return Err(format!(
                "the database did not receive the operator name {sent:?} (it has {}): rows would be recorded as {:?}. \
                 Behind PgBouncer in transaction pooling mode, pass --pooling transaction",
                self.claimed.as_deref().map_or_else(|| "none".to_string(), |c| format!("{c:?}")),
                self.operator
            ));
        }
        if !self.registered_names.is_empty() && self.operator != sent {
            return Err(format!(
                "the login {} may record as: {}. {sent:?} would be recorded as {:?}; give one of those names with \
                 --operator, or ask the database's owner to register yours (table operator_names)",
                self.login,
                self.registered_names.join(", "),
                self.operator
            ));
        }
        Ok(())
    }
}

/// A recorded name with the database login that recorded it, as people read it: the name
/// alone when it is the login or already says it (`dana (via app_rw)`), else
/// `Dana Whitfield (login dana_rw)`.
pub fn name_with_login(name: &str, login: Option<&str>) -> String {
    match login {
        Some(login) if name != login && !name.ends_with(&format!(" (via {login})")) => {
            format!("{name} (login {login})")
        }
        _ => name.to_string(),
    }
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

/// The SQL contract's functions (DESIGN.md), as `to_regprocedure` takes them: a release
/// rollback proves every one still resolves.
pub const CONTRACT_SIGNATURES: [&str; 9] = [
    "create_trading_account(uuid,numeric)",
    "execute_order_atomic(uuid,text,text,text,numeric,numeric,text,uuid)",
    "rollback_execute_order_atomic(uuid,uuid,text)",
    "rollback_order_execution(uuid,uuid,text)",
    "rollback_precheck(uuid,uuid)",
    "rollback_postcheck(uuid,uuid,jsonb)",
    "check_active_transactions(uuid)",
    "ledger_audit()",
    "set_maintenance_mode(boolean,text)",
];

#[cfg(test)]
mod session_operator_tests {
    use super::SessionOperator;

    fn who(claimed: Option<&str>, operator: &str, names: &[&str]) -> SessionOperator {
        SessionOperator {
            claimed: claimed.map(str::to_string),
            operator: operator.into(),
            login: "app_rw".into(),
            registered_names: names.iter().map(|n| n.to_string()).collect(),
        }
    }

    #[test]
    fn a_name_that_did_not_arrive_is_refused_with_what_rows_would_say() {
        let e = who(None, "app_rw", &[]).check("dana").expect_err("refused");
        assert!(e.contains("did not receive the operator name \"dana\""), "{e}");
        assert!(e.contains("recorded as \"app_rw\""), "{e}");
        assert!(e.contains("--pooling transaction"), "{e}");
        // Another session's name (a pooler handing over a server connection) is as bad.
        let e = who(Some("eve"), "eve (via app_rw)", &[]).check("dana").expect_err("refused");
        assert!(e.contains("it has \"eve\""), "{e}");
    }

    #[test]
    fn a_name_the_login_may_not_use_is_refused_and_the_allowed_ones_named() {
        let e = who(Some("eve"), "eve (via app_rw)", &["Dana Whitfield"]).check("eve").expect_err("refused");
        assert!(e.contains("may record as: Dana Whitfield"), "{e}");
        assert!(who(Some("Dana Whitfield"), "Dana Whitfield", &["Dana Whitfield"]).check("Dana Whitfield").is_ok());
    }

    #[test]
    fn a_login_without_registered_names_records_name_via_login() {
        assert!(who(Some("dana"), "dana (via app_rw)", &[]).check("dana").is_ok());
    }
}

#[cfg(test)]
mod chunk_tests {
    use super::*;

    #[test]
    fn chunk_answers_keep_the_order_sent_and_refuse_a_short_answer() {
        let v = serde_json::json!({"success": true, "results": [
            {"success": true, "refunded": "1.5"},
            {"success": false, "retry": true, "sqlstate": "40P01"},
            {"success": false, "attempted": false},
            {"success": false, "error_code": "breaker_open", "message": "open"},
        ]});
        let a = chunk_answers(v.clone(), 4).expect("answers");
        assert!(matches!(&a[0], ChunkAnswer::Answered(r) if r.success && r.refunded == Some(Decimal::new(15, 1))));
        assert_eq!(a[1], ChunkAnswer::Retry { sqlstate: "40P01".into() });
        assert_eq!(a[2], ChunkAnswer::NotAttempted);
        assert!(matches!(&a[3], ChunkAnswer::Answered(r) if r.error_code.as_deref() == Some("breaker_open")));
        assert!(chunk_answers(v, 5).is_err(), "an answer per order, or none trusted");
        let refusal = serde_json::json!({"success": false, "error_code": "invalid_reason", "message": "m"});
        let a = chunk_answers(refusal, 2).expect("refusal");
        assert!(a.iter().all(|x| matches!(x, ChunkAnswer::Answered(r) if !r.success)));
        assert!(chunk_answers(serde_json::json!({"success": true}), 1).is_err());
    }
}
