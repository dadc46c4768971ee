//! An incident's evidence bundle, written: the journal and its verification (against the
//! database's copy too), the reports and messages as written, every rollback, maintenance,
//! audit, release and service entry, the database's audit-log rows of the incident's
//! operations and orders, the ledger audit of its users, the release history, the
//! configuration (secrets redacted), the versions, and the manifest (optionally signed).
//! What the database could not give is said in the bundle, never left out silently.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use serde::Serialize;
use serde_json::{Value, json};

use crate::core::bundle::{self, MANIFEST, Touched, touched};
use crate::core::error::{Error, Result};
use crate::core::journal::sha256_hex;
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
const EVIDENCE_KINDS: [&str; 12] = [
    "approval",
    "breaker",
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

/// What the database gives the bundle: its files (audit rows, ledger audit, releases), the
/// journal's copy there (seq, hash) and the server's versions.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabasePart {
    /// `database/…` files.
    pub files: Vec<(String, Vec<u8>)>,
    /// The journal's copy in `incident_events`.
    pub copy: Vec<(i64, String)>,
    /// `version()` and the migrations applied.
    pub versions: Value,
}

/// Reads the database's part of an incident's bundle: the audit rows of its operations and
/// orders, the ledger audit of its users, the releases, the journal's copy, the versions.
pub async fn gather(pool: &Db, incident: &str, touched: &Touched) -> Result<DatabasePart> {
    let mut files = vec![json_file(
        "database/audit_log.json",
        &db::audit_rows_of(pool, &touched.operations, &touched.orders).await?,
    )?];
    let violations = db::ledger_audit_users(pool, &touched.users).await?;
    files.push(json_file(
        "database/ledger_audit.json",
        &json!({ "users": touched.users, "violations": violations, "clean": violations.is_empty() }),
    )?);
    let mut releases = Vec::new();
    for r in db::releases(pool).await? {
        let objects = db::release_objects(pool, r.id).await?;
        releases.push(json!({ "release": r, "objects": objects }));
    }
    files.push(json_file("database/releases.json", &releases)?);
    // The approvals of the incident's work: the requests (with the scope, the preview, the
    // decision) its rollbacks ran under or its journal names, and their log.
    let ids: Vec<uuid::Uuid> = touched.operations.iter().chain(&touched.approvals).copied().collect();
    let requests = db::approval_requests_of(pool, &ids).await?;
    let request_ids: Vec<uuid::Uuid> = requests.iter().map(|r| r.id).collect();
    let log = db::approval_log_of(pool, &request_ids).await?;
    files.push(json_file("database/approvals.json", &json!({ "requests": requests, "log": log }))?);
    files.push(json_file("database/breaker_log.json", &db::breaker_log(pool).await?)?);
    let copy = db::incident_event_hashes(pool, incident, 1).await?;
    let versions = db::server_versions(pool).await?;
    Ok(DatabasePart { files, copy, versions })
}

/// Writes the evidence bundle of `inc` (see [`write_files`]) with the database's part
/// read from `pool` (none: written without it, and it says so).
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
    let part = match pool {
        Some(pool) => {
            // From the incident as folded, as the console does: the journal is read once, by
            // write_files.
            let t = touched(inc.incident.records.iter().map(|r| &r.event));
            gather(pool, &inc.incident.id, &t).await.map_err(|e| e.to_string())
        }
        None => Err("no database at hand".to_string()),
    };
    write_files(inc, part, database, config_text, out, key, op, now)
}

/// Writes the evidence bundle of `inc` to `out` (default: the incident's `bundles/`
/// directory) with the database's part (or why it is missing), signed with `key` when
/// given, and journals it (`bundle_written`) once the archive is on disk.
#[allow(clippy::too_many_arguments)]
pub fn write_files(
    inc: &mut OpenIncident,
    part: std::result::Result<DatabasePart, String>,
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

    let (copy_check, versions, missing) = match part {
        Ok(p) => {
            files.extend(p.files);
            let problem = if p.copy.is_empty() { None } else { compare_with_copy(&entries, &p.copy) };
            (json!({ "entries": p.copy.len(), "problem": problem }), p.versions, None)
        }
        Err(why) => (Value::Null, Value::Null, Some(why)),
    };
    files.push(json_file(
        "journal-verification.json",
        &json!({ "journal": verification, "database_copy": copy_check, "database_missing": missing }),
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
                 "server": versions, "database_missing": missing }),
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
