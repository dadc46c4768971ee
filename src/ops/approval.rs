//! Four-eyes approval, the use cases both front ends share: ask whether work needs a second
//! person, file the request, wait for the decision, decide someone else's. The database
//! enforces the rules (migration 19); this only asks, files and listens.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::core::approval::{ApprovalKind, ApprovalNeed, ApprovalRequest, RequestState};
use crate::core::error::{Error, Result};
use crate::store::db::{self, Db, NewRequest};

/// Work that may need a second person, as the requester will run it.
#[derive(Debug, Clone)]
pub struct Ask {
    /// What kind.
    pub kind: ApprovalKind,
    /// The operation that will run it (and use the approval).
    pub operation: Uuid,
    /// (order, user) of a batch or group.
    pub orders: Vec<(Uuid, Uuid)>,
    /// The release of a release rollback.
    pub target: Option<String>,
    /// The work's reason, exactly as it will be sent.
    pub reason: String,
    /// The requester's incident and its level (1 when none).
    pub incident: Option<(String, u8)>,
    /// What the requester is shown besides the figures (symbol, window, …).
    pub preview: Value,
    /// One order alone (filed as a batch of one): the Level 3 rule for batches and groups
    /// does not apply, the login's budget does.
    pub single: bool,
}

impl Ask {
    fn level(&self) -> i32 {
        self.incident.as_ref().map_or(1, |(_, l)| i32::from(*l))
    }
}

/// Whether the work needs a second person, with the server's count of its orders and money.
pub async fn needed(pool: &Db, ask: &Ask) -> Result<ApprovalNeed> {
    let kind = if ask.single { "single" } else { ask.kind.as_str() };
    db::approval_needed(pool, kind, &ask.orders, ask.level(), Some(ask.operation)).await
}

/// Files the request (with the figures `need` showed) and reads it back.
pub async fn file(pool: &Db, ask: &Ask, need: &ApprovalNeed) -> Result<ApprovalRequest> {
    let id = db::request_approval(
        pool,
        &NewRequest {
            kind: ask.kind,
            operation: ask.operation,
            orders: ask.orders.clone(),
            target: ask.target.clone(),
            reason: ask.reason.clone(),
            refunded: need.refunded,
            level: ask.level(),
            incident: ask.incident.as_ref().map(|(id, _)| id.clone()),
            preview: ask.preview.clone(),
        },
    )
    .await?;
    read(pool, id).await
}

/// One request, which must exist.
pub async fn read(pool: &Db, id: Uuid) -> Result<ApprovalRequest> {
    db::approval_request(pool, id).await?.ok_or_else(|| Error::BadInput(format!("no approval request {id}")))
}

/// A request named by its id or the first characters of it (as lists show them).
pub async fn find(pool: &Db, id_or_prefix: &str) -> Result<ApprovalRequest> {
    let wanted = id_or_prefix.trim().to_ascii_lowercase();
    if let Ok(id) = wanted.parse::<Uuid>() {
        return read(pool, id).await;
    }
    if wanted.len() < 4 || !wanted.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Error::BadInput(format!(
            "{id_or_prefix:?} is not a request id (its first 8 characters, as `approvals list` shows, will do)"
        )));
    }
    let found = db::approval_requests_starting(pool, &wanted).await?;
    match found.len() {
        1 => Ok(found.into_iter().next().ok_or_else(|| Error::BadInput("no such request".into()))?),
        0 => Err(Error::BadInput(format!("no approval request starts with {wanted}"))),
        _ => Err(Error::BadInput(format!("more than one request starts with {wanted}: give more of the id"))),
    }
}

/// Waits until the request is decided or expires, or `stop` resolves (then `None`). Hears
/// decisions through LISTEN where the connection allows it, and looks every 2 s anyway.
pub async fn wait_decided(pool: &Db, id: Uuid, stop: impl Future<Output = ()>) -> Result<Option<ApprovalRequest>> {
    let mut listener = match pool.session_pool("LISTEN") {
        Ok(p) => match PgListener::connect_with(p).await {
            Ok(mut l) => l.listen("approvals").await.ok().map(|_| l),
            Err(_) => None,
        },
        Err(_) => None,
    };
    tokio::pin!(stop);
    loop {
        let r = read(pool, id).await?;
        if r.state(Utc::now()) != RequestState::Pending {
            return Ok(Some(r));
        }
        let heard = async {
            match listener.as_mut() {
                Some(l) => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), l.recv()).await;
                }
                None => tokio::time::sleep(Duration::from_secs(2)).await,
            }
        };
        tokio::select! {
            _ = &mut stop => return Ok(None),
            _ = heard => {}
        }
    }
}

/// A second person decides: the decision as stored.
pub async fn decide(
    pool: &Db,
    id: Uuid,
    approve: bool,
    reason: &str,
    incident: Option<&str>,
) -> Result<ApprovalRequest> {
    crate::core::workflow::incident::reason_ok(reason, "A reason")?;
    db::decide_approval(pool, id, approve, reason, incident).await?;
    read(pool, id).await
}

/// The requester withdraws an undecided request.
pub async fn withdraw(pool: &Db, id: Uuid, reason: &str) -> Result<ApprovalRequest> {
    db::cancel_approval(pool, id, reason).await?;
    read(pool, id).await
}

/// The current incident's id and level, for a request's scope (none: Level 1, no incident).
pub fn current_incident() -> Option<(String, u8)> {
    let inc = crate::ops::incident::open(None).ok()?;
    Some((inc.incident.id.clone(), inc.incident.level.number()))
}
