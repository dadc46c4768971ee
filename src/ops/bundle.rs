//! An incident's evidence bundle, written: the journal and its verification (against the
//! database's copy too), the reports and messages as written, every rollback, maintenance,
//! audit, release and service entry, the database's audit-log rows of the incident's
//! operations and orders, the ledger audit of its users, the release history, the
//! configuration (secrets redacted), the versions, and the manifest (optionally signed).
//! What the database could not give is said in the bundle, never left out silently.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::core::bundle::{self, MANIFEST};
use crate::core::error::{Error, Result};
use crate::core::journal::event::Event;
use crate::core::journal::{Entry, sha256_hex};
use crate::core::workflow::incident::{Observation, Step};
use crate::ops::incident::compare_with_copy;
use crate::store::db::{self, Db};
use crate::store::incidents::OpenIncident;

/// What was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Written {
    /// The archive.
    pub path: PathBuf,
    /// Files in it (the manifest, its checksum and signature included).
    pub files: usize,
    /// SHA-256 of the manifest.
    pub manifest_sha256: String,
    /// The public key it is signed with.
    pub signed_by: Option<String>,
    /// Why the database's part is missing, if it is.
    pub database_missing: Option<String>,
}

/// The journal's kinds the bundle lists in `events.json`: what was checked, done and proved.
const EVIDENCE_KINDS: [&str; 10] = [
    "precheck",
    "rollback_intended",
    "rollback",
    "rollback_settled",
    "postcheck",
    "maintenance",
    "audit",
    "release_rollback",
    "service_rollback",
    "incident_closed",
];

fn json_file(path: &str, v: &impl Serialize) -> Result<(String, Vec<u8>)> {
    let mut bytes = serde_json::to_vec_pretty(v).map_err(|e| Error::BadInput(format!("{path}: {e}")))?;
    bytes.push(b'\n');
    Ok((path.to_string(), bytes))
}

/// Every file of `dir` (not below it), as `prefix/name`, in name order.
fn files_of(dir: &Path, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let Ok(read) = std::fs::read_dir(dir) else { return Ok(Vec::new()) };
    let mut paths: Vec<PathBuf> = read.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).map_err(|e| Error::file("read", &p, e))?;
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            Ok((format!("{prefix}/{name}"), bytes))
        })
        .collect()
}

/// The operations, orders and users the journal says the incident's rollbacks touched.
fn touched(entries: &[Entry]) -> (Vec<Uuid>, Vec<Uuid>, Vec<Uuid>) {
    let (mut ops, mut orders, mut users) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for e in entries {
        match &e.event {
            Event::RollbackIntended(d) => {
                ops.insert(d.operation);
                orders.extend(d.order);
                users.extend(d.user);
            }
            Event::Rollback(d) => {
                ops.extend(d.operation);
                orders.extend(d.order);
                users.extend(d.user);
                users.extend(d.user_ids.iter().copied());
            }
            Event::RollbackSettled(d) => {
                ops.insert(d.operation);
                users.extend(d.user_ids.iter().copied());
            }
            Event::Precheck(d) => {
                orders.insert(d.order);
                users.insert(d.user);
            }
            _ => {}
        }
    }
    (ops.into_iter().collect(), orders.into_iter().collect(), users.into_iter().collect())
}

/// The database's part: audit rows, ledger audit of the users, releases, versions, and the
/// journal's copy. Err: why it could not be read.
async fn database_part(pool: &Db, inc: &OpenIncident, entries: &[Entry]) -> Result<(Vec<(String, Vec<u8>)>, Value)> {
    let (ops, orders, users) = touched(entries);
    let mut files = vec![json_file("database/audit_log.json", &db::audit_rows_of(pool, &ops, &orders).await?)?];
    let violations = db::ledger_audit_users(pool, &users).await?;
    files.push(json_file(
        "database/ledger_audit.json",
        &json!({ "users": users, "violations": violations, "clean": violations.is_empty() }),
    )?);
    let mut releases = Vec::new();
    for r in db::releases(pool).await? {
        let objects = db::release_objects(pool, r.id).await?;
        releases.push(json!({ "release": r, "objects": objects }));
    }
    files.push(json_file("database/releases.json", &releases)?);
    let copy = db::incident_event_hashes(pool, &inc.incident.id, 1).await?;
    let copy_check = json!({
        "entries": copy.len(),
        "problem": if copy.is_empty() { None } else { compare_with_copy(entries, &copy) },
    });
    let versions = db::server_versions(pool).await?;
    Ok((files, json!({ "database_copy": copy_check, "versions": versions })))
}

/// Writes the evidence bundle of `inc` to `out` (default: the incident's `bundles/`
/// directory), signed with `key` when given, and journals it (`bundle_written`).
#[allow(clippy::too_many_arguments)]
pub async fn write(
    inc: &mut OpenIncident,
    pool: Option<&Db>,
    database: &str,
    config_text: Option<String>,
    out: Option<PathBuf>,
    key: Option<&SigningKey>,
    op: &str,
    now: DateTime<Utc>,
) -> Result<Written> {
    let entries = inc.entries()?;
    let verification = inc.verify()?;
    let journal_path = inc.journal.path().to_path_buf();
    let mut files = vec![(
        "journal.jsonl".to_string(),
        std::fs::read(&journal_path).map_err(|e| Error::file("read", &journal_path, e))?,
    )];
    files.extend(files_of(&inc.reports_dir(), "reports")?);
    files.extend(files_of(&inc.messages_dir(), "messages")?);
    let events: Vec<Value> = entries
        .iter()
        .filter(|e| EVIDENCE_KINDS.contains(&e.event.kind()))
        .map(|e| json!({ "seq": e.seq, "at": e.at, "operator": e.operator, "kind": e.event.kind(), "data": e.event.data() }))
        .collect();
    files.push(json_file("events.json", &events)?);

    let (db_files, db_facts, missing) = match pool {
        Some(pool) => match database_part(pool, inc, &entries).await {
            Ok((f, facts)) => (f, facts, None),
            Err(e) => (Vec::new(), Value::Null, Some(e.to_string())),
        },
        None => (Vec::new(), Value::Null, Some("no database at hand".to_string())),
    };
    files.extend(db_files);
    files.push(json_file(
        "journal-verification.json",
        &json!({ "journal": verification, "database_copy": db_facts.get("database_copy"),
                 "database_missing": missing }),
    )?);
    if let Some(text) = config_text {
        // By its structure, not only its text: a command's `"--password", "…"` and the
        // `[service] redact` literals are secrets the text rules alone let through.
        let redacted = crate::core::service::redact_toml(&text, &[]);
        files.push(("config.toml".to_string(), redacted.into_bytes()));
    }
    let tool = format!("incident-console {}", env!("CARGO_PKG_VERSION"));
    files.push(json_file(
        "versions.json",
        &json!({ "tool": tool, "created_at": now, "database": crate::store::connect::redact_url(database),
                 "server": db_facts.get("versions"), "database_missing": missing }),
    )?);

    let manifest = bundle::manifest(&inc.incident.id, now, &tool, &files);
    let sealed = bundle::seal(&manifest, key).map_err(Error::BadInput)?;
    let manifest_sha256 = sealed.iter().find(|(p, _)| p == MANIFEST).map(|(_, b)| sha256_hex(b)).unwrap_or_default();
    files.extend(sealed);
    // The default name is to the second: a second bundle within it gets `-2`, `-3`, … rather
    // than being refused (an explicit --out that exists is refused by `store::bundle::write`).
    let path = match out {
        Some(p) => p,
        None => {
            let dir = inc.path().join("bundles");
            let stem = format!("{}-{}-evidence", now.format("%Y%m%dT%H%M%SZ"), inc.incident.id);
            (1..10_000)
                .map(|n| dir.join(if n == 1 { format!("{stem}.tar") } else { format!("{stem}-{n}.tar") }))
                .find(|p| p.symlink_metadata().is_err())
                .unwrap_or_else(|| dir.join(format!("{stem}.tar")))
        }
    };
    let prefix = format!("{}-evidence", inc.incident.id);
    crate::store::bundle::write(&path, &prefix, &files)?;
    let signed_by = key.map(bundle::public_key_hex);
    let seen = Observation::BundleWritten {
        path: path.display().to_string(),
        manifest_sha256: manifest_sha256.clone(),
        files: files.len() as u64,
        signed: signed_by.is_some(),
    };
    inc.act(Step::Observe(seen), op, now)?;
    Ok(Written { path, files: files.len(), manifest_sha256, signed_by, database_missing: missing })
}
