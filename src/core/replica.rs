//! Reads off the primary: how far a hot standby is behind, and whether the reads that
//! decide nothing (the orders list, the dashboard, the blast radius, the full audit) may go
//! to it. Pre-checks, rollbacks, post-checks and everything that writes never read here:
//! they always go to the primary, whatever this module says.
//!
//! How the lag is measured (once a second by the console, once by the CLI):
//!
//! - **Bytes**: the primary's `pg_current_wal_lsn()`, read *first*, minus the standby's
//!   `pg_last_wal_replay_lsn()`, read *after* it. Read in that order, a standby that has
//!   replayed at least that position held, when it was read, everything the primary had
//!   committed when the primary was read: it is caught up (lag 0), and a write that lands
//!   between the two reads cannot make a caught-up standby look behind.
//! - **Seconds, only when behind**: two upper bounds, the smaller wins.
//!   1. `now() - pg_last_xact_replay_timestamp()` on the standby: the first transaction it
//!      lacks committed after the last one it replayed. Alone this is wrong after an idle
//!      spell (the last replayed commit is old, so one new write looks like an hour of lag),
//!      which is why it is never used when the standby is caught up, and why:
//!   2. the age of the newest earlier reading of the primary's position that the standby
//!      has replayed: the standby held all the primary had then, so it is at most that old.
//!      With a reading a second this bounds the lag to about a second after an idle spell.
//!
//! A standby whose lag cannot be bounded (nothing replayed yet, no earlier reading), that
//! is not in recovery (promoted, or the URL names a primary), or that was copied from
//! another cluster is not read: the reads go to the primary, and the header says why.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What the primary says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryPosition {
    /// `pg_current_wal_lsn()`, in bytes since 0/0.
    pub lsn: u64,
    /// The cluster's system identifier (None: this login may not read it).
    pub system_id: Option<i64>,
}

/// What the standby says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyPosition {
    /// `pg_is_in_recovery()`: false on a primary (or a promoted standby).
    pub in_recovery: bool,
    /// `pg_last_wal_replay_lsn()`, in bytes since 0/0 (None: not a standby).
    pub replay_lsn: Option<u64>,
    /// Replay paused (`pg_wal_replay_pause()`).
    pub replay_paused: bool,
    /// The standby's clock minus the commit time of the last transaction it replayed, in
    /// milliseconds (None: none replayed since it started).
    pub last_replay_age_ms: Option<i64>,
    /// The system identifier of the cluster it is a copy of (None: not readable).
    pub system_id: Option<i64>,
}

/// How far the standby is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// WAL bytes the primary has that the standby has not replayed.
    pub bytes: u64,
    /// How old the standby's data may be, in milliseconds (an upper bound; None: unknown).
    pub millis: Option<u64>,
}

/// Earlier readings kept (one a second: an hour).
const KEPT: usize = 3600;

/// The readings of the primary's position so far, to bound the lag after an idle spell.
#[derive(Debug, Default, Clone)]
pub struct LagTracker {
    samples: VecDeque<(Instant, u64)>,
}

impl LagTracker {
    /// A tracker with no readings yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lag of one reading: `primary` read at `at`, then `standby` read after it.
    pub fn observe(&mut self, at: Instant, primary: &PrimaryPosition, standby: &StandbyPosition) -> Lag {
        let Some(replayed) = standby.replay_lsn else {
            return Lag { bytes: 0, millis: None };
        };
        if self.samples.len() == KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back((at, primary.lsn));
        let bytes = primary.lsn.saturating_sub(replayed);
        // The newest reading the standby has replayed; the older ones are no use any more
        // (replay only goes forward).
        let caught = self.samples.iter().rposition(|(_, lsn)| *lsn <= replayed);
        if let Some(i) = caught {
            self.samples.drain(..i);
        }
        if bytes == 0 {
            return Lag { bytes: 0, millis: Some(0) };
        }
        let since_caught = caught.and(self.samples.front()).map(|(t, _)| millis(at.saturating_duration_since(*t)));
        let since_commit = standby.last_replay_age_ms.map(|m| m.max(0) as u64);
        let millis = match (since_caught, since_commit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Lag { bytes, millis }
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// Whether the console reads from the standby, and what its header says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaStatus {
    /// Not measured yet: reads go to the primary meanwhile.
    Checking,
    /// Reads go to the standby.
    InUse {
        /// Its lag in milliseconds, rounded to a tenth of a second.
        lag_ms: u64,
        /// Replay is paused on it (the lag will grow).
        paused: bool,
    },
    /// Reads go to the primary.
    Fallback(Fallback),
}

/// Why the reads went back to the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// The standby (or the primary, for its position) did not answer; what failed, with
    /// no password in it.
    Unreachable(String),
    /// Behind by more than the limit, or by an unknown time.
    Lagging {
        /// The lag, rounded to a tenth of a second (None: unknown).
        lag_ms: Option<u64>,
        /// The limit.
        max_ms: u64,
    },
    /// The replica URL names a server that is not in recovery.
    NotAStandby,
    /// The standby was copied from another cluster than the primary.
    OtherCluster,
}

/// What one reading means: read the standby, or why not.
pub fn decide(primary: &PrimaryPosition, standby: &StandbyPosition, lag: Lag, max_lag: Duration) -> ReplicaStatus {
    if let Some(f) = not_its_standby(primary, standby) {
        return ReplicaStatus::Fallback(f);
    }
    let max_ms = millis(max_lag);
    match lag.millis {
        Some(ms) if ms <= max_ms => ReplicaStatus::InUse { lag_ms: tenths(ms), paused: standby.replay_paused },
        other => ReplicaStatus::Fallback(Fallback::Lagging { lag_ms: other.map(tenths), max_ms }),
    }
}

/// Why `standby` cannot stand in for `primary` whatever its lag: it is not replaying (a
/// primary, or promoted), or it was copied from another cluster.
pub fn not_its_standby(primary: &PrimaryPosition, standby: &StandbyPosition) -> Option<Fallback> {
    if !standby.in_recovery || standby.replay_lsn.is_none() {
        return Some(Fallback::NotAStandby);
    }
    match (primary.system_id, standby.system_id) {
        (Some(a), Some(b)) if a != b => Some(Fallback::OtherCluster),
        _ => None,
    }
}

/// Rounded up to a tenth of a second: a lag is never shown smaller than it may be.
fn tenths(ms: u64) -> u64 {
    ms.div_ceil(100).saturating_mul(100)
}

/// A lag for people: "0.3 s" below ten seconds, "42 s" below two minutes, else minutes.
pub fn lag_text(ms: u64) -> String {
    if ms < 10_000 {
        format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
    } else if ms < 120_000 {
        format!("{} s", ms / 1000)
    } else {
        format!("{} min", ms / 60_000)
    }
}

impl ReplicaStatus {
    /// Whether reads go to the standby now.
    pub fn in_use(&self) -> bool {
        matches!(self, ReplicaStatus::InUse { .. })
    }

    /// What the header says, short: "standby lag 0.3 s", or where the reads went and why.
    pub fn header_text(&self) -> String {
        match self {
            ReplicaStatus::Checking => "standby: measuring lag, reads on primary".into(),
            ReplicaStatus::InUse { lag_ms, paused: false } => format!("standby lag {}", lag_text(*lag_ms)),
            ReplicaStatus::InUse { lag_ms, paused: true } => {
                format!("standby lag {} (replay paused)", lag_text(*lag_ms))
            }
            ReplicaStatus::Fallback(f) => format!("{}: reads on primary", f.reason()),
        }
    }
}

impl Fallback {
    /// Why, in a few words (no error detail).
    pub fn reason(&self) -> String {
        match self {
            Fallback::Unreachable(_) => "STANDBY UNREACHABLE".into(),
            Fallback::Lagging { lag_ms: Some(ms), max_ms } => {
                format!("STANDBY LAG {} > {}", lag_text(*ms), lag_text(*max_ms))
            }
            Fallback::Lagging { lag_ms: None, .. } => "STANDBY LAG UNKNOWN".into(),
            Fallback::NotAStandby => "REPLICA IS NOT A STANDBY".into(),
            Fallback::OtherCluster => "STANDBY OF ANOTHER CLUSTER".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(replay: u64, age_ms: Option<i64>) -> StandbyPosition {
        StandbyPosition {
            in_recovery: true,
            replay_lsn: Some(replay),
            replay_paused: false,
            last_replay_age_ms: age_ms,
            system_id: Some(7),
        }
    }

    fn primary(lsn: u64) -> PrimaryPosition {
        PrimaryPosition { lsn, system_id: Some(7) }
    }

    #[test]
    fn a_caught_up_standby_has_no_lag_however_old_its_last_commit() {
        let mut t = LagTracker::new();
        let now = Instant::now();
        let lag = t.observe(now, &primary(1000), &standby(1000, Some(3_600_000)));
        assert_eq!(lag, Lag { bytes: 0, millis: Some(0) });
        assert!(decide(&primary(1000), &standby(1000, None), lag, Duration::from_secs(5)).in_use());
    }

    #[test]
    fn after_an_idle_spell_one_write_is_bounded_by_the_last_reading_not_the_old_commit() {
        let mut t = LagTracker::new();
        let t0 = Instant::now();
        t.observe(t0, &primary(1000), &standby(1000, Some(3_600_000)));
        // A second later the primary wrote; the standby has not replayed it yet.
        let lag = t.observe(t0 + Duration::from_secs(1), &primary(1200), &standby(1000, Some(3_601_000)));
        assert_eq!(lag, Lag { bytes: 200, millis: Some(1000) });
    }

    #[test]
    fn a_paused_standby_lags_more_every_reading_and_none_once_it_catches_up() {
        let mut t = LagTracker::new();
        let t0 = Instant::now();
        t.observe(t0, &primary(1000), &standby(1000, Some(0)));
        let mut last = 0;
        for s in 1..=6u64 {
            let lag = t.observe(t0 + Duration::from_secs(s), &primary(1000 + s * 100), &standby(1000, Some(60_000)));
            let ms = lag.millis.unwrap_or(0);
            assert!(ms > last, "the lag grows: {ms} after {last}");
            last = ms;
        }
        assert_eq!(last, 6000);
        let status = decide(
            &primary(1600),
            &standby(1000, None),
            Lag { bytes: 600, millis: Some(last) },
            Duration::from_secs(5),
        );
        assert_eq!(status, ReplicaStatus::Fallback(Fallback::Lagging { lag_ms: Some(6000), max_ms: 5000 }));
        assert_eq!(status.header_text(), "STANDBY LAG 6.0 s > 5.0 s: reads on primary");
        let lag = t.observe(t0 + Duration::from_secs(7), &primary(1600), &standby(1600, Some(1)));
        assert_eq!(lag.millis, Some(0));
    }

    #[test]
    fn the_commit_age_bounds_the_lag_when_it_is_the_smaller() {
        let mut t = LagTracker::new();
        let t0 = Instant::now();
        t.observe(t0, &primary(1000), &standby(1000, None));
        let lag = t.observe(t0 + Duration::from_secs(30), &primary(5000), &standby(4000, Some(250)));
        assert_eq!(lag.millis, Some(250));
        // Unknown: nothing replayed, no earlier reading it reached.
        let mut fresh = LagTracker::new();
        let lag = fresh.observe(t0, &primary(5000), &standby(4000, None));
        assert_eq!(lag.millis, None);
        let status = decide(&primary(5000), &standby(4000, None), lag, Duration::from_secs(5));
        assert_eq!(status.header_text(), "STANDBY LAG UNKNOWN: reads on primary");
    }

    #[test]
    fn a_primary_or_a_copy_of_another_cluster_is_not_read() {
        let lag = Lag { bytes: 0, millis: Some(0) };
        let not = StandbyPosition { in_recovery: false, replay_lsn: None, ..standby(0, None) };
        assert_eq!(
            decide(&primary(10), &not, lag, Duration::from_secs(5)),
            ReplicaStatus::Fallback(Fallback::NotAStandby)
        );
        let other = StandbyPosition { system_id: Some(8), ..standby(10, None) };
        assert_eq!(
            decide(&primary(10), &other, lag, Duration::from_secs(5)),
            ReplicaStatus::Fallback(Fallback::OtherCluster)
        );
    }

    #[test]
    fn lags_read_well_and_never_smaller_than_measured() {
        assert_eq!(lag_text(300), "0.3 s");
        assert_eq!(lag_text(42_000), "42 s");
        assert_eq!(lag_text(600_000), "10 min");
        assert_eq!(tenths(201), 300);
        assert_eq!(ReplicaStatus::InUse { lag_ms: 300, paused: false }.header_text(), "standby lag 0.3 s");
    }
}
