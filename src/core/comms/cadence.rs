//! How often people must be told: the update cadence per level, as the source document sets
//! it. Pure functions of the clock, so the header timer and the tests share one definition.

use chrono::{DateTime, Duration, Utc};

use crate::core::workflow::Level;

/// Level 3: the first customer notice is due this long after the incident started.
pub const FIRST_CUSTOMER_NOTICE_L3: Duration = Duration::minutes(5);

/// How often internal updates are due at this level; `None` means "on change" (Level 1).
pub fn update_interval(level: Level) -> Option<Duration> {
    match level {
        Level::Critical => Some(Duration::minutes(15)),
        Level::Moderate => Some(Duration::minutes(30)),
        Level::Minor => None,
    }
}

/// The interval as words for a message: "every 15 minutes" or "on change".
pub fn update_interval_words(level: Level) -> String {
    match update_interval(level) {
        Some(d) => format!("every {} minutes", d.num_minutes()),
        None => "on change".to_string(),
    }
}

/// When the next internal update is due: one interval after the last one (or after the
/// start when none was sent yet). `None` at Level 1, where updates go out on change.
///
/// A last update stamped after `now` (clock skew between machines) counts as sent now, so
/// the timer never promises more than one interval of quiet. One stamped before the start
/// (a stale entry) counts from the start.
pub fn next_update_due(
    level: Level,
    last_internal_update: Option<DateTime<Utc>>,
    incident_started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let interval = update_interval(level)?;
    let last = last_internal_update.map_or(incident_started, |t| t.max(incident_started));
    Some(last.min(now.max(incident_started)) + interval)
}

/// When the next customer notice is due. Level 3: the first within 5 minutes of the start,
/// then every 15 minutes. Level 2: no deadline for the first (the commander decides whether
/// customers are affected), then every 30 minutes once one was sent. Level 1: `None`.
pub fn customer_notice_due(
    level: Level,
    last_customer_notice: Option<DateTime<Utc>>,
    incident_started: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match (level, last_customer_notice) {
        (Level::Minor, _) => None,
        (Level::Critical, None) => Some(incident_started + FIRST_CUSTOMER_NOTICE_L3),
        (Level::Moderate, None) => None,
        (_, Some(last)) => next_update_due(level, Some(last), incident_started, now),
    }
}

/// Whether a deadline has passed. Exactly at the deadline is not yet overdue.
pub fn is_overdue(due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    due.is_some_and(|d| now > d)
}

/// Time left until the deadline, negative when overdue; `None` without a deadline.
pub fn time_left(due: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Duration> {
    due.map(|d| d - now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0).single().unwrap_or_default()
    }

    #[test]
    fn level3_every_15_minutes_from_the_last_update() {
        let start = t(7, 48);
        assert_eq!(next_update_due(Level::Critical, None, start, t(7, 50)), Some(t(8, 3)));
        assert_eq!(next_update_due(Level::Critical, Some(t(8, 0)), start, t(8, 5)), Some(t(8, 15)));
    }

    #[test]
    fn level2_every_30_minutes() {
        let start = t(7, 48);
        assert_eq!(next_update_due(Level::Moderate, None, start, t(7, 49)), Some(t(8, 18)));
        assert_eq!(next_update_due(Level::Moderate, Some(t(8, 10)), start, t(8, 11)), Some(t(8, 40)));
    }

    #[test]
    fn level1_on_change_has_no_deadline() {
        assert_eq!(next_update_due(Level::Minor, Some(t(8, 0)), t(7, 0), t(9, 0)), None);
        assert_eq!(customer_notice_due(Level::Minor, None, t(7, 0), t(9, 0)), None);
        assert!(!is_overdue(None, t(23, 0)));
        assert_eq!(update_interval_words(Level::Minor), "on change");
        assert_eq!(update_interval_words(Level::Critical), "every 15 minutes");
    }

    #[test]
    fn skewed_or_stale_timestamps_are_clamped() {
        let start = t(8, 0);
        // Stamped in the future: counts as now.
        assert_eq!(next_update_due(Level::Critical, Some(t(9, 0)), start, t(8, 10)), Some(t(8, 25)));
        // Stamped before the incident: counts from the start.
        assert_eq!(next_update_due(Level::Critical, Some(t(7, 0)), start, t(8, 10)), Some(t(8, 15)));
    }

    #[test]
    fn level3_first_customer_notice_within_5_minutes_then_every_15() {
        let start = t(7, 48);
        let due = customer_notice_due(Level::Critical, None, start, t(7, 50));
        assert_eq!(due, Some(t(7, 53)));
        assert!(!is_overdue(due, t(7, 53)));
        assert!(is_overdue(due, t(7, 54)));
        assert_eq!(customer_notice_due(Level::Critical, Some(t(7, 52)), start, t(7, 55)), Some(t(8, 7)));
        assert_eq!(customer_notice_due(Level::Moderate, None, start, t(7, 55)), None);
        assert_eq!(customer_notice_due(Level::Moderate, Some(t(8, 0)), start, t(8, 1)), Some(t(8, 30)));
    }

    #[test]
    fn overdue_after_the_deadline_and_raising_the_level_shortens_it() {
        let start = t(10, 0);
        let last = Some(t(10, 0));
        // Level 2 at 10:20 is fine; raised to Level 3 it is overdue at once.
        let l2 = next_update_due(Level::Moderate, last, start, t(10, 20));
        let l3 = next_update_due(Level::Critical, last, start, t(10, 20));
        assert!(!is_overdue(l2, t(10, 20)));
        assert!(is_overdue(l3, t(10, 20)));
        assert_eq!(time_left(l3, t(10, 20)), Some(Duration::minutes(-5)));
    }
}
