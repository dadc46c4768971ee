//! A batch's proof: what the database shows after the run, checked against what the run
//! says it did (its post-check), and the ledger audit of the accounts it touched.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{BatchItem, Outcome, Summary};
use crate::core::contract::{Check, OrderRollbackState, Violation};
use crate::core::format::money;

/// What the audit rows of one operation add up to (this login's only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationTotals {
    /// Rows: orders it rolled back.
    pub orders: i64,
    /// Cash given back, as the rows say.
    pub refunded: Decimal,
    /// The users whose orders those were, each once.
    pub users: Vec<Uuid>,
}

/// A batch's post-check and the audit of the accounts it touched.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Proof {
    /// Each check, in the order a person reads them.
    pub checks: Vec<Check>,
    /// Accounts audited: the users of every order known rolled back.
    pub accounts: usize,
    /// Ledger invariant violations among those accounts.
    pub violations: Vec<Violation>,
}

impl Proof {
    /// Whether every check passed and the audit found nothing.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed) && self.violations.is_empty()
    }

    /// "6/6 checks passed, 12 accounts audited: clean" or what failed.
    pub fn sentence(&self) -> String {
        let passed = self.checks.iter().filter(|c| c.passed).count();
        let audit = match self.violations.len() {
            0 => "clean".to_string(),
            n => format!("{n} violation(s)"),
        };
        format!("post-check {passed}/{} passed; {} account(s) audited: {audit}", self.checks.len(), self.accounts)
    }
}

/// The accounts a batch touched: the users of every order known rolled back now, each once.
pub fn touched_accounts(outcomes: &[(BatchItem, Outcome)]) -> Vec<Uuid> {
    let users: BTreeSet<Uuid> = outcomes.iter().filter(|(_, o)| o.done()).map(|(i, _)| i.user_id).collect();
    users.into_iter().collect()
}

/// The post-check of a batch: the database's rows (`states`, one per order of the batch
/// that exists; `totals`, the operation's audit rows) against what the run reported.
/// Every figure is compared whole; nothing is rounded.
pub fn postcheck(
    summary: &Summary,
    outcomes: &[(BatchItem, Outcome)],
    states: &[OrderRollbackState],
    totals: &OperationTotals,
) -> Vec<Check> {
    let op = summary.batch_id;
    let state = |id: Uuid| states.iter().find(|s| s.order_id == id);
    let by_run: Vec<Uuid> =
        outcomes.iter().filter(|(_, o)| matches!(o, Outcome::RolledBack { .. })).map(|(i, _)| i.order_id).collect();
    let proved = by_run.iter().filter(|id| state(**id).is_some_and(|s| s.rolled_back_by(op))).count();
    // Orders the run says it did not do must carry no row of this operation.
    let not_done: Vec<Uuid> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Refused { .. } | Outcome::Failed { .. } | Outcome::NotAttempted))
        .map(|(i, _)| i.order_id)
        .collect();
    let claimed = not_done.iter().filter(|id| state(**id).is_some_and(|s| s.operation == Some(op))).count();
    let margin: Decimal = by_run.iter().filter_map(|id| state(*id)).map(|s| s.margin_released).sum();
    let users_match = totals.users == summary.users;

    vec![
        check(
            "orders_rolled_back",
            proved == summary.rolled_back,
            "every order the run rolled back is rolled back, by this operation and login",
            json!(summary.rolled_back),
            json!(proved),
        ),
        check(
            "audit_rows_match",
            totals.orders == summary.rolled_back as i64,
            "the operation's audit rows are exactly the orders it rolled back",
            json!(summary.rolled_back),
            json!(totals.orders),
        ),
        check(
            "refund_matches",
            totals.refunded == summary.refunded,
            "the cash the audit rows give back is the run's refund",
            json!(money(summary.refunded)),
            json!(money(totals.refunded)),
        ),
        check(
            "margin_matches",
            margin == summary.margin_released,
            "the margin of the rolled-back orders' positions is the run's release",
            json!(money(summary.margin_released)),
            json!(money(margin)),
        ),
        check(
            "users_match",
            users_match,
            "the users of the audit rows are the run's users",
            json!(summary.users.len()),
            json!(totals.users.len()),
        ),
        check(
            "others_untouched",
            claimed == 0,
            "no order the run did not do carries its operation",
            json!(0),
            json!(claimed),
        ),
    ]
}

fn check(name: &str, passed: bool, detail: &str, expected: Value, actual: Value) -> Check {
    Check {
        check: name.into(),
        passed,
        detail: Some(detail.into()),
        expected: Some(expected),
        actual: Some(actual),
        violations: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::batch::BatchTally;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn item(n: u128, user: u128) -> BatchItem {
        BatchItem { order_id: Uuid::from_u128(n), user_id: Uuid::from_u128(user) }
    }

    fn done(refunded: Decimal) -> Outcome {
        Outcome::RolledBack { refunded, margin_released: d("1"), attempts: 1, reply_lost: false }
    }

    fn state(n: u128, op: Option<Uuid>, refunded: Decimal) -> OrderRollbackState {
        OrderRollbackState {
            order_id: Uuid::from_u128(n),
            status: if op.is_some() { "rolled_back".into() } else { "executed".into() },
            rollback_id: None,
            operation: op,
            operator: None,
            at: None,
            by_this_login: true,
            refunded,
            margin_released: if op.is_some() { d("1") } else { d("0") },
        }
    }

    fn run() -> (Summary, Vec<(BatchItem, Outcome)>) {
        let op = Uuid::from_u128(99);
        let outcomes = vec![
            (item(1, 10), done(d("2.5"))),
            (item(2, 11), done(d("0.00000001"))),
            (item(3, 10), Outcome::Refused { error_code: "x".into(), message: String::new() }),
        ];
        let tally = BatchTally { batch_id: op, total: 3, retries: 0, elapsed_ms: 1, cancelled: false };
        (Summary::of(tally, &outcomes), outcomes)
    }

    #[test]
    fn a_batch_the_rows_agree_with_passes() {
        let (s, o) = run();
        let op = Some(s.batch_id);
        let states = [state(1, op, d("2.5")), state(2, op, d("0.00000001")), state(3, None, d("0"))];
        let totals = OperationTotals { orders: 2, refunded: d("2.50000001"), users: s.users.clone() };
        let checks = postcheck(&s, &o, &states, &totals);
        assert!(checks.iter().all(|c| c.passed), "{checks:?}");
        let proof = Proof { checks, accounts: touched_accounts(&o).len(), violations: Vec::new() };
        assert_eq!(proof.sentence(), "post-check 6/6 passed; 2 account(s) audited: clean");
    }

    #[test]
    fn a_refund_off_by_one_unit_or_a_claimed_refusal_fails_by_name() {
        let (s, o) = run();
        let op = Some(s.batch_id);
        // The refused order carries the operation's row: someone wrote it in our name.
        let states = [state(1, op, d("2.5")), state(2, op, d("0.00000001")), state(3, op, d("0"))];
        let totals = OperationTotals { orders: 3, refunded: d("2.50000002"), users: s.users.clone() };
        let failed: Vec<String> =
            postcheck(&s, &o, &states, &totals).into_iter().filter(|c| !c.passed).map(|c| c.check).collect();
        assert_eq!(failed, ["audit_rows_match", "refund_matches", "others_untouched"]);
    }

    #[test]
    fn an_order_reported_done_but_not_rolled_back_fails() {
        let (s, o) = run();
        let op = Some(s.batch_id);
        let states = [state(1, op, d("2.5")), state(2, None, d("0")), state(3, None, d("0"))];
        let totals = OperationTotals { orders: 1, refunded: d("2.5"), users: vec![Uuid::from_u128(10)] };
        let failed: Vec<String> =
            postcheck(&s, &o, &states, &totals).into_iter().filter(|c| !c.passed).map(|c| c.check).collect();
        assert_eq!(
            failed,
            ["orders_rolled_back", "audit_rows_match", "refund_matches", "margin_matches", "users_match"]
        );
    }
}
