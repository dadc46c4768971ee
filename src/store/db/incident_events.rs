//! The database's copy of the incident journals (`incident_events`).

use serde_json::{Value, json};
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
/// error naming the entries whose hash differs from the copy already there, or that the
/// database refused because their line does not hash to their hash.
///
/// Each entry goes with its line, the exact text its hash covers: the database checks
/// the hash against it and stores what the line says, never what a caller claims.
pub async fn copy_incident_events<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    incident: &str,
    entries: &[crate::store::journal::Entry],
) -> Result<i64> {
    let payload = entries
        .iter()
        .map(|entry| Ok(json!({ "seq": entry.seq, "line": entry.hashed_text()?, "hash": entry.hash })))
        .collect::<Result<Vec<Value>>>()?;
    let v = call_json(
        e,
        sqlx::query("SELECT record_incident_events($1, $2)").bind(incident.to_string()).bind(Value::Array(payload)),
    )
    .await?;
    if v.get("success").and_then(Value::as_bool) == Some(true) {
        return Ok(v.get("inserted").and_then(Value::as_i64).unwrap_or(0));
    }
    let incident = crate::core::sanitize::line(incident);
    let listed =
        |key: &str| crate::core::sanitize::line(&v.get(key).map(|c| c.to_string()).unwrap_or_default()).into_owned();
    if v.get("error_code").and_then(Value::as_str) == Some("invalid_entry") {
        // The database names positions in the call (from 1); say which entries they are.
        let seqs: Vec<String> = v
            .get("invalid")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .filter_map(|pos| entries.get((pos as usize).checked_sub(1)?))
            .map(|entry| entry.seq.to_string())
            .collect();
        return Err(Error::CheckFailed(format!(
            "the database refused to copy entries [{}] of {incident}: their text does not hash to their \
             recorded hash (the journal was changed after they were written)",
            seqs.join(",")
        )));
    }
    if v.get("error_code").and_then(Value::as_str) == Some("incident_of_another_login") {
        let owner = v.get("copied_by").and_then(Value::as_str).unwrap_or("another login");
        return Err(Error::CheckFailed(format!(
            "the database's copy of {incident} belongs to login {}, not to this one: nothing was copied \
             (connect as that login, or open a new incident)",
            crate::core::sanitize::line(owner)
        )));
    }
    Err(Error::CheckFailed(format!("the database's copy of {incident} differs at entries {}", listed("conflicts"))))
}
