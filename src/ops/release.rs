//! Releases of the execution system, for both front ends: deploy a plan, pre-check a
//! rollback, roll back and prove it, restore archived values, verify, and read the history.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::core::contract::CONTRACT_SIGNATURES;
use crate::core::error::{Error, Result};
use crate::core::release::{
    Drift, IdempotencyProbe, ObjectChange, PlanEntry, ReadBack, ReleaseProof, ReleaseRefusal, ReleaseRow,
    ReleaseScripts, Restored, RevertPrecheck, RollbackAnswer, diff_text, prove,
};
use crate::store::db::{self, Db};

/// A release function's answer: what it did, or why it refused (nothing changed).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer<T> {
    /// It did it.
    Done(T),
    /// It refused.
    Refused(ReleaseRefusal),
}

fn answer<T: DeserializeOwned>(v: Value, what: &str) -> Result<Answer<T>> {
    let decode_err = |e: serde_json::Error| Error::UnexpectedAnswer { what: what.to_string(), detail: e.to_string() };
    if v.get("success").and_then(Value::as_bool) == Some(true) {
        Ok(Answer::Done(serde_json::from_value(v).map_err(decode_err)?))
    } else {
        let mut r: ReleaseRefusal = serde_json::from_value(v.clone()).map_err(decode_err)?;
        r.message = crate::core::sanitize::line(&r.message).into_owned();
        Ok(Answer::Refused(r))
    }
}

/// One release of a plan deployed (or refused).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployed {
    /// The release.
    pub name: String,
    /// What the database answered.
    pub answer: Value,
}

/// Deploys the releases of `plan` that are not in effect, in order, up to `up_to`; stops
/// at the first refusal. `at` gives a release's recorded deployment time (history
/// registered after the fact), None for now.
pub async fn deploy_plan(
    pool: &Db,
    plan: &[ReleaseScripts],
    up_to: Option<&str>,
    at: &(dyn Fn(&PlanEntry) -> Option<DateTime<Utc>> + Sync),
) -> Result<Vec<Deployed>> {
    if let Some(n) = up_to
        && !plan.iter().any(|r| r.entry.name == n)
    {
        return Err(Error::BadInput(format!("the plan has no release {}", crate::core::sanitize::line(n))));
    }
    let active: Vec<String> = db::releases(pool).await?.into_iter().filter(|r| r.active()).map(|r| r.name).collect();
    let mut out = Vec::new();
    for r in plan {
        if !active.contains(&r.entry.name) {
            let v = db::release_deploy(pool, r, at(&r.entry)).await?;
            let ok = v.get("success").and_then(Value::as_bool) == Some(true);
            out.push(Deployed { name: r.entry.name.clone(), answer: v });
            if !ok {
                break;
            }
        }
        if up_to == Some(r.entry.name.as_str()) {
            break;
        }
    }
    Ok(out)
}

/// What a rollback to `to` would do (read only).
pub async fn precheck(pool: &Db, to: &str) -> Result<Answer<RevertPrecheck>> {
    answer(db::release_revert_precheck(pool, to).await?, "release_revert_precheck")
}

/// A rollback done, and its proof read back after it committed (none for a dry run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseRollback {
    /// What the database did.
    pub answer: RollbackAnswer,
    /// The proof.
    pub proof: Option<ReleaseProof>,
}

/// Rolls the execution system back to `to` in one transaction (or rehearses it with
/// `dry_run`), then proves the result from the rows.
pub async fn rollback(
    pool: &Db,
    to: &str,
    reason: &str,
    accept_drift: bool,
    dry_run: bool,
    operation: Option<Uuid>,
) -> Result<Answer<ReleaseRollback>> {
    let v = db::release_rollback(pool, to, reason, accept_drift, dry_run, operation).await?;
    let done: RollbackAnswer = match answer(v, "release_rollback")? {
        Answer::Done(a) => a,
        Answer::Refused(r) => return Ok(Answer::Refused(r)),
    };
    let proof = if dry_run { None } else { Some(prove(&done, &read_back(pool, &done).await)) };
    Ok(Answer::Done(ReleaseRollback { answer: done, proof }))
}

/// What the rows show after a rollback committed; a read that fails fails its check.
async fn read_back(pool: &Db, done: &RollbackAnswer) -> ReadBack {
    let objects: Vec<(String, String)> = done.checks.iter().map(|c| (c.kind.clone(), c.identity.clone())).collect();
    let checksums = db::object_checksums(pool, &objects).await.unwrap_or_default();
    let missing_signatures = db::missing_functions(pool, &CONTRACT_SIGNATURES)
        .await
        .unwrap_or_else(|e| vec![format!("(could not check: {e})")]);
    ReadBack {
        checksums,
        missing_signatures,
        probe: probe_idempotency(pool).await,
        verify: verify_current(pool).await,
        ledger_violations: db::ledger_audit_full(pool).await.map(|v| v.len() as u64).map_err(|e| e.to_string()),
    }
}

/// One idempotency key sent twice to the execution path, undone.
pub async fn probe_idempotency(pool: &Db) -> std::result::Result<IdempotencyProbe, String> {
    match db::release_probe_idempotency(pool).await.map_err(|e| e.to_string()) {
        Ok(v) => match answer::<IdempotencyProbe>(v, "release_probe_idempotency") {
            Ok(Answer::Done(p)) => Ok(p),
            Ok(Answer::Refused(r)) => Err(r.message),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e),
    }
}

/// The current release's verify script, undone: Ok when it passes (or there is none).
pub async fn verify_current(pool: &Db) -> std::result::Result<(), String> {
    let v = db::release_verify_current(pool).await.map_err(|e| e.to_string())?;
    match v.get("verified").and_then(Value::as_bool) {
        Some(true) => Ok(()),
        _ if v.get("release").is_some_and(Value::is_null) => Ok(()),
        _ => {
            Err(crate::core::sanitize::line(v.get("message").and_then(Value::as_str).unwrap_or("failed")).into_owned())
        }
    }
}

/// The releases in effect checked against what they recorded, and the current one's verify.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// The current release (none deployed: None).
    pub current: Option<String>,
    /// Objects changed since their release was deployed.
    pub drift: Vec<Drift>,
    /// Objects checked.
    pub objects: usize,
    /// The current release's verify script: None when it passed.
    pub verify_failed: Option<String>,
}

impl Verification {
    /// No drift and the verify script passed.
    pub fn passed(&self) -> bool {
        self.drift.is_empty() && self.verify_failed.is_none()
    }
}

/// Checks every object of the releases in effect and runs the current one's verify.
pub async fn verify(pool: &Db) -> Result<Verification> {
    let rows = db::release_drift(pool).await?;
    let all: Vec<Value> = rows.as_array().cloned().unwrap_or_default();
    let drift = all
        .iter()
        .filter(|x| x.get("ok").and_then(Value::as_bool) != Some(true))
        .map(|x| serde_json::from_value::<Drift>(x.clone()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::UnexpectedAnswer { what: "release_drift".into(), detail: e.to_string() })?;
    let current = db::releases(pool).await?.into_iter().rev().find(|r| r.active()).map(|r| r.name);
    Ok(Verification { current, drift, objects: all.len(), verify_failed: verify_current(pool).await.err() })
}

/// Archived values back into `name`, deployed again.
pub async fn restore(pool: &Db, name: &str) -> Result<Answer<RestoreDone>> {
    answer(db::release_restore(pool, name).await?, "release_restore")
}

/// What a restore put back.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RestoreDone {
    /// The release.
    pub release: String,
    /// Each archive set put back.
    pub restored: Vec<Restored>,
}

/// The history: every deployment, oldest first.
pub async fn list(pool: &Db) -> Result<Vec<ReleaseRow>> {
    db::releases(pool).await
}

/// The latest deployment named `name` and the objects it changed.
pub async fn show(pool: &Db, name: &str) -> Result<(ReleaseRow, Vec<ObjectChange>)> {
    let row = latest(&db::releases(pool).await?, name)?;
    let objects = db::release_objects(pool, row.id).await?;
    Ok((row, objects))
}

fn latest(rows: &[ReleaseRow], name: &str) -> Result<ReleaseRow> {
    rows.iter()
        .rev()
        .find(|r| r.name == name)
        .cloned()
        .ok_or_else(|| Error::BadInput(format!("no release is named {}", crate::core::sanitize::line(name))))
}

/// One object that differs between two releases.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectDiff {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub identity: String,
    /// Its definition at the first release (None: absent).
    pub from: Option<String>,
    /// Its definition at the second.
    pub to: Option<String>,
    /// A line diff of the two.
    pub diff: String,
}

/// The objects that differ between the states releases `a` and `b` left (each its latest
/// deployment): from the changes of the deployments between them.
pub async fn diff(pool: &Db, a: &str, b: &str) -> Result<Vec<ObjectDiff>> {
    let rows = db::releases(pool).await?;
    let (ra, rb) = (latest(&rows, a)?, latest(&rows, b)?);
    let (lo, hi, forward) = if ra.id <= rb.id { (ra.id, rb.id, true) } else { (rb.id, ra.id, false) };
    let mut changes: Vec<(i64, ObjectChange)> = Vec::new();
    for r in rows.iter().filter(|r| r.id > lo && r.id <= hi) {
        for o in db::release_objects(pool, r.id).await? {
            changes.push((r.id, o));
        }
    }
    let mut keys: Vec<(String, String)> = changes.iter().map(|(_, o)| (o.kind.clone(), o.identity.clone())).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for (kind, identity) in keys {
        let of: Vec<&ObjectChange> =
            changes.iter().filter(|(_, o)| o.kind == kind && o.identity == identity).map(|(_, o)| o).collect();
        let (Some(first), Some(last)) = (of.first(), of.last()) else { continue };
        let (old, new) = (first.before_def.clone(), last.after_def.clone());
        if old == new {
            continue;
        }
        let (from, to) = if forward { (old, new) } else { (new, old) };
        let text = diff_text(from.as_deref().unwrap_or(""), to.as_deref().unwrap_or(""));
        out.push(ObjectDiff { kind, identity, from, to, diff: text });
    }
    Ok(out)
}
