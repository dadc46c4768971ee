//! One rollback after its pre-check: an order, or its whole transaction group, rolled back
//! and post-checked against the baseline in one round trip. The call is one transaction, so
//! it is retried whole after a serialization failure, a deadlock or a lock timeout (a retry
//! cannot double up); an error the retries did not get past is recorded in the audit log,
//! where the metrics count it. The CLI and the console's worker both run it.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::core::contract::{OrderRollbackState, RollbackAndPostcheck, RollbackResult};
use crate::core::error::{Error, Result};
use crate::store::db::{self, Db, DbConn, Retry, is_cancel, may_have_committed};

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
///
/// A call whose reply never came may have committed: its server process is ended (so the
/// call is over), and the rows are read back on another connection. Rows carrying this
/// operation's id are the rollback, reported with `reply_lost` and proved by a post-check
/// run anew; none means not done (the error stands); a database that cannot be asked gives
/// `Error::OutcomeUnknown`.
pub async fn rollback_and_prove(
    pool: &Db,
    conn: &mut DbConn,
    req: &RollbackRequest,
    operator_cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<RollbackAndPostcheck> {
    // Who the server process is, to end it if the reply is lost (none behind a pooler).
    let backend = match conn.session() {
        Some(s) => db::backend_identity(s).await.ok(),
        None => None,
    };
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
    let result = match result {
        Err(e) if may_have_committed(&e) => settle(pool, req, backend, e).await,
        other => other,
    };
    if let Err(e) = &result
        && !(is_cancel(e) && operator_cancelled())
        && !matches!(e, Error::OutcomeUnknown(_))
    {
        let detail = json!({ "error": e.to_string(), "attempts": retry.attempts(), "operation": req.operation });
        // Best effort: the error itself is what the caller reports.
        let _ = db::record_failure(pool, req.order, req.user, "rollback_failed", &detail).await;
    }
    result
}

/// Reads back a rollback whose reply was lost, or whose wait was given up, after ending
/// its server process `backend`: `lost` again when it did not happen.
pub async fn settle(
    pool: &Db,
    req: &RollbackRequest,
    backend: Option<(i32, chrono::DateTime<chrono::Utc>)>,
    lost: Error,
) -> Result<RollbackAndPostcheck> {
    let unknown = |why: Error| Error::OutcomeUnknown(format!("{lost}; reading it back: {why}"));
    // A few tries: the pool may first hand out connections that broke with this one.
    let mut read = Err(Error::Unreachable("not tried".into()));
    for wait in [0u64, 200, 500, 1000, 2000] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        read = tokio::time::timeout(Duration::from_secs(5), read_back(pool, req, backend))
            .await
            .unwrap_or_else(|_| Err(Error::Unreachable("no answer within 5 s".into())));
        if read.is_ok() {
            break;
        }
    }
    let states = read.map_err(unknown)?;
    let mine: Vec<&OrderRollbackState> = states.iter().filter(|s| s.rolled_back_by(req.operation)).collect();
    if mine.is_empty() {
        return Err(lost);
    }
    let rollback = RollbackResult {
        success: true,
        error_code: None,
        message: None,
        mode: Some(if req.group { "transaction" } else { "single" }.into()),
        order_ids: Some(mine.iter().map(|s| s.order_id).collect()),
        refunded: Some(mine.iter().map(|s| s.refunded).sum()),
        margin_released: Some(mine.iter().map(|s| s.margin_released).sum()),
        transfers_reversed: None,
        duration_us: None,
        skipped: None,
        already_rolled_back: None,
        status: Some("rolled_back".into()),
        reply_lost: Some(lost.to_string()),
        // The rows do not say; the breaker itself does (breaker status).
        breaker_opened: false,
    };
    // The post-check that came with the lost reply, run again against the same baseline.
    let postcheck = db::postcheck(pool, req.order, req.user, &req.baseline).await.ok();
    Ok(RollbackAndPostcheck { rollback, postcheck })
}

/// Ends the server process that lost the reply (waiting until its call is over), then
/// reads the rows of the operation.
async fn read_back(
    pool: &Db,
    req: &RollbackRequest,
    backend: Option<(i32, chrono::DateTime<chrono::Utc>)>,
) -> Result<Vec<OrderRollbackState>> {
    let mut conn = pool.acquire().await?;
    if let (Some((pid, started)), Some(s)) = (backend, conn.session())
        && !db::fence_backend(s, pid, started, 5000).await?
    {
        return Err(Error::Unreachable(format!("the server process {pid} that lost the reply is still running")));
    }
    db::group_rollback_states(&mut conn, req.order).await
}
