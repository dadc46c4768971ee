//! The incident's times: when the impact began, when it was detected, mitigated and
//! resolved, each set by the commander or taken from what the console observed, and the
//! close step that ends the incident's timers. Pure: checked against a clock passed in.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// How far a time may lie ahead of the clock (two machines' clocks disagree a little).
pub const CLOCK_SKEW: Duration = Duration::minutes(2);

/// One of the incident's times, in the order they must come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeKind {
    /// When customers were first affected (the first bad execution, say).
    ImpactBegan,
    /// When someone noticed; the incident's opening when not set.
    Detected,
    /// When the harm stopped spreading (maintenance on, the burst stopped).
    Mitigated,
    /// When service was restored; set by closing the incident when not set before.
    Resolved,
}

impl TimeKind {
    /// Every time, in order.
    pub const ALL: [TimeKind; 4] = [TimeKind::ImpactBegan, TimeKind::Detected, TimeKind::Mitigated, TimeKind::Resolved];

    /// The name in files and commands.
    pub fn key(self) -> &'static str {
        match self {
            TimeKind::ImpactBegan => "impact_began",
            TimeKind::Detected => "detected",
            TimeKind::Mitigated => "mitigated",
            TimeKind::Resolved => "resolved",
        }
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            TimeKind::ImpactBegan => "impact began",
            TimeKind::Detected => "detected",
            TimeKind::Mitigated => "mitigated",
            TimeKind::Resolved => "resolved",
        }
    }

    /// Parses "impact_began", "impact-began", "Impact began".
    pub fn parse(s: &str) -> Option<TimeKind> {
        let k = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        TimeKind::ALL.into_iter().find(|t| t.key() == k)
    }
}

/// A time a person typed: RFC 3339, "YYYY-MM-DD HH:MM[:SS]" (UTC), or a time of day
/// ("13:02") on `now`'s date (UTC).
pub fn parse_at(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, crate::core::orders::ParseError> {
    use crate::core::orders::{ParseError, TimeBound, parse_time_bound};
    match parse_time_bound(s).map_err(|_| ParseError::TimeOrTimeToday)? {
        TimeBound::At(t) => Ok(t),
        TimeBound::TimeOfDay(t) => Ok(now.date_naive().and_time(t).and_utc()),
    }
}

/// One time as the journal set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeMark {
    /// The time itself.
    pub at: DateTime<Utc>,
    /// "commander", or "observed: <what>".
    pub source: String,
    /// Who set it.
    pub by: String,
    /// When it was written.
    pub recorded_at: DateTime<Utc>,
}

/// The times set so far (the latest of each wins: a correction is a new entry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Times {
    pub impact_began: Option<TimeMark>,
    pub detected: Option<TimeMark>,
    pub mitigated: Option<TimeMark>,
    pub resolved: Option<TimeMark>,
}

impl Times {
    /// The time of this kind, if set.
    pub fn get(&self, which: TimeKind) -> Option<&TimeMark> {
        match which {
            TimeKind::ImpactBegan => self.impact_began.as_ref(),
            TimeKind::Detected => self.detected.as_ref(),
            TimeKind::Mitigated => self.mitigated.as_ref(),
            TimeKind::Resolved => self.resolved.as_ref(),
        }
    }

    pub(super) fn set(&mut self, which: TimeKind, mark: TimeMark) {
        let slot = match which {
            TimeKind::ImpactBegan => &mut self.impact_began,
            TimeKind::Detected => &mut self.detected,
            TimeKind::Mitigated => &mut self.mitigated,
            TimeKind::Resolved => &mut self.resolved,
        };
        *slot = Some(mark);
    }

    /// Whether `at` may be the time `which`: not ahead of `now` by more than
    /// [`CLOCK_SKEW`], and in order with the other times set (impact began ≤ detected ≤
    /// mitigated ≤ resolved). The error says which time it collides with.
    pub fn check(&self, which: TimeKind, at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), TimeRefusal> {
        if at > now + CLOCK_SKEW {
            return Err(TimeRefusal::InTheFuture { which, at, now });
        }
        for other in TimeKind::ALL {
            let Some(mark) = self.get(other) else { continue };
            if (other < which && mark.at > at) || (other > which && mark.at < at) {
                return Err(TimeRefusal::OutOfOrder { which, at, other, other_at: mark.at });
            }
        }
        Ok(())
    }
}

/// Why a time is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeRefusal {
    /// Later than now (beyond the clock skew allowed).
    #[error(
        "{} {} is in the future (now {}); give the date too: \"YYYY-MM-DD HH:MM\" (UTC)",
        .which.label(), fmt(*.at), fmt(*.now)
    )]
    InTheFuture {
        /// Which time.
        which: TimeKind,
        /// The time given.
        at: DateTime<Utc>,
        /// The clock.
        now: DateTime<Utc>,
    },
    /// Out of order with a time set before.
    #[error(
        "{} {} is {} {} {}: the times go impact began, detected, mitigated, resolved",
        .which.label(), fmt(*.at), if .other < .which { "before" } else { "after" }, .other.label(), fmt(*.other_at)
    )]
    OutOfOrder {
        /// Which time.
        which: TimeKind,
        /// The time given.
        at: DateTime<Utc>,
        /// The time it collides with.
        other: TimeKind,
        /// That time.
        other_at: DateTime<Utc>,
    },
}

fn fmt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The incident closed: the update timers stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub by: String,
    /// Why.
    pub reason: String,
}
