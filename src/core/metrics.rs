//! Rollback metrics and the alert conditions of the source document, computed from the
//! audit log's records. Pure: the same records and clock give the same figures.
//!
//! The source's dashboard averaged as `(avg + d) / 2`, turned NaN on one missing
//! duration and reported 100 % success with nothing done. Here the mean is the true mean
//! of the durations that exist, and the success rate is absent when nothing ran.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::core::contract::RollbackRecord;

/// When the alerts fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// This many rollbacks or more within `burst_window` is a burst.
    pub burst_count: u64,
    /// The window of the burst alert.
    pub burst_window: Duration,
    /// A rollback operation (a call, or a whole batch) longer than this is an alert.
    pub long_rollback: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { burst_count: 5, burst_window: Duration::minutes(10), long_rollback: Duration::minutes(30) }
    }
}

/// An alert condition that fired.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "alert", rename_all = "snake_case")]
pub enum Alert {
    /// At least one rollback failed.
    RollbackFailed {
        /// How many.
        count: u64,
    },
    /// The ledger audit or a post-check found an inconsistency.
    DataInconsistency {
        /// Ledger invariant violations.
        violations: u64,
        /// Post-checks that did not match their baseline.
        failed_postchecks: u64,
    },
    /// A rollback operation ran longer than the threshold.
    LongRollback {
        /// The longest, in seconds.
        seconds: i64,
        /// The threshold, in seconds.
        threshold_seconds: i64,
    },
    /// Many rollbacks in a short time.
    RollbackBurst {
        /// Rollbacks in the window.
        count: u64,
        /// The window, in minutes.
        window_minutes: i64,
        /// The count that makes a burst.
        threshold: u64,
    },
}

impl Alert {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Alert::RollbackFailed { count } => format!("{count} rollback(s) failed"),
            Alert::DataInconsistency { violations, failed_postchecks } => {
                format!(
                    "data inconsistency: {violations} ledger violation(s), {failed_postchecks} failed post-check(s)"
                )
            }
            Alert::LongRollback { seconds, threshold_seconds } => {
                format!("a rollback took {}s (threshold {}s)", seconds, threshold_seconds)
            }
            Alert::RollbackBurst { count, window_minutes, .. } => {
                format!("{count} rollbacks in the last {window_minutes} minutes")
            }
        }
    }
}

/// The figures of the dashboard and of `metrics`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    /// Rollback calls and failures counted.
    pub total: u64,
    /// Calls that rolled back.
    pub succeeded: u64,
    /// Failures recorded by clients.
    pub failed: u64,
    /// Orders rolled back by the successful calls.
    pub orders_rolled_back: u64,
    /// Operations the calls belong to: a batch is one, however many orders it has.
    pub operations: u64,
    /// succeeded / total in percent; none when nothing ran.
    pub success_rate_percent: Option<Decimal>,
    /// True mean duration in milliseconds; none without durations.
    pub mean_ms: Option<Decimal>,
    /// 95th percentile (nearest rank) in milliseconds.
    pub p95_ms: Option<Decimal>,
    /// When the last rollback was recorded.
    pub last_rollback: Option<DateTime<Utc>>,
    /// Rollbacks within the burst window before `now`.
    pub recent: u64,
    /// Alerts that fired.
    pub alerts: Vec<Alert>,
    /// The rollbacks within the burst window by operation (a batch's `batch_id`), so that
    /// a burst a known batch accounts for can be told from one that comes from elsewhere.
    #[serde(skip)]
    pub recent_by_operation: BTreeMap<Uuid, u64>,
}

/// A burst that operations someone started on purpose (a batch the commander confirmed)
/// account for: without their rollbacks the window would hold no burst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedBurst {
    /// Rollbacks in the window.
    pub count: u64,
    /// Of them, the expected operations'.
    pub expected: u64,
    /// The window, in minutes.
    pub window_minutes: i64,
    /// The expected operations that rolled back within the window.
    pub operations: Vec<Uuid>,
}

impl Metrics {
    /// The alerts still raised once the rollbacks of the `expected` operations are set
    /// aside, and the burst they account for, if they do. A burst is set aside only when
    /// the other rollbacks alone stay under the threshold: a spike from elsewhere during a
    /// planned batch still alerts.
    pub fn alerts_expecting(&self, expected: &[Uuid]) -> (Vec<&Alert>, Option<ExpectedBurst>) {
        let operations: Vec<Uuid> =
            expected.iter().filter(|o| self.recent_by_operation.get(o).is_some_and(|n| *n > 0)).copied().collect();
        let ours: u64 = operations.iter().filter_map(|o| self.recent_by_operation.get(o)).sum();
        let mut raised = Vec::new();
        let mut accounted = None;
        for alert in &self.alerts {
            match alert {
                Alert::RollbackBurst { count, window_minutes, threshold }
                    if ours > 0 && count.saturating_sub(ours) < *threshold =>
                {
                    accounted = Some(ExpectedBurst {
                        count: *count,
                        expected: ours,
                        window_minutes: *window_minutes,
                        operations: operations.clone(),
                    });
                }
                _ => raised.push(alert),
            }
        }
        (raised, accounted)
    }
}

/// Exact mean of microsecond durations, in microseconds.
pub fn mean_us(durations: &[i64]) -> Option<Decimal> {
    if durations.is_empty() {
        return None;
    }
    let sum: i128 = durations.iter().map(|&d| i128::from(d)).sum();
    let sum = Decimal::from_i128_with_scale(sum, 0);
    Some(sum / Decimal::from(durations.len() as u64))
}

/// Nearest-rank percentile of durations (0 < p <= 100).
pub fn percentile_us(durations: &[i64], p: u32) -> Option<i64> {
    if durations.is_empty() {
        return None;
    }
    let mut sorted = durations.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as u64;
    let rank = (u64::from(p.clamp(1, 100)) * n).div_ceil(100).max(1);
    sorted.get((rank - 1) as usize).copied()
}

fn us_to_ms(us: Decimal) -> Decimal {
    (us / Decimal::from(1000)).round_dp(3)
}

/// Computes the metrics. `violations` is the ledger audit's count, `failed_postchecks`
/// the post-checks that failed in the same period.
pub fn compute(
    records: &[RollbackRecord],
    violations: u64,
    failed_postchecks: u64,
    now: DateTime<Utc>,
    thresholds: &Thresholds,
) -> Metrics {
    let succeeded: Vec<&RollbackRecord> = records.iter().filter(|r| r.success).collect();
    let failed = records.len() as u64 - succeeded.len() as u64;
    let total = records.len() as u64;
    let durations: Vec<i64> = succeeded.iter().filter_map(|r| r.duration_us).collect();
    // Checked: the window and the durations come from a config file and the database.
    let window_start = now.checked_sub_signed(thresholds.burst_window).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let in_window: Vec<&&RollbackRecord> = succeeded.iter().filter(|r| r.at >= window_start && r.at <= now).collect();
    let recent = in_window.len() as u64;
    let mut recent_by_operation = BTreeMap::new();
    for r in &in_window {
        *recent_by_operation.entry(r.operation).or_insert(0u64) += 1;
    }

    // An operation is one call, or a whole batch: from the start of its first call to the
    // end of its last.
    let mut spans: std::collections::HashMap<uuid::Uuid, (DateTime<Utc>, DateTime<Utc>)> = Default::default();
    for r in records {
        let start =
            r.at.checked_sub_signed(Duration::microseconds(r.duration_us.unwrap_or(0)))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let e = spans.entry(r.operation).or_insert((start, r.at));
        e.0 = e.0.min(start);
        e.1 = e.1.max(r.at);
    }
    let longest = spans.values().map(|(s, e)| *e - *s).max();

    let mut alerts = Vec::new();
    if failed > 0 {
        alerts.push(Alert::RollbackFailed { count: failed });
    }
    if violations > 0 || failed_postchecks > 0 {
        alerts.push(Alert::DataInconsistency { violations, failed_postchecks });
    }
    if let Some(longest) = longest.filter(|l| *l > thresholds.long_rollback) {
        alerts.push(Alert::LongRollback {
            seconds: longest.num_seconds(),
            threshold_seconds: thresholds.long_rollback.num_seconds(),
        });
    }
    if recent >= thresholds.burst_count {
        alerts.push(Alert::RollbackBurst {
            count: recent,
            window_minutes: thresholds.burst_window.num_minutes(),
            threshold: thresholds.burst_count,
        });
    }

    Metrics {
        total,
        succeeded: succeeded.len() as u64,
        failed,
        orders_rolled_back: succeeded.iter().map(|r| r.orders.max(0) as u64).sum(),
        operations: spans.len() as u64,
        success_rate_percent: (total > 0)
            .then(|| (Decimal::from(succeeded.len() as u64) * Decimal::from(100) / Decimal::from(total)).round_dp(2)),
        mean_ms: mean_us(&durations).map(us_to_ms),
        p95_ms: percentile_us(&durations, 95).map(|p| us_to_ms(Decimal::from(p))),
        last_rollback: succeeded.iter().map(|r| r.at).max(),
        recent,
        alerts,
        recent_by_operation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(at_s: i64, duration_ms: Option<i64>, success: bool) -> RollbackRecord {
        RollbackRecord {
            at: DateTime::from_timestamp(1_800_000_000 + at_s, 0).unwrap_or_default(),
            duration_us: duration_ms.map(|d| d * 1000),
            success,
            operation: uuid::Uuid::new_v4(),
            orders: 1,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + 3600, 0).unwrap_or_default()
    }

    /// 60 orders in 58 calls of 2 operations: the figures say each, not one for another.
    #[test]
    fn orders_calls_and_operations_are_counted_apart() {
        let (batch, groups) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let mut r: Vec<RollbackRecord> =
            (0..56).map(|_| RollbackRecord { operation: batch, ..record(0, Some(5), true) }).collect();
        r.extend((0..2).map(|_| RollbackRecord { operation: groups, orders: 2, ..record(0, Some(5), true) }));
        let m = compute(&r, 0, 0, now(), &Thresholds::default());
        assert_eq!((m.orders_rolled_back, m.succeeded, m.operations), (60, 58, 2));
    }

    #[test]
    fn the_mean_is_the_mean() {
        // The source's running "(avg + d) / 2" gives 55 here.
        let r: Vec<_> = [10, 10, 10, 100].iter().map(|&d| record(0, Some(d), true)).collect();
        let m = compute(&r, 0, 0, now(), &Thresholds::default());
        assert_eq!(m.mean_ms, Some(Decimal::new(325, 1)));
        assert_eq!(m.p95_ms, Some(Decimal::from(100)));
    }

    #[test]
    fn nothing_ran_means_no_rate_and_no_mean() {
        let m = compute(&[], 0, 0, now(), &Thresholds::default());
        assert_eq!(m.success_rate_percent, None);
        assert_eq!(m.mean_ms, None);
        assert_eq!(m.p95_ms, None);
        assert!(m.alerts.is_empty());
    }

    #[test]
    fn a_missing_duration_does_not_poison_the_mean() {
        let r = vec![record(0, Some(10), true), record(1, None, true), record(2, Some(30), true)];
        let m = compute(&r, 0, 0, now(), &Thresholds::default());
        assert_eq!(m.mean_ms, Some(Decimal::from(20)));
    }

    #[test]
    fn alerts_fire_on_their_conditions() {
        let t = Thresholds::default();
        let mut r: Vec<_> = (0..5).map(|i| record(3600 - 60 * i, Some(5), true)).collect();
        r.push(record(3000, None, false));
        let m = compute(&r, 2, 1, now(), &t);
        assert_eq!(m.success_rate_percent, Some(Decimal::new(8333, 2)));
        assert!(m.alerts.contains(&Alert::RollbackFailed { count: 1 }));
        assert!(m.alerts.contains(&Alert::DataInconsistency { violations: 2, failed_postchecks: 1 }));
        assert!(m.alerts.contains(&Alert::RollbackBurst { count: 5, window_minutes: 10, threshold: 5 }));

        // Four is not a burst; old rollbacks do not count.
        let r: Vec<_> =
            (0..4).map(|i| record(3600 - 60 * i, Some(5), true)).chain([record(0, Some(5), true)]).collect();
        let m = compute(&r, 0, 0, now(), &t);
        assert!(m.alerts.is_empty(), "{:?}", m.alerts);
    }

    #[test]
    fn a_long_batch_is_a_long_rollback() {
        let op = uuid::Uuid::new_v4();
        let mut a = record(0, Some(100), true);
        let mut b = record(31 * 60, Some(100), true);
        a.operation = op;
        b.operation = op;
        let m = compute(&[a, b], 0, 0, now(), &Thresholds::default());
        assert!(m.alerts.iter().any(|x| matches!(x, Alert::LongRollback { .. })), "{:?}", m.alerts);
    }

    #[test]
    fn a_burst_a_planned_batch_accounts_for_is_expected_and_one_from_elsewhere_is_not() {
        let t = Thresholds::default();
        let (batch, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let ours: Vec<RollbackRecord> =
            (0..56).map(|i| RollbackRecord { operation: batch, ..record(3500 + i, Some(5), true) }).collect();
        let m = compute(&ours, 0, 0, now(), &t);
        let (raised, expected) = m.alerts_expecting(&[batch]);
        assert!(raised.is_empty(), "{raised:?}");
        assert_eq!(
            expected,
            Some(ExpectedBurst { count: 56, expected: 56, window_minutes: 10, operations: vec![batch] })
        );
        // Not knowing the batch, it is an alert.
        let (raised, expected) = m.alerts_expecting(&[other]);
        assert_eq!((raised.len(), expected), (1, None));

        // Four others are still under the threshold; five are a burst of their own.
        let mut r = ours.clone();
        r.extend((0..4).map(|i| record(3400 + i, Some(5), true)));
        let m = compute(&r, 0, 0, now(), &t);
        let (raised, expected) = m.alerts_expecting(&[batch]);
        assert!(raised.is_empty() && expected.is_some_and(|e| (e.count, e.expected) == (60, 56)));
        r.push(record(3300, Some(5), true));
        let m = compute(&r, 0, 0, now(), &t);
        let (raised, expected) = m.alerts_expecting(&[batch]);
        assert_eq!(raised, vec![&Alert::RollbackBurst { count: 61, window_minutes: 10, threshold: 5 }]);
        assert_eq!(expected, None);
        // A failure is never expected.
        r.truncate(56);
        r.push(record(3550, None, false));
        let m = compute(&r, 0, 0, now(), &t);
        let (raised, _) = m.alerts_expecting(&[batch]);
        assert_eq!(raised, vec![&Alert::RollbackFailed { count: 1 }]);
    }

    proptest! {
        #[test]
        fn mean_is_exact_and_order_free(ds in proptest::collection::vec(0i64..10_000_000_000, 1..200)) {
            let mean = mean_us(&ds).unwrap_or_default();
            let sum: i128 = ds.iter().map(|&d| i128::from(d)).sum();
            // mean * n recovers the sum up to Decimal's 28 significant digits.
            let back = mean * Decimal::from(ds.len() as u64);
            let err = (back - Decimal::from_i128_with_scale(sum, 0)).abs();
            prop_assert!(err < Decimal::new(1, 6), "err {}", err);
            let min = *ds.iter().min().unwrap_or(&0);
            let max = *ds.iter().max().unwrap_or(&0);
            prop_assert!(mean >= Decimal::from(min) && mean <= Decimal::from(max));
            let mut rev = ds.clone();
            rev.reverse();
            prop_assert_eq!(mean_us(&rev), Some(mean));
        }

        #[test]
        fn p95_is_a_member_at_the_nearest_rank(ds in proptest::collection::vec(0i64..1_000_000, 1..300)) {
            let p = percentile_us(&ds, 95).unwrap_or_default();
            prop_assert!(ds.contains(&p));
            let below = ds.iter().filter(|&&d| d <= p).count() as f64;
            prop_assert!(below / ds.len() as f64 >= 0.95);
            let strictly_below = ds.iter().filter(|&&d| d < p).count() as f64;
            prop_assert!(strictly_below / (ds.len() as f64) < 0.95);
        }

        #[test]
        fn rate_counts_what_happened(outcomes in proptest::collection::vec(any::<bool>(), 1..100)) {
            let r: Vec<_> = outcomes.iter().enumerate().map(|(i, &ok)| record(i as i64, ok.then_some(1), ok)).collect();
            let m = compute(&r, 0, 0, now(), &Thresholds::default());
            let ok = outcomes.iter().filter(|&&o| o).count() as u64;
            prop_assert_eq!(m.succeeded, ok);
            prop_assert_eq!(m.failed, outcomes.len() as u64 - ok);
            let expected = (Decimal::from(ok) * Decimal::from(100) / Decimal::from(outcomes.len() as u64)).round_dp(2);
            prop_assert_eq!(m.success_rate_percent, Some(expected));
        }
    }
}
