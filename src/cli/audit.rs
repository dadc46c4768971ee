//! `audit [--full]`: the ledger invariants over the whole book.

use serde_json::json;

use super::args::GlobalArgs;
use super::connect;
use super::output::{self, print_json};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Result};
use crate::core::workflow::incident::Observation;
use crate::ops::replica;
use crate::store::connect::ConnectSettings;
use crate::store::db::{self, Db};

pub(super) async fn audit(g: &GlobalArgs, full: bool) -> Result<i32> {
    let (settings, pool) = connect(g).await?;
    // The full audit reads the whole book: on a standby when one is given and has replayed
    // what the primary had when the command started (so it sees every earlier commit).
    let standby = if full { standby_for(g, &settings, &pool).await? } else { None };
    let started = std::time::Instant::now();
    let v = match &standby {
        Some(s) => db::ledger_audit_full(s).await?,
        None if full => db::ledger_audit_full(&pool).await?,
        None => db::ledger_audit(&pool).await?,
    };
    let elapsed_ms = started.elapsed().as_millis();
    let read_from = if standby.is_some() { "standby" } else { "primary" };
    if let Some(s) = standby {
        s.close().await;
    }
    super::observe(g, vec![Observation::Audit { violations: v.len() as u64 }], Some(&pool)).await;
    // A clean book gets a new checkpoint, so the next audit costs only what changes until
    // then. Viewers may not take one, nor a session behind a transaction pooler (it holds
    // a snapshot across statements); that only makes their next audit slower.
    // Audited on the standby, the checkpoint (taken on the primary, at its own snapshot) is
    // built from the previous one: a full one would read the whole book on the primary
    // again, which is what the standby was for.
    let checkpoint_full = full && read_from == "primary";
    let checkpoint = if let (true, Ok(session)) = (v.is_empty(), pool.session_pool("a checkpoint")) {
        match db::refresh_audit_checkpoint(session, checkpoint_full).await {
            Ok(c) => Some(c),
            Err(e) if e.sqlstate() == Some(db::INSUFFICIENT_PRIVILEGE) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    if g.json {
        print_json(&json!({ "violations": v, "elapsed_ms": elapsed_ms, "full": full, "checkpoint": checkpoint,
                            "read_from": read_from }))?;
    } else {
        print!("{}", output::violations(&v, true));
        println!(
            "Audited {} in {elapsed_ms} ms{}.",
            match (full, read_from) {
                (true, "standby") => "from the tables alone, on the standby",
                (true, _) => "from the tables alone",
                _ => "from the last checkpoint",
            },
            checkpoint.map_or(String::new(), |c| format!("; checkpoint {} recorded", c.checkpoint_id))
        );
    }
    Ok(if v.is_empty() { EXIT_OK } else { EXIT_CHECK_FAILED })
}

/// The standby for a full audit: `--replica-url`, else `replica_url` in config.toml; None
/// (and why, on stderr) when there is none or it cannot be used now: the primary then
/// audits, as without one.
async fn standby_for(g: &GlobalArgs, settings: &ConnectSettings, pool: &Db) -> Result<Option<Db>> {
    let (file_url, file_lag) = match g.replica_url() {
        // The file is not read when the flag says it all.
        Some(_) if g.replica_max_lag.is_some() => (None, None),
        // A config file that does not parse stops nothing here: the audit runs on the primary.
        _ => crate::store::config::replica_from_file().unwrap_or_else(|e| {
            super::say(&format!("replica_url not read: {e}"));
            (None, None)
        }),
    };
    let url = match g.replica_url() {
        Some(u) => u.to_string(),
        None => match file_url {
            Some(u) => u.expose().to_string(),
            None => return Ok(None),
        },
    };
    let max_lag = g.replica_max_lag.or(file_lag).unwrap_or(crate::store::config::DEFAULT_REPLICA_MAX_LAG);
    let standby = replica::standby_settings(settings, &url);
    match replica::fresh_standby(pool, &standby, max_lag).await {
        Ok(s) => Ok(Some(s)),
        Err(f) => {
            super::say(&format!("Not auditing on the standby: {}; auditing on the primary.", replica::describe(&f)));
            Ok(None)
        }
    }
}
