//! The incident use cases both front ends share: open it, record what the database showed
//! (in the journal, then copied to the database), keep the database's copy honest, and
//! write the post-incident report.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::core::comms::MessageContext;
use crate::core::comms::{self};
use crate::core::error::{Error, Result};
use crate::core::journal::{Entry, Verification};
use crate::core::report::context_of;
use crate::core::sanitize::line;
use crate::core::workflow::incident::{Observation, Step};
use crate::store::config::{checklist, templates};
use crate::store::incidents::{IncidentStore, OpenIncident};
use crate::store::{db, files};

pub fn open(id: Option<&str>) -> Result<OpenIncident> {
    let store = IncidentStore::open_default()?;
    let checklist = checklist()?;
    match id {
        Some(id) => store.open(id, checklist),
        None => store.open_current(checklist)?.ok_or_else(|| {
            Error::BadInput("no current incident: start one with `incident new --title TITLE --level N`".into())
        }),
    }
}

/// Records what a database command observed in the current incident, if there is one.
/// Best effort: a journal that cannot be written is said on stderr, and the command's
/// own result stands. Copies the new entries to the database when a pool is at hand.
pub async fn observe(op: &str, observations: Vec<Observation>, pool: Option<&db::Db>) {
    let result = (|| -> Result<Option<OpenIncident>> {
        let store = IncidentStore::open_default()?;
        let Some(mut inc) = store.open_current(checklist()?)? else { return Ok(None) };
        let now = Utc::now();
        for o in observations {
            inc.act(Step::Observe(o), op, now)?;
        }
        Ok(Some(inc))
    })();
    match result {
        Ok(Some(inc)) => {
            if let Some(pool) = pool
                && let Err(e) = copy_journal(pool, &inc).await
            {
                eprintln!("note: the journal of {} was not copied to the database: {e}", inc.incident.id);
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("warning: not recorded in the incident's journal: {e}"),
    }
}

/// Copies the journal entries the database does not have yet to `incident_events`.
pub async fn copy_journal(pool: &db::Db, inc: &OpenIncident) -> Result<i64> {
    copy_new_entries(pool, &inc.incident.id, inc.entries()?).await
}

/// Copies the entries past the database's highest `seq` of the incident; returns how many.
/// A journal that no longer holds the database's last entry as it was (lines deleted from
/// its end, perhaps written anew) is refused: the copy shows what the file lost.
pub async fn copy_new_entries(pool: &db::Db, incident: &str, entries: Vec<Entry>) -> Result<i64> {
    Ok(sync_entries(pool, incident, entries).await?.inserted)
}

/// What a copy of the journal left in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Entries this copy inserted.
    pub inserted: i64,
    /// The database's copy holds every entry up to this `seq` (0: none): what a screen may
    /// call copied.
    pub through: i64,
}

/// [`copy_new_entries`], saying also how far the database's copy now reaches. The
/// database only takes an entry that chains onto the one before it, so a copy that holds
/// entry `n` holds every entry before it.
pub async fn sync_entries(pool: &db::Db, incident: &str, entries: Vec<Entry>) -> Result<Copied> {
    let have = db::incident_events_max_seq(pool, incident).await?;
    if have > 0 {
        // The copy's last entry is enough to see a tail deleted or written anew.
        let copied = db::incident_event_hashes(pool, incident, have).await?;
        if let Some(problem) = compare_with_copy(&entries, &copied) {
            return Err(Error::CheckFailed(format!(
                "the journal of {} disagrees with its database copy: {problem}",
                line(incident)
            )));
        }
    }
    let entries: Vec<Entry> = entries.into_iter().filter(|e| e.seq as i64 > have).collect();
    let mut copied = 0;
    for chunk in entries.chunks(500) {
        copied += db::copy_incident_events(pool, incident, chunk).await?;
    }
    let through = entries.last().map_or(have, |e| (e.seq as i64).max(have));
    Ok(Copied { inserted: copied, through })
}

/// Where the journal and its database copy part, if they do: an entry whose hash differs,
/// or entries the copy holds past the journal's end.
pub fn compare_with_copy(entries: &[Entry], copied: &[(i64, String)]) -> Option<String> {
    let mine: std::collections::HashMap<i64, &str> = entries.iter().map(|e| (e.seq as i64, e.hash.as_str())).collect();
    if let Some((seq, _)) = copied.iter().find(|(seq, hash)| mine.get(seq).is_some_and(|h| h != hash)) {
        return Some(format!("entry {seq} differs from the copy (the journal was changed after it was copied)"));
    }
    let missing: Vec<i64> = copied.iter().map(|(seq, _)| *seq).filter(|seq| !mine.contains_key(seq)).collect();
    match (missing.first(), missing.last()) {
        (Some(first), Some(last)) => Some(format!(
            "the copy holds entr{} {first}{} that the journal no longer has (lines deleted)",
            if missing.len() == 1 { "y" } else { "ies" },
            if first == last { String::new() } else { format!(" to {last}") }
        )),
        _ => None,
    }
}

/// Fills the post-incident report from the journal and writes it; returns its path.
pub fn write_report(inc: &mut OpenIncident, out: Option<PathBuf>, op: &str, now: DateTime<Utc>) -> Result<PathBuf> {
    let entries = inc.entries()?;
    let verification = inc.verify()?;
    if let Verification::Broken { line: n, reason } = &verification {
        return Err(Error::CheckFailed(format!(
            "the journal is broken at line {n} ({}); no report from it",
            line(reason)
        )));
    }
    let ctx = message_context(inc, &entries, Some(&verification), now);
    let rendered = match templates()?.render_for_copy("post_incident_report", &ctx.to_value(), &[]) {
        Err(comms::CommsError::FieldsMissing { fields, .. }) => {
            return Err(Error::BadInput(format!(
                "the report needs {}: fill them (f in the console's Messages pane, or `incident field NAME TEXT`) or waive them",
                fields.join(", ")
            )));
        }
        other => other?,
    };
    let path = match out {
        Some(p) => {
            std::fs::write(&p, &rendered.text).map_err(|e| Error::file("write", &p, e))?;
            p
        }
        None => files::export(&inc.reports_dir(), "post_incident_report", &rendered.text, now)?,
    };
    let hash = crate::core::journal::sha256_hex(rendered.text.as_bytes());
    inc.act(Step::Observe(Observation::ReportWritten { path: path.display().to_string(), hash }), op, now)?;
    Ok(path)
}

/// When impact began, taken from the burst: the first execution of `symbol` in the window
/// (times of day on the book's latest trading day), and the source to record with it.
/// None when the window holds no execution.
pub async fn first_execution(
    pool: &db::Db,
    symbol: &str,
    from: crate::core::orders::TimeBound,
    to: crate::core::orders::TimeBound,
) -> Result<Option<(DateTime<Utc>, String)>> {
    let symbol = crate::core::orders::parse_symbol(symbol).map_err(|e| Error::BadInput(e.to_string()))?;
    let [Some(from), Some(to)] = db::resolve_time_bounds(pool, [Some(from), Some(to)]).await? else {
        return Ok(None);
    };
    if from >= to {
        return Err(Error::BadInput("the window is empty: --from must be before --to".into()));
    }
    let first = db::first_execution(pool, &symbol, from, to).await?;
    Ok(first.map(|(at, _order)| {
        let source = format!(
            "observed: first {symbol} execution between {} and {}",
            from.format("%Y-%m-%d %H:%M:%S UTC"),
            to.format("%Y-%m-%d %H:%M:%S UTC")
        );
        (at, source)
    }))
}

/// The context of an open incident's messages and report, as of `now`.
pub fn message_context(
    inc: &OpenIncident,
    entries: &[Entry],
    verification: Option<&Verification>,
    now: DateTime<Utc>,
) -> MessageContext {
    context_of(&inc.incident, &inc.checklist, entries, verification, now)
}
