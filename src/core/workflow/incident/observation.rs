//! What the console observed (checks, rollbacks, maintenance, audits, messages, reports)
//! and the journal event that records each.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::core::journal::event::{self, Event};
use crate::core::workflow::checklist::AutoSignal;

/// What the console saw happen (recorded in the journal, and maybe ticking items).
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A pre-check ran.
    Precheck { order: Uuid, user: Uuid, ready: bool, failed: Vec<String> },
    /// A rollback (single, transaction group or batch) is about to run: recorded before any
    /// money moves, and the rollback runs only once it is on disk.
    RollbackIntended {
        /// Identifies the rollback (its outcome's `operation`, its audit rows' `batch_id`).
        operation: Uuid,
        /// single, transaction or batch.
        mode: String,
        /// The order it starts from (none for a batch).
        order: Option<Uuid>,
        /// Its user (none for a batch).
        user: Option<Uuid>,
        /// Orders it is to roll back.
        orders: u64,
        /// Cash it is to give back, as a decimal string.
        refund: String,
        /// The reason to be recorded on the orders.
        reason: String,
    },
    /// What the database shows an earlier rollback of this incident did (its audit rows),
    /// where the journal could not know it.
    RollbackSettled {
        /// The operation.
        operation: Uuid,
        /// Orders its audit rows show rolled back.
        orders: u64,
        /// Cash they gave back, as a decimal string.
        refunded: String,
        /// What the journal said of it before.
        was: String,
        /// The users whose orders its audit rows show rolled back.
        user_ids: Vec<Uuid>,
    },
    /// A rollback (single, transaction group or batch) ended.
    Rollback {
        /// single, transaction or batch.
        mode: String,
        /// The order it started from (none for a batch).
        order: Option<Uuid>,
        /// Its user (none for a batch).
        user: Option<Uuid>,
        /// Orders rolled back.
        orders: u64,
        /// Users touched.
        users: u64,
        /// Cash given back, as a decimal string.
        refunded: String,
        /// Whether it completed.
        success: bool,
        /// What happened, in words.
        detail: String,
        /// The reason recorded on the orders.
        reason: String,
        /// The intent this is the outcome of (none where no intent was written).
        operation: Option<Uuid>,
        /// The users whose orders it rolled back.
        user_ids: Vec<Uuid>,
    },
    /// A post-check ran.
    Postcheck { order: Uuid, successful: bool, failed: Vec<String> },
    /// Maintenance mode was switched, and whether the probe confirmed it.
    Maintenance { on: bool, reason: String, verified: bool },
    /// One symbol's maintenance mode was switched, and whether the probe confirmed it.
    SymbolMaintenance { symbol: String, on: bool, reason: String, verified: bool },
    /// The database's maintenance mode differs from the journal's: someone switched it
    /// outside this console (another console, the CLI elsewhere, psql). Not probed here.
    MaintenanceSeen { on: bool, reason: String, by: Option<String>, since: Option<DateTime<Utc>> },
    /// The ledger audit ran.
    Audit { violations: u64 },
    /// A message was copied out (and written to a file).
    MessageCopied { template: String, audience: String, path: String },
    /// The post-incident report was written.
    ReportWritten { path: String, hash: String },
    /// The execution system was rolled back to an earlier release, and proved (or not).
    ReleaseRollback(event::ReleaseRollback),
    /// The deployed service was rolled back to an earlier version, and verified (or not).
    ServiceRollback(event::ServiceRollback),
    /// The circuit breaker opened or closed.
    Breaker(event::Breaker),
    /// A request for a second person was filed, decided, withdrawn or used.
    Approval(event::Approval),
    /// The evidence bundle was written.
    BundleWritten { path: String, manifest_sha256: String, files: u64, signed: bool },
}

/// The template that tells customers the service is restored.
pub const RESOLUTION_NOTICE: &str = "resolution_notice";

impl Observation {
    /// What the observation stands for, for Level 1's automatic ticks.
    pub(super) fn signal(&self) -> Option<Vec<AutoSignal>> {
        match self {
            Observation::Postcheck { successful: true, .. } => Some(vec![AutoSignal::PostcheckPassed]),
            Observation::Maintenance { on: true, verified: true, .. }
            | Observation::SymbolMaintenance { on: true, verified: true, .. } => {
                Some(vec![AutoSignal::MaintenanceVerified])
            }
            Observation::Audit { violations: 0 } => Some(vec![AutoSignal::AuditClean]),
            // Telling customers the service is restored is the resolution notice, not any
            // customer message.
            Observation::MessageCopied { template, .. } if template == RESOLUTION_NOTICE => {
                Some(vec![AutoSignal::ResolutionNoticeSent])
            }
            Observation::MessageCopied { audience, template, .. } => Some(if audience == "customer" {
                vec![AutoSignal::CustomerNoticeSent]
            } else if template == "internal_alert" {
                vec![AutoSignal::InternalAlertSent]
            } else {
                vec![]
            }),
            Observation::ReportWritten { .. } => Some(vec![AutoSignal::ReportWritten]),
            Observation::ReleaseRollback(r) if r.proved => Some(vec![AutoSignal::ReleaseProved]),
            Observation::ServiceRollback(r) if r.passed => Some(vec![AutoSignal::ServiceVerified]),
            Observation::BundleWritten { .. } => Some(vec![AutoSignal::BundleWritten]),
            _ => None,
        }
    }

    /// The journal entry that records it.
    pub(super) fn record(&self) -> Event {
        match self.clone() {
            Observation::Precheck { order, user, ready, failed } => {
                Event::Precheck(event::Precheck { order, user, ready, failed })
            }
            Observation::RollbackIntended { operation, mode, order, user, orders, refund, reason } => {
                Event::RollbackIntended(event::RollbackIntended {
                    operation,
                    mode,
                    order,
                    user,
                    orders,
                    refund,
                    reason,
                })
            }
            Observation::Rollback {
                mode,
                order,
                user,
                orders,
                users,
                refunded,
                success,
                detail,
                reason,
                operation,
                user_ids,
            } => Event::Rollback(event::Rollback {
                mode,
                order,
                user,
                orders,
                users,
                refunded,
                success,
                detail,
                reason,
                operation,
                user_ids,
            }),
            Observation::RollbackSettled { operation, orders, refunded, was, user_ids } => {
                Event::RollbackSettled(event::RollbackSettled { operation, orders, refunded, was, user_ids })
            }
            Observation::Postcheck { order, successful, failed } => {
                Event::Postcheck(event::Postcheck { order, successful, failed })
            }
            Observation::Maintenance { on, reason, verified } => {
                Event::Maintenance(event::Maintenance { on, reason, verified, symbol: None })
            }
            Observation::SymbolMaintenance { symbol, on, reason, verified } => {
                Event::Maintenance(event::Maintenance { on, reason, verified, symbol: Some(symbol) })
            }
            Observation::MaintenanceSeen { on, reason, by, since } => {
                Event::MaintenanceSeen(event::MaintenanceSeen { on, reason, by, since })
            }
            Observation::Audit { violations } => Event::Audit(event::Audit { violations }),
            Observation::MessageCopied { template, audience, path } => {
                Event::MessageCopied(event::MessageCopied { template, audience, path })
            }
            Observation::ReportWritten { path, hash } => Event::ReportWritten(event::ReportWritten { path, hash }),
            Observation::ReleaseRollback(r) => Event::ReleaseRollback(r),
            Observation::ServiceRollback(r) => Event::ServiceRollback(r),
            Observation::Breaker(b) => Event::Breaker(b),
            Observation::Approval(a) => Event::Approval(a),
            Observation::BundleWritten { path, manifest_sha256, files, signed } => {
                Event::BundleWritten(event::BundleWritten { path, manifest_sha256, files, signed })
            }
        }
    }
}
