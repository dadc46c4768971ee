//! Write-ahead journaling of the actions that move money. A rollback or a batch is first
//! recorded as intended in the current incident's journal (appended and synced to disk) and
//! runs only if that worked; its outcome follows with the same operation id. When the
//! commander decides to act without the journal (`--no-journal`), the waiver is written to
//! the database's audit log before the action instead. Either way an action never moves
//! money unrecorded: an unwritable journal refuses it, with the reason.

use chrono::Utc;
use uuid::Uuid;

use crate::core::error::{Error, Result};
use crate::core::workflow::incident::{Observation, Step};
use crate::store::config::checklist;
use crate::store::db::{self, Db};
use crate::store::incidents::IncidentStore;

/// Where an action's intent went, so its outcome goes to the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// There is no current incident: nothing to journal (the CLI outside an incident).
    NoIncident,
    /// In this incident's journal.
    Journal {
        /// The incident's id.
        incident: String,
    },
    /// In the audit log as a waiver: the commander acts without the journal.
    Waived,
}

/// Appends `observations` (what led to the action, then its intent, last) to the current
/// incident's journal, each synced to disk, then copies them to the database when it can.
/// `Ok(NoIncident)` when there is no current incident; an error
/// ([`Error::NotJournaled`]) when there is one, or none can be told, and its journal cannot
/// be written: the action must not run.
pub async fn intend(op: &str, observations: Vec<Observation>, pool: Option<&Db>) -> Result<Recorded> {
    let not_journaled = |journal: String| move |e: Error| Error::NotJournaled { journal, source: Box::new(e) };
    let store = IncidentStore::open_default().map_err(not_journaled("the incidents directory".into()))?;
    // A `current` file that cannot be read may name an incident: refused, not guessed.
    let Some(id) = store.current_id().map_err(not_journaled("the incidents directory".into()))? else {
        return Ok(Recorded::NoIncident);
    };
    let journal = format!("the journal of incident {id}");
    let inc = (|| -> Result<crate::store::incidents::OpenIncident> {
        let mut inc = store.open(&id, checklist()?)?;
        let now = Utc::now();
        for o in observations {
            inc.act(Step::Observe(o), op, now)?;
        }
        Ok(inc)
    })()
    .map_err(not_journaled(journal))?;
    if let Some(pool) = pool
        && let Err(e) = crate::ops::incident::copy_journal(pool, &inc).await
    {
        // The file is the record; the copy catches up with the next entry.
        eprintln!("note: the journal of {id} was not copied to the database: {e}");
    }
    Ok(Recorded::Journal { incident: id })
}

/// Appends the outcome of an action to the journal its intent went to (nothing when there
/// was none), then copies it to the database when it can. An error means the money may
/// have moved while the journal shows only the intent: the caller must say so loudly.
pub async fn record_outcome(
    op: &str,
    recorded: &Recorded,
    observations: Vec<Observation>,
    pool: Option<&Db>,
) -> Result<()> {
    let Recorded::Journal { incident } = recorded else { return Ok(()) };
    // The intent's incident, even if another was made current meanwhile.
    let store = IncidentStore::open_default()?;
    let mut inc = store.open(incident, checklist()?)?;
    let now = Utc::now();
    for o in observations {
        inc.act(Step::Observe(o), op, now)?;
    }
    if let Some(pool) = pool
        && let Err(e) = crate::ops::incident::copy_journal(pool, &inc).await
    {
        eprintln!("note: the journal of {incident} was not copied to the database: {e}");
    }
    Ok(())
}

/// Records in the audit log, before the action runs, that the commander acts without the
/// journal: one `journal_waived` row per order (`orders` as order and user), attributed to
/// the session's operator and login, under `operation` with the reason. Returns the rows
/// written; an error means the action must not run.
pub async fn waive(pool: &Db, operation: Uuid, mode: &str, orders: &[(Uuid, Uuid)], reason: &str) -> Result<u64> {
    db::record_journal_waiver(pool, operation, orders, mode, reason).await
}

/// Settles the rollbacks of the intent's incident whose journal figures may fall short of
/// the truth — not complete (unknown outcomes, lost replies, interrupted, refused), or
/// intended with no outcome — against their audit rows, and journals the figures that
/// differ (`rollback_settled`), so the report's totals converge on the database's. Returns
/// how many were settled.
pub async fn settle(op: &str, recorded: &Recorded, pool: &Db) -> Result<u64> {
    let Recorded::Journal { incident } = recorded else { return Ok(0) };
    let store = IncidentStore::open_default()?;
    let mut inc = store.open(incident, checklist()?)?;
    let i = &inc.incident;
    let mut operations: Vec<Uuid> = i
        .records_of::<crate::core::journal::event::Rollback>()
        .filter(|(_, r)| !r.success)
        .filter_map(|(_, r)| r.operation)
        .chain(i.intents_without_outcome().map(|(_, intent)| intent.operation))
        .collect();
    operations.sort();
    operations.dedup();
    if operations.is_empty() {
        return Ok(0);
    }
    let mut settled = Vec::new();
    for (operation, orders, refunded) in db::operation_totals(pool, &operations).await? {
        let orders = u64::try_from(orders).unwrap_or_default();
        let journal = i.operation_figures(operation);
        let same = journal
            .as_ref()
            .is_some_and(|(o, r)| *o == orders && r.parse::<rust_decimal::Decimal>().is_ok_and(|r| r == refunded));
        if same {
            continue;
        }
        let was = match journal {
            Some((o, r)) => format!("{o} order(s), refunded {r}"),
            None => "no outcome".into(),
        };
        settled.push(Observation::RollbackSettled {
            operation,
            orders,
            refunded: refunded.normalize().to_string(),
            was,
        });
    }
    let n = settled.len() as u64;
    let now = Utc::now();
    for o in settled {
        inc.act(Step::Observe(o), op, now)?;
    }
    if n > 0 {
        let _ = crate::ops::incident::copy_journal(pool, &inc).await;
    }
    Ok(n)
}
