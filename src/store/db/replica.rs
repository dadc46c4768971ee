//! Where a hot standby stands against its primary (`core::replica` decides what that means).
//! WAL positions are read as bytes since 0/0 (`pg_wal_lsn_diff(…, '0/0')`), so the two
//! servers' positions compare as numbers. Every function here is one statement that any
//! login may run: the system identifier is read only where the login may
//! (`has_function_privilege`), never as an error.

use sqlx::{Executor, Postgres};

use crate::core::error::Result;
use crate::core::replica::{PrimaryPosition, StandbyPosition};

/// The primary's WAL position (`pg_current_wal_lsn()`) and system identifier.
pub async fn primary_position<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<PrimaryPosition> {
    let (lsn, system_id): (i64, Option<i64>) = sqlx::query_as(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, \
                CASE WHEN has_function_privilege('pg_control_system()', 'execute') \
                     THEN (SELECT system_identifier FROM pg_control_system()) END",
    )
    .fetch_one(e)
    .await?;
    Ok(PrimaryPosition { lsn: lsn.max(0) as u64, system_id })
}

/// The standby's replay position, whether replay is paused, how old its last replayed
/// commit is by its own clock, and the system identifier it was copied from. On a server
/// not in recovery, only `in_recovery` (false) and the identifier.
pub async fn standby_position<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<StandbyPosition> {
    let (in_recovery, replay, paused, age_ms, system_id): (bool, Option<i64>, Option<bool>, Option<i64>, Option<i64>) =
        sqlx::query_as(
            "SELECT pg_is_in_recovery(), \
                    pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, \
                    CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END, \
                    (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint, \
                    CASE WHEN has_function_privilege('pg_control_system()', 'execute') \
                         THEN (SELECT system_identifier FROM pg_control_system()) END",
        )
        .fetch_one(e)
        .await?;
    Ok(StandbyPosition {
        in_recovery,
        replay_lsn: replay.filter(|_| in_recovery).map(|r| r.max(0) as u64),
        replay_paused: paused.unwrap_or(false),
        last_replay_age_ms: age_ms,
        system_id,
    })
}
