//! `audit [--full]`: the ledger invariants over the whole book.

use serde_json::json;

use super::args::GlobalArgs;
use super::connect;
use super::output::{self, print_json};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Result};
use crate::core::workflow::incident::Observation;
use crate::store::db;

pub(super) async fn audit(g: &GlobalArgs, full: bool) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let started = std::time::Instant::now();
    let v = if full { db::ledger_audit_full(&pool).await? } else { db::ledger_audit(&pool).await? };
    let elapsed_ms = started.elapsed().as_millis();
    super::observe(g, vec![Observation::Audit { violations: v.len() as u64 }], Some(&pool)).await;
    // A clean book gets a new checkpoint, so the next audit costs only what changes until
    // then. Viewers may not take one, nor a session behind a transaction pooler (it holds
    // a snapshot across statements); that only makes their next audit slower.
    let checkpoint = if let (true, Ok(session)) = (v.is_empty(), pool.session_pool("a checkpoint")) {
        match db::refresh_audit_checkpoint(session, full).await {
            Ok(c) => Some(c),
            Err(e) if e.sqlstate() == Some(db::INSUFFICIENT_PRIVILEGE) => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    if g.json {
        print_json(&json!({ "violations": v, "elapsed_ms": elapsed_ms, "full": full, "checkpoint": checkpoint }))?;
    } else {
        print!("{}", output::violations(&v, true));
        println!(
            "Audited {} in {elapsed_ms} ms{}.",
            if full { "from the tables alone" } else { "from the last checkpoint" },
            checkpoint.map_or(String::new(), |c| format!("; checkpoint {} recorded", c.checkpoint_id))
        );
    }
    Ok(if v.is_empty() { EXIT_OK } else { EXIT_CHECK_FAILED })
}
