//! Four-eyes approval (migration 19): the policy, requests, decisions.

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{Executor, Postgres};
use uuid::Uuid;

use super::{call_json, decode};
use crate::core::approval::{ApprovalKind, ApprovalNeed, ApprovalPolicy, ApprovalRequest};
use crate::core::error::{Error, Result};

/// A request as JSON `ApprovalRequest` reads (the amount as text: exact).
const REQUEST_JSON: &str = "to_jsonb(r) || jsonb_build_object('refunded', r.refunded::text)";

fn requests(rows: Vec<Value>) -> Result<Vec<ApprovalRequest>> {
    rows.into_iter().map(|v| decode(v, "approval_requests")).collect()
}

/// A refusal answered by one of the approval functions, as an error that names its code.
fn refused(v: &Value, what: &str) -> Option<Error> {
    if v.get("success").and_then(Value::as_bool) == Some(false) {
        let code = v.get("error_code").and_then(Value::as_str).unwrap_or("refused");
        let msg = v.get("message").and_then(Value::as_str).unwrap_or_default();
        return Some(Error::CheckFailed(format!("{what} refused ({code}): {msg}")));
    }
    None
}

/// `approval_policy_show()`: the policy, the open level, what this login has used.
pub async fn approval_policy<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<ApprovalPolicy> {
    let v = call_json(e, sqlx::query("SELECT approval_policy_show()")).await?;
    decode(v, "approval_policy_show")
}

/// `set_approval_policy(policy)` (the owner only): the members given replace the stored ones.
pub async fn set_approval_policy<'e, E: Executor<'e, Database = Postgres>>(e: E, policy: &Value) -> Result<Value> {
    let v = call_json(e, sqlx::query("SELECT set_approval_policy($1)").bind(policy.clone())).await?;
    match refused(&v, "set_approval_policy") {
        Some(err) => Err(err),
        None => Ok(v),
    }
}

/// `approval_needed(kind, orders, users, level, operation)`: whether this work needs a
/// second person. `kind` is single, batch, group, release_rollback or breaker_close.
pub async fn approval_needed<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    kind: &str,
    orders: &[(Uuid, Uuid)],
    level: i32,
    operation: Option<Uuid>,
) -> Result<ApprovalNeed> {
    let (o, u): (Vec<Uuid>, Vec<Uuid>) = orders.iter().copied().unzip();
    let v = call_json(
        e,
        sqlx::query("SELECT approval_needed($1, $2, $3, $4, $5)")
            .bind(kind.to_string())
            .bind(o)
            .bind(u)
            .bind(level)
            .bind(operation),
    )
    .await?;
    if let Some(err) = refused(&v, "approval_needed") {
        return Err(err);
    }
    decode(v, "approval_needed")
}

/// What a request asks a second person to approve.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// What kind of work.
    pub kind: ApprovalKind,
    /// The operation that will use it (a batch's id, a release rollback's operation).
    pub operation: Uuid,
    /// (order, user) for a batch or group; empty otherwise.
    pub orders: Vec<(Uuid, Uuid)>,
    /// The release, for a release rollback.
    pub target: Option<String>,
    /// Why the work is to be done (the rollback's reason).
    pub reason: String,
    /// What the requester was shown it refunds (the server's count, from `approval_needed`).
    pub refunded: Decimal,
    /// The requester's incident level.
    pub level: i32,
    /// The requester's incident.
    pub incident: Option<String>,
    /// What the requester saw besides the figures.
    pub preview: Value,
}

/// `request_approval(…)`: files the request; its id, or the refusal as an error.
pub async fn request_approval<'e, E: Executor<'e, Database = Postgres>>(e: E, r: &NewRequest) -> Result<Uuid> {
    let (o, u): (Vec<Uuid>, Vec<Uuid>) = r.orders.iter().copied().unzip();
    let has_orders = matches!(r.kind, ApprovalKind::Batch | ApprovalKind::Group);
    let v = call_json(
        e,
        sqlx::query("SELECT request_approval($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(r.kind.as_str())
            .bind(r.operation)
            .bind(has_orders.then_some(o))
            .bind(has_orders.then_some(u))
            .bind(r.target.clone())
            .bind(r.reason.clone())
            .bind(r.refunded)
            .bind(r.level)
            .bind(r.incident.clone())
            .bind(r.preview.clone()),
    )
    .await?;
    if let Some(err) = refused(&v, "request_approval") {
        return Err(err);
    }
    v.get("id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::UnexpectedAnswer { what: "request_approval".into(), detail: "no request id".into() })
}

/// `decide_approval(id, approve, reason, incident)`: a second person's decision.
pub async fn decide_approval<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    id: Uuid,
    approve: bool,
    reason: &str,
    incident: Option<&str>,
) -> Result<Value> {
    let v = call_json(
        e,
        sqlx::query("SELECT decide_approval($1, $2, $3, $4)")
            .bind(id)
            .bind(approve)
            .bind(reason.to_string())
            .bind(incident.map(str::to_string)),
    )
    .await?;
    match refused(&v, if approve { "approving" } else { "denying" }) {
        Some(err) => Err(err),
        None => Ok(v),
    }
}

/// `cancel_approval(id, reason)`: the requester withdraws it.
pub async fn cancel_approval<'e, E: Executor<'e, Database = Postgres>>(e: E, id: Uuid, reason: &str) -> Result<Value> {
    let v = call_json(e, sqlx::query("SELECT cancel_approval($1, $2)").bind(id).bind(reason.to_string())).await?;
    match refused(&v, "withdrawing") {
        Some(err) => Err(err),
        None => Ok(v),
    }
}

/// Requests, newest first: the undecided ones only, or all of the last `limit`.
pub async fn approval_requests<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    open_only: bool,
    limit: i64,
) -> Result<Vec<ApprovalRequest>> {
    let sql = format!(
        "SELECT {REQUEST_JSON} FROM approval_requests r \
         WHERE NOT $1 OR (decision IS NULL AND expires_at > clock_timestamp()) ORDER BY requested_at DESC LIMIT $2"
    );
    requests(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(open_only).bind(limit).fetch_all(e).await?)
}

/// The requests whose id starts with `prefix` (lowercase hex and dashes), at most two: one
/// names it, two say the prefix is too short.
pub async fn approval_requests_starting<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    prefix: &str,
) -> Result<Vec<ApprovalRequest>> {
    let sql = format!("SELECT {REQUEST_JSON} FROM approval_requests r WHERE starts_with(id::text, $1) LIMIT 2");
    requests(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(prefix.to_string()).fetch_all(e).await?)
}

/// One request.
pub async fn approval_request<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    id: Uuid,
) -> Result<Option<ApprovalRequest>> {
    let sql = format!("SELECT {REQUEST_JSON} FROM approval_requests r WHERE id = $1");
    let row: Option<Value> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(e).await?;
    row.map(|v| decode(v, "approval_requests")).transpose()
}

/// The requests of these operations (an incident's rollbacks).
pub async fn approval_requests_of<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    operations: &[Uuid],
) -> Result<Vec<ApprovalRequest>> {
    let sql = format!(
        "SELECT {REQUEST_JSON} FROM approval_requests r WHERE operation_id = ANY ($1) OR id = ANY ($1) \
         ORDER BY requested_at"
    );
    requests(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(operations.to_vec()).fetch_all(e).await?)
}

/// The orders a request covers (order, user), the first `limit`.
pub async fn approval_orders<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    id: Uuid,
    limit: i64,
) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as::<_, (Uuid, Uuid)>(
        "SELECT order_id, user_id FROM approval_orders WHERE request_id = $1 ORDER BY order_id LIMIT $2",
    )
    .bind(id)
    .bind(limit)
    .fetch_all(e)
    .await?)
}

/// `close_breaker(reason)` under an operation (whose approval covers closing it).
pub async fn close_breaker_approved<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    reason: &str,
    operation: Uuid,
) -> Result<Value> {
    call_json(
        e,
        sqlx::query(
            "SELECT close_breaker($1) FROM (SELECT set_config('incident.batch_id', $2, true) OFFSET 0) AS operation",
        )
        .bind(reason.to_string())
        .bind(operation.to_string()),
    )
    .await
}

/// The approval log of these requests, oldest first.
pub async fn approval_log_of<'e, E: Executor<'e, Database = Postgres>>(e: E, requests: &[Uuid]) -> Result<Vec<Value>> {
    Ok(sqlx::query_scalar("SELECT to_jsonb(l) FROM approval_log l WHERE request_id = ANY ($1) ORDER BY id")
        .bind(requests.to_vec())
        .fetch_all(e)
        .await?)
}
