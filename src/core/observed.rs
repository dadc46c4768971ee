//! What the database's answers say, as journal observations: one definition for the
//! headless commands and the console, so both record a rollback the same way.

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::core::batch::Summary;
use crate::core::contract::{Check, MaintenanceState, Postcheck, Precheck, RollbackAndPostcheck};
use crate::core::workflow::incident::Observation;

fn failed(checks: &[Check]) -> Vec<String> {
    checks.iter().filter(|c| !c.passed).map(|c| c.check.clone()).collect()
}

fn mode(group: bool) -> String {
    if group { "transaction" } else { "single" }.into()
}

/// A pre-check of an order.
pub fn precheck(p: &Precheck, order: Uuid, user: Uuid) -> Observation {
    Observation::Precheck { order, user, ready: p.ready, failed: failed(&p.checks) }
}

/// A post-check of an order.
pub fn postcheck(p: &Postcheck, order: Uuid) -> Observation {
    Observation::Postcheck { order, successful: p.successful, failed: failed(&p.checks) }
}

/// A single or transaction-group rollback about to run, with the orders and the refund its
/// pre-check expects: the intent written before any money moves.
pub fn rollback_intended(
    operation: Uuid,
    order: Uuid,
    user: Uuid,
    group: bool,
    orders: u64,
    refund: Decimal,
    reason: &str,
) -> Observation {
    Observation::RollbackIntended {
        operation,
        mode: mode(group),
        order: Some(order),
        user: Some(user),
        orders,
        refund: refund.normalize().to_string(),
        reason: reason.to_string(),
    }
}

/// A batch about to run, from its preview: the intent written before any money moves.
pub fn batch_intended(operation: Uuid, orders: u64, refund: Decimal, reason: &str) -> Observation {
    Observation::RollbackIntended {
        operation,
        mode: "batch".into(),
        order: None,
        user: None,
        orders,
        refund: refund.normalize().to_string(),
        reason: reason.to_string(),
    }
}

/// A single or transaction-group rollback that ran: the rollback, then its post-check.
/// `operation` is its intent's.
pub fn rollback(
    r: &RollbackAndPostcheck,
    order: Uuid,
    user: Uuid,
    group: bool,
    reason: &str,
    operation: Uuid,
) -> Vec<Observation> {
    let rb = &r.rollback;
    let mut seen = vec![Observation::Rollback {
        mode: mode(group),
        order: Some(order),
        user: Some(user),
        orders: rb.order_ids.as_ref().map_or(0, Vec::len) as u64,
        users: 1,
        refunded: rb.refunded.unwrap_or_default().normalize().to_string(),
        success: rb.success,
        detail: if rb.success {
            match &rb.reply_lost {
                Some(why) => format!("rolled back (the reply was lost: {why}; confirmed from the database)"),
                None => "rolled back".into(),
            }
        } else {
            format!("{}: {}", rb.error_code.as_deref().unwrap_or("unknown"), rb.message.as_deref().unwrap_or(""))
        },
        reason: reason.to_string(),
        operation: Some(operation),
        // `user` says it; the count of orders says whether that user was affected.
        user_ids: Vec::new(),
    }];
    seen.extend(r.postcheck.as_ref().map(|p| postcheck(p, order)));
    seen
}

/// A single or transaction-group rollback that did not get an answer.
pub fn rollback_failed(
    error: &str,
    order: Uuid,
    user: Uuid,
    group: bool,
    reason: &str,
    operation: Uuid,
) -> Observation {
    Observation::Rollback {
        mode: mode(group),
        order: Some(order),
        user: Some(user),
        orders: 0,
        users: 1,
        refunded: "0".into(),
        success: false,
        detail: error.to_string(),
        reason: reason.to_string(),
        operation: Some(operation),
        user_ids: Vec::new(),
    }
}

/// A batch that ended (complete, cancelled or with refusals); `operation` is its intent's
/// (the batch id).
pub fn batch(s: &Summary, reason: &str, operation: Uuid) -> Observation {
    Observation::Rollback {
        mode: "batch".into(),
        order: None,
        user: None,
        orders: s.rolled_back as u64,
        users: s.users.len() as u64,
        refunded: s.refunded.normalize().to_string(),
        success: s.complete(),
        detail: s.outcome_sentence(),
        reason: reason.to_string(),
        operation: Some(operation),
        user_ids: s.users.clone(),
    }
}

/// Maintenance mode as the database shows it, switched outside this console.
pub fn maintenance_seen(m: &MaintenanceState) -> Observation {
    Observation::MaintenanceSeen {
        on: m.maintenance_mode,
        reason: m.maintenance_reason.clone().unwrap_or_else(|| "no reason recorded".into()),
        by: m.maintenance_by.clone(),
        since: m.maintenance_since,
    }
}

/// A batch cut short by quitting the console (`why`) that stopped when asked: its
/// summary, each order as the database has it, as not finished.
pub fn interrupted_batch(s: &Summary, reason: &str, why: &str, operation: Uuid) -> Observation {
    let finished = s.total.saturating_sub(s.not_attempted);
    Observation::Rollback {
        mode: "batch".into(),
        order: None,
        user: None,
        orders: s.rolled_back as u64,
        users: s.users.len() as u64,
        refunded: s.refunded.normalize().to_string(),
        success: false,
        detail: format!(
            "interrupted: {why} with {finished} of {} finished ({}); run the batch again to finish, nothing is \
             rolled back twice",
            s.total,
            s.outcome_sentence()
        ),
        reason: reason.to_string(),
        operation: Some(operation),
        user_ids: s.users.clone(),
    }
}

/// A batch cut short by quitting the console (`why`) whose answer did not come: what its
/// progress said, which may lag the database, as not finished.
pub fn interrupted_batch_heard(
    run: &crate::core::batch::BatchRun,
    reason: &str,
    why: &str,
    operation: Uuid,
) -> Observation {
    Observation::Rollback {
        mode: "batch".into(),
        order: None,
        user: None,
        orders: run.rolled_back,
        users: 0,
        refunded: run.refunded.normalize().to_string(),
        success: false,
        detail: format!(
            "interrupted: {why} with {} of {} finished as last heard ({} rolled back, {} refused or failed); the \
             batch did not say what it did before the console ended, so the database may hold more of it: run the \
             batch again from the command line, which finishes it and settles these figures from the database; \
             nothing is rolled back twice",
            run.done, run.total, run.rolled_back, run.problems
        ),
        reason: reason.to_string(),
        operation: Some(operation),
        // Not known here: the next CLI rollback settles it from the audit rows.
        user_ids: Vec::new(),
    }
}

/// A release rollback and its proof (none: the proof did not run).
pub fn release_rollback(
    answer: &crate::core::release::RollbackAnswer,
    proof: Option<&crate::core::release::ReleaseProof>,
    reason: &str,
) -> Observation {
    Observation::ReleaseRollback(crate::core::journal::event::ReleaseRollback {
        target: answer.target.clone(),
        reverted: answer.reverted.iter().map(|r| r.name.clone()).collect(),
        archived: answer
            .archived
            .iter()
            .map(|x| format!("{}: {} value(s), checksum {} (archive set {})", x.object, x.rows, x.checksum, x.set_id))
            .collect(),
        proved: proof.is_some_and(|p| p.passed),
        failed: proof.map_or_else(|| vec!["proof not run".to_string()], |p| p.failed()),
        drift: answer.drift.iter().map(|d| format!("{} {}", d.kind, d.identity)).collect(),
        reason: reason.to_string(),
    })
}

/// A service rollback and its verdict.
pub fn service_rollback(r: &crate::core::service::ServiceRollback, expected: &str) -> Observation {
    Observation::ServiceRollback(crate::core::journal::event::ServiceRollback {
        from: r.from_version.clone(),
        expected: expected.to_string(),
        after: r.version_after.clone(),
        passed: r.passed,
        verdict: r.verdict.clone(),
    })
}
