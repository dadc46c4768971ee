//! Reads off the primary, for both front ends: connecting to the standby (its errors
//! without the password), one reading of both positions in the order `core::replica`
//! needs (the primary first), and, for a one-shot command, waiting until the standby has
//! replayed everything the primary had when the command started.
//!
//! Only reads that decide nothing come here: the console's orders list, dashboard and blast
//! radius, and `audit --full`. Pre-checks, rollbacks, post-checks and writes never do.

use std::time::{Duration, Instant};

use sqlx::{Executor, Postgres};

use crate::core::error::Result;
use crate::core::replica::{Fallback, PrimaryPosition, StandbyPosition, not_its_standby};
use crate::store::connect::ConnectSettings;
use crate::store::db::{self, Db};

/// How long connecting to the standby may take: past it the reads go to the primary.
pub const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// How long one reading of a position may take.
pub const READ_WITHIN: Duration = Duration::from_millis(800);

/// The standby's settings: the primary's (operator, timeouts, pooling) with its URL.
pub fn standby_settings(primary: &ConnectSettings, url: &str) -> ConnectSettings {
    ConnectSettings { url: url.to_string(), is_sandbox: false, ..primary.clone() }
}

/// A pool on the standby, checked as the primary's is; an error says what failed without
/// the URL or its password.
pub async fn connect(standby: &ConnectSettings, max_connections: u32) -> std::result::Result<Db, Fallback> {
    match tokio::time::timeout(CONNECT_WITHIN, standby.pool(max_connections)).await {
        Ok(Ok(pool)) => Ok(pool),
        Ok(Err(e)) => Err(Fallback::Unreachable(standby.scrub(&e.to_string()))),
        Err(_) => Err(Fallback::Unreachable(format!("no connection within {} s", CONNECT_WITHIN.as_secs()))),
    }
}

/// One reading: the primary's position, then the standby's, each bounded by
/// [`READ_WITHIN`]; with the instant the primary was read.
pub async fn read<'p, 's, P, S>(
    primary: P,
    standby: S,
    standby_settings: &ConnectSettings,
) -> std::result::Result<(Instant, PrimaryPosition, StandbyPosition), Fallback>
where
    P: Executor<'p, Database = Postgres>,
    S: Executor<'s, Database = Postgres>,
{
    let at = Instant::now();
    let p = bounded(db::primary_position(primary), "the primary's position", &|m| m.to_string()).await?;
    let s = bounded(db::standby_position(standby), "the standby's position", &|m| standby_settings.scrub(m)).await?;
    Ok((at, p, s))
}

async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T>>,
    what: &str,
    scrub: &(dyn Fn(&str) -> String + Sync),
) -> std::result::Result<T, Fallback> {
    match tokio::time::timeout(READ_WITHIN, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Fallback::Unreachable(format!("{what}: {}", scrub(&e.to_string())))),
        Err(_) => Err(Fallback::Unreachable(format!("{what}: no answer within {} ms", READ_WITHIN.as_millis()))),
    }
}

/// For a one-shot read (`audit --full`): a pool on the standby once it has replayed all the
/// primary had when this was called, waiting at most `max_lag` for it; else why not (the
/// caller reads the primary instead). A read there then sees every commit made before the
/// command started, as the primary would.
pub async fn fresh_standby(
    primary: &Db,
    standby: &ConnectSettings,
    max_lag: Duration,
) -> std::result::Result<Db, Fallback> {
    let pool = connect(standby, 2).await?;
    let started = Instant::now();
    let p = bounded(db::primary_position(primary), "the primary's position", &|m| m.to_string()).await;
    let result = async {
        let p = p?;
        loop {
            let s = bounded(db::standby_position(&pool), "the standby's position", &|m| standby.scrub(m)).await?;
            if let Some(f) = not_its_standby(&p, &s) {
                return Err(f);
            }
            if s.replay_lsn.is_some_and(|r| r >= p.lsn) {
                return Ok(());
            }
            if started.elapsed() >= max_lag {
                let max_ms = max_lag.as_millis().try_into().unwrap_or(u64::MAX);
                return Err(Fallback::Lagging { lag_ms: None, max_ms });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    .await;
    match result {
        Ok(()) => Ok(pool),
        Err(f) => {
            pool.close().await;
            Err(f)
        }
    }
}

/// What a fallback says to a person on a terminal or in a log: why, and the error's words
/// (already without the password).
pub fn describe(f: &Fallback) -> String {
    match f {
        Fallback::Unreachable(e) => format!("the standby is unreachable ({})", crate::core::sanitize::line(e)),
        Fallback::Lagging { lag_ms: None, max_ms } => format!(
            "the standby did not replay the primary's position within {}",
            crate::core::replica::lag_text(*max_ms)
        ),
        other => other.reason().to_lowercase(),
    }
}
