//! One rollback after its pre-check: an order, or its whole transaction group, rolled back
//! and post-checked against the baseline in one round trip. The call is one transaction, so
//! it is retried whole after a serialization failure, a deadlock or a lock timeout (a retry
//! cannot double up); an error the retries did not get past is recorded in the audit log,
//! where the metrics count it. The CLI and the console's worker both run it.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::core::contract::RollbackAndPostcheck;
use crate::core::error::Result;
use crate::store::db::{self, Db, DbConn, Retry, is_cancel};

/// Attempts at most, retries included.
const ATTEMPTS: u32 = 8;

/// What to roll back, and the baseline its pre-check took.
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackRequest {
    /// The order.
    pub order: Uuid,
    /// Its user.
    pub user: Uuid,
    /// Recorded on every order rolled back.
    pub reason: String,
    /// The pre-check's baseline, compared after the rollback.
    pub baseline: Value,
    /// The whole transaction group, not only the order.
    pub group: bool,
    /// Identifies this rollback on its audit rows (`batch_id`), so a lost reply can be
    /// settled by reading them.
    pub operation: Uuid,
}

/// Rolls back and proves it on `conn` (a connection the caller can cancel on the server).
/// A failure is recorded through `pool`, on a connection of its own (the one that failed
/// may be the problem), unless it is a cancel that `operator_cancelled` says a person asked
/// for: a statement timeout or a cancel from elsewhere is a failure like any other.
pub async fn rollback_and_prove(
    pool: &Db,
    conn: &mut DbConn,
    req: &RollbackRequest,
    operator_cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<RollbackAndPostcheck> {
    let mut retry = Retry::new(ATTEMPTS);
    let result = loop {
        let r = db::rollback_with_postcheck(
            &mut *conn,
            req.order,
            req.user,
            &req.reason,
            &req.baseline,
            req.group,
            req.operation,
        )
        .await;
        if !retry.again(&r, |n| Some(Duration::from_millis(10 << n))).await {
            break r;
        }
    };
    if let Err(e) = &result
        && !(is_cancel(e) && operator_cancelled())
    {
        let detail = json!({ "error": e.to_string(), "attempts": retry.attempts() });
        // Best effort: the error itself is what the caller reports.
        let _ = db::record_failure(pool, req.order, req.user, "rollback_failed", &detail).await;
    }
    result
}
