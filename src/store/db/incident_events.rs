//! The database's copy of the incident journals (`incident_events`).

use serde_json::Value;
use sqlx::{Executor, Postgres};

use super::call_json;
use crate::core::error::{Error, Result};

/// The highest journal entry of an incident copied to the database (0: none).
pub async fn incident_events_max_seq<'e, E: Executor<'e, Database = Postgres>>(e: E, incident: &str) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT incident_events_max_seq($1)").bind(incident.to_string()).fetch_one(e).await?)
}

/// The `seq` and `hash` of the journal entries of an incident copied to the database,
/// from `from_seq` on.
pub async fn incident_event_hashes<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    incident: &str,
    from_seq: i64,
) -> Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as("SELECT seq, hash FROM incident_events WHERE incident_id = $1 AND seq >= $2 ORDER BY seq")
        .bind(incident.to_string())
        .bind(from_seq)
        .fetch_all(e)
        .await?)
}

/// Copies journal entries to `incident_events`; returns the number inserted, or an
/// error naming the entries whose hash differs from the copy already there.
pub async fn copy_incident_events<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    incident: &str,
    entries: &[crate::store::journal::Entry],
) -> Result<i64> {
    let payload =
        serde_json::to_value(entries).map_err(|source| Error::Encode { what: "the journal entries", source })?;
    let v = call_json(e, sqlx::query("SELECT record_incident_events($1, $2)").bind(incident.to_string()).bind(payload))
        .await?;
    if v.get("success").and_then(Value::as_bool) != Some(true) {
        return Err(Error::CheckFailed(format!(
            "the database's copy of {} differs at entries {}",
            crate::core::sanitize::line(incident),
            crate::core::sanitize::line(&v.get("conflicts").map(|c| c.to_string()).unwrap_or_default())
        )));
    }
    Ok(v.get("inserted").and_then(Value::as_i64).unwrap_or(0))
}
