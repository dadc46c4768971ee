//! A batch proved afterwards: its post-check against the database's rows and the ledger
//! audit of the accounts it touched. Both front ends show the same proof.

use std::time::Duration;

use crate::core::batch::{self, BatchItem, OperationTotals, Outcome, Proof, Summary};
use crate::core::error::{Error, Result};
use crate::store::db;

/// How long the proof may take before it is reported as not run (the batch is over; the
/// operator should not wait on a stuck audit).
const PROOF_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads back every order of the batch and the operation's audit rows, checks them against
/// the run's summary, and audits the ledger of every account an order known rolled back
/// belongs to. Each read is its own statement on the pool (nothing is locked).
pub async fn prove(pool: &db::Db, summary: &Summary, outcomes: &[(BatchItem, Outcome)]) -> Result<Proof> {
    let work = async {
        let ids: Vec<uuid::Uuid> = outcomes.iter().map(|(i, _)| i.order_id).collect();
        let states = db::order_rollback_states(pool, &ids).await?;
        let totals = db::operation_totals(pool, &[summary.batch_id])
            .await?
            .into_iter()
            .next()
            .map(|(_, orders, refunded, mut users)| {
                users.sort();
                OperationTotals { orders, refunded, users }
            })
            .unwrap_or(OperationTotals { orders: 0, refunded: Default::default(), users: Vec::new() });
        let accounts = batch::touched_accounts(outcomes);
        let violations = db::ledger_audit_users(pool, &accounts).await?;
        Ok(Proof {
            checks: batch::postcheck(summary, outcomes, &states, &totals),
            accounts: accounts.len(),
            violations,
        })
    };
    tokio::time::timeout(PROOF_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(Error::Unreachable("the proof got no answer within 60 s".into())))
}
