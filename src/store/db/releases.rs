//! Releases of the execution system (migration 17): deploy, pre-check, roll back, restore,
//! verify, probe, and the history.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Executor, Postgres};
use uuid::Uuid;

use super::{call_json, decode};
use crate::core::error::Result;
use crate::core::release::{ObjectChange, ReleaseRow, ReleaseScripts};

/// `release_deploy(…)`: runs the deploy and verify scripts and records what changed, in
/// one transaction. `deployed_at` registers history after the fact.
pub async fn release_deploy<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    r: &ReleaseScripts,
    deployed_at: Option<DateTime<Utc>>,
) -> Result<Value> {
    call_json(
        e,
        sqlx::query("SELECT release_deploy($1, $2, $3, $4, $5, $6, $7)")
            .bind(r.entry.name.clone())
            .bind(r.entry.description.clone())
            .bind(r.entry.service_version.clone())
            .bind(r.deploy.clone())
            .bind(r.revert.clone())
            .bind(r.verify.clone())
            .bind(deployed_at),
    )
    .await
}

/// `release_revert_precheck(to)`: what a rollback to `to` would do, read only.
pub async fn release_revert_precheck<'e, E: Executor<'e, Database = Postgres>>(e: E, to: &str) -> Result<Value> {
    call_json(e, sqlx::query("SELECT release_revert_precheck($1)").bind(to.to_string())).await
}

/// `release_rollback(to, reason, accept_drift, dry_run, operation)`: one transaction.
pub async fn release_rollback<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    to: &str,
    reason: &str,
    accept_drift: bool,
    dry_run: bool,
    operation: Option<Uuid>,
) -> Result<Value> {
    call_json(
        e,
        sqlx::query("SELECT release_rollback($1, $2, $3, $4, $5)")
            .bind(to.to_string())
            .bind(reason.to_string())
            .bind(accept_drift)
            .bind(dry_run)
            .bind(operation),
    )
    .await
}

/// `release_restore(name)`: archived values back into a release deployed again.
pub async fn release_restore<'e, E: Executor<'e, Database = Postgres>>(e: E, name: &str) -> Result<Value> {
    call_json(e, sqlx::query("SELECT release_restore($1)").bind(name.to_string())).await
}

/// `release_drift()`: every object of the releases in effect against its recorded checksum.
pub async fn release_drift<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Value> {
    call_json(e, sqlx::query("SELECT release_drift()")).await
}

/// `release_verify_current()`: the current release's verify script, undone.
pub async fn release_verify_current<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Value> {
    call_json(e, sqlx::query("SELECT release_verify_current()")).await
}

/// `release_probe_idempotency()`: one key sent twice to the execution path, undone.
pub async fn release_probe_idempotency<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Value> {
    call_json(e, sqlx::query("SELECT release_probe_idempotency()")).await
}

/// The current checksum of each (kind, identity) asked for; None where it does not exist.
pub async fn object_checksums<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    objects: &[(String, String)],
) -> Result<Vec<(String, String, Option<String>)>> {
    let kinds: Vec<String> = objects.iter().map(|o| o.0.clone()).collect();
    let ids: Vec<String> = objects.iter().map(|o| o.1.clone()).collect();
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT w.kind, w.identity, c.checksum
         FROM unnest($1::text[], $2::text[]) AS w (kind, identity)
         LEFT JOIN release_catalog() c ON c.kind = w.kind AND c.identity = w.identity",
    )
    .bind(kinds)
    .bind(ids)
    .fetch_all(e)
    .await?;
    Ok(rows)
}

/// The signatures among `signatures` that do not resolve to a function.
pub async fn missing_functions<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    signatures: &[&str],
) -> Result<Vec<String>> {
    let sigs: Vec<String> = signatures.iter().map(|s| s.to_string()).collect();
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT s FROM unnest($1::text[]) AS s WHERE to_regprocedure(s) IS NULL ORDER BY s")
            .bind(sigs)
            .fetch_all(e)
            .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Every release deployment, oldest first, with its revert if it was rolled back.
pub async fn releases<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Vec<ReleaseRow>> {
    let v = call_json(
        e,
        sqlx::query(
            "SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'id', r.id, 'name', r.name, 'description', r.description, 'service_version', r.service_version,
                    'deployed_at', r.deployed_at, 'deployed_by', r.deployed_by, 'deployed_by_login', r.deployed_by_login,
                    'objects', (SELECT count(*) FROM release_objects o WHERE o.release_id = r.id),
                    'reverted_at', v.reverted_at, 'reverted_by', v.reverted_by, 'revert_reason', v.reason)
                    ORDER BY r.id), '[]')
             FROM releases r LEFT JOIN release_reverts v ON v.release_id = r.id",
        ),
    )
    .await?;
    decode(v, "releases")
}

/// The objects one release deployment changed.
pub async fn release_objects<'e, E: Executor<'e, Database = Postgres>>(e: E, id: i64) -> Result<Vec<ObjectChange>> {
    let v = call_json(
        e,
        sqlx::query(
            "SELECT coalesce(jsonb_agg(jsonb_build_object('kind', kind, 'identity', identity,
                    'before_def', before_def, 'before_sum', before_sum, 'after_def', after_def, 'after_sum', after_sum)
                    ORDER BY kind, identity), '[]')
             FROM release_objects WHERE release_id = $1",
        )
        .bind(id),
    )
    .await?;
    decode(v, "release objects")
}

/// Releases recorded, reverted or not.
pub async fn release_count<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM releases").fetch_one(e).await?)
}

/// When the demo book's bad burst began: its first execution under a key of the faulty
/// deploy's retries (None: no such order).
pub async fn demo_burst_start<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar("SELECT min(executed_at) FROM orders WHERE idempotency_key LIKE 'deploy-4711-%'")
        .fetch_one(e)
        .await?)
}

/// The sandbox's history: the fast path tagged every order it executed since `since`.
pub async fn tag_fast_path_orders<'e, E: Executor<'e, Database = Postgres>>(e: E, since: DateTime<Utc>) -> Result<u64> {
    Ok(sqlx::query("UPDATE orders SET execution_route = 'fast' WHERE executed_at >= $1")
        .bind(since)
        .execute(e)
        .await?
        .rows_affected())
}
