//! Four-eyes approval on the console's side: before a batch, a release rollback or closing
//! the breaker, ask whether the policy wants a second person; if so file the request and
//! wait for the decision (each step sent to the UI for the journal). And a second person's
//! decision on someone else's request.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc::UnboundedSender;

use super::requests::Job;
use crate::console::protocol::{DbEvent, RequestId};
use crate::core::approval::{ApprovalRequest, RequestState};
use crate::ops::approval::{self, Ask};
use crate::ops::batch::Progress;
use crate::store::db::Db;

/// The incident's id and level, read from its journal (none without one).
pub(super) async fn incident_of(journal: Option<(String, std::path::PathBuf)>) -> Option<(String, u8)> {
    let (id, path) = journal?;
    let level = tokio::task::spawn_blocking(move || {
        let entries = crate::store::journal::Journal::open(path).ok()?.entries().ok()?;
        crate::store::incidents::fold(&entries).ok().map(|i| i.level.number())
    })
    .await
    .ok()
    .flatten()?;
    Some((id, level))
}

/// Resolves once the batch is cancelled.
pub(super) async fn stopped(progress: Arc<Progress>) {
    while !progress.cancel.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn tell(events: &UnboundedSender<DbEvent>, r: &ApprovalRequest, action: &str, reason: &str, by: &str) {
    let _ = events.send(DbEvent::Approval {
        request: Box::new(r.clone()),
        action: action.into(),
        reason: reason.into(),
        by: by.into(),
    });
}

/// Whether the work may go ahead: `Ok(None)` when the policy asks no second person,
/// the request when one approved it (run it under `ask.operation`), else why not.
pub(super) async fn gate(
    pool: &Db,
    events: &UnboundedSender<DbEvent>,
    ask: Ask,
    stop: impl Future<Output = ()>,
) -> Result<Option<ApprovalRequest>, String> {
    let need = approval::needed(pool, &ask).await.map_err(|e| e.to_string())?;
    if !need.required {
        return Ok(None);
    }
    let req = approval::file(pool, &ask, &need).await.map_err(|e| e.to_string())?;
    tell(events, &req, "requested", &req.reason, &req.requested_by);
    let Some(d) = approval::wait_decided(pool, req.id, stop).await.map_err(|e| e.to_string())? else {
        let why = "the requester cancelled";
        if approval::withdraw(pool, req.id, why).await.is_ok() {
            tell(events, &req, "cancelled", why, &req.requested_by);
        }
        return Err("cancelled while waiting for a second person; the request is withdrawn".into());
    };
    let by = d.decided_by.clone().unwrap_or_default();
    let because = d.decision_reason.clone().unwrap_or_default();
    match d.state(Utc::now()) {
        RequestState::Approved => {
            tell(events, &d, "approved", &because, &by);
            Ok(Some(d))
        }
        RequestState::Denied => {
            tell(events, &d, "denied", &because, &by);
            Err(format!("denied by {by}: {because}"))
        }
        RequestState::Expired => Err("the approval request expired".into()),
        _ => Err("the approval request was withdrawn".into()),
    }
}

/// The work ran under the approval: its use, for the journal.
pub(super) fn used(events: &UnboundedSender<DbEvent>, approved: Option<&ApprovalRequest>) {
    if let Some(r) = approved {
        tell(events, r, "used", &r.reason, &r.requested_by);
    }
}

/// A second person's decision, as stored.
pub(super) fn decide(job: Job, id: RequestId, request: uuid::Uuid, approve: bool, reason: String) {
    let Job { pool, events, journal, .. } = job;
    tokio::spawn(async move {
        let incident = journal.map(|(i, _)| i);
        let result = approval::decide(&pool, request, approve, &reason, incident.as_deref())
            .await
            .map(Box::new)
            .map_err(|e| e.to_string());
        let _ = events.send(DbEvent::ApprovalDecided { id, approve, result });
    });
}
