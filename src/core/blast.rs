//! The blast radius: where in the book a bad burst is. Executions per minute show when
//! something ran hot; suspected duplicate executions — the same user, symbol, side and
//! quantity executed again within seconds under another idempotency key — say which orders,
//! grouped into one suspicion per symbol and burst, ready to become a filter and a
//! selection.

use chrono::{DateTime, Duration, DurationRound, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

/// How close in time two executions must be to count as one repeated.
pub const REPEAT_WITHIN_SECONDS: i64 = 10;

/// An executed order that has a near twin (the database found it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeated {
    /// The order.
    pub id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// Symbol.
    pub symbol: String,
    /// buy or sell.
    pub side: String,
    /// Quantity.
    pub quantity: Decimal,
    /// When it was created.
    pub at: DateTime<Utc>,
}

/// One suspicion: a run of repeated executions of one symbol, close together in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicion {
    /// The symbol.
    pub symbol: String,
    /// The first and last execution of it.
    pub from: DateTime<Utc>,
    /// See `from`.
    pub to: DateTime<Utc>,
    /// Every order in it (each copy, the first included), oldest first, with its user.
    pub orders: Vec<(Uuid, Uuid)>,
    /// Distinct (user, side, quantity) groups: how many originals were repeated.
    pub groups: usize,
    /// Distinct users.
    pub users: usize,
}

impl Suspicion {
    /// The filter that lists it: its symbol, from its first minute to the minute after its
    /// last (a time-of-day filter on the book's last day).
    pub fn filter(&self) -> String {
        let floor = |t: DateTime<Utc>| t.duration_trunc(Duration::minutes(1)).unwrap_or(t);
        let end = floor(self.to) + Duration::minutes(1);
        format!("symbol:{} from:{} to:{}", self.symbol, floor(self.from).format("%H:%M"), end.format("%H:%M"))
    }
}

/// Groups repeated executions into suspicions: by symbol, then into runs where each order
/// is within `gap` of the previous one (a burst, not two bad minutes hours apart).
/// Largest first.
pub fn suspicions(mut repeated: Vec<Repeated>, gap: Duration) -> Vec<Suspicion> {
    repeated.sort_by(|a, b| a.symbol.cmp(&b.symbol).then(a.at.cmp(&b.at)).then(a.id.cmp(&b.id)));
    let mut out: Vec<Suspicion> = Vec::new();
    let mut run: Vec<Repeated> = Vec::new();
    let close = |run: &mut Vec<Repeated>, out: &mut Vec<Suspicion>| {
        if let (Some(first), Some(last)) = (run.first(), run.last()) {
            let mut groups: Vec<(Uuid, &str, Decimal)> =
                run.iter().map(|r| (r.user_id, r.side.as_str(), r.quantity)).collect();
            groups.sort();
            groups.dedup();
            let mut users: Vec<Uuid> = run.iter().map(|r| r.user_id).collect();
            users.sort();
            users.dedup();
            out.push(Suspicion {
                symbol: first.symbol.clone(),
                from: first.at,
                to: last.at,
                orders: run.iter().map(|r| (r.id, r.user_id)).collect(),
                groups: groups.len(),
                users: users.len(),
            });
        }
        run.clear();
    };
    for r in repeated {
        let breaks = run.last().is_some_and(|p| p.symbol != r.symbol || r.at - p.at > gap);
        if breaks {
            close(&mut run, &mut out);
        }
        run.push(r);
    }
    close(&mut run, &mut out);
    out.sort_by(|a, b| b.orders.len().cmp(&a.orders.len()).then(a.from.cmp(&b.from)));
    out
}

/// Executions per minute of one symbol (or of all, `None`) from `(minute, symbol, count)`
/// rows, as a run of minutes from the first to the last with zeros filled in.
pub fn per_minute(rows: &[(DateTime<Utc>, String, i64)], symbol: Option<&str>) -> Vec<(DateTime<Utc>, u64)> {
    let mut counts: std::collections::BTreeMap<DateTime<Utc>, u64> = Default::default();
    for (m, s, n) in rows {
        if symbol.is_none_or(|x| x == s) {
            *counts.entry(*m).or_default() += u64::try_from(*n).unwrap_or(0);
        }
    }
    let counts: Vec<(DateTime<Utc>, u64)> = counts.into_iter().collect();
    fill_minutes(&counts)
}

/// Counts per minute (minutes in order, none twice) as a run of minutes from the first to
/// the last with zeros filled in.
pub fn fill_minutes(counts: &[(DateTime<Utc>, u64)]) -> Vec<(DateTime<Utc>, u64)> {
    let (Some(first), Some(last)) = (counts.first().map(|c| c.0), counts.last().map(|c| c.0)) else {
        return Vec::new();
    };
    let by_minute: std::collections::BTreeMap<DateTime<Utc>, u64> = counts.iter().copied().collect();
    let mut out = Vec::new();
    let mut m = first;
    while m <= last {
        out.push((m, by_minute.get(&m).copied().unwrap_or(0)));
        m += Duration::minutes(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
            .and_then(|d| d.and_hms_opt(h, m, s))
            .map(|d| d.and_utc())
            .unwrap_or_default()
    }

    fn rep(n: u128, user: u128, symbol: &str, at: DateTime<Utc>) -> Repeated {
        Repeated {
            id: Uuid::from_u128(n),
            user_id: Uuid::from_u128(user),
            symbol: symbol.into(),
            side: "buy".into(),
            quantity: Decimal::from(1000),
            at,
        }
    }

    #[test]
    fn repeats_close_together_are_one_suspicion_and_distant_ones_another() {
        let r = vec![
            rep(1, 10, "GBPUSD", t(13, 2, 5)),
            rep(2, 10, "GBPUSD", t(13, 2, 7)),
            rep(3, 11, "GBPUSD", t(13, 5, 50)),
            rep(4, 11, "GBPUSD", t(13, 5, 52)),
            rep(5, 12, "EURUSD", t(9, 0, 0)),
            rep(6, 12, "EURUSD", t(9, 0, 3)),
            rep(7, 12, "GBPUSD", t(16, 0, 0)),
            rep(8, 12, "GBPUSD", t(16, 0, 1)),
        ];
        let s = suspicions(r, Duration::minutes(5));
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!((s[0].symbol.as_str(), s[0].orders.len(), s[0].groups, s[0].users), ("GBPUSD", 4, 2, 2));
        assert_eq!(s[0].filter(), "symbol:GBPUSD from:13:02 to:13:06");
        assert_eq!(s[1].symbol, "EURUSD", "the earlier of the two of two orders");
    }

    #[test]
    fn per_minute_fills_the_quiet_minutes() {
        let rows = vec![
            (t(13, 0, 0), "GBPUSD".to_string(), 2),
            (t(13, 0, 0), "EURUSD".to_string(), 5),
            (t(13, 3, 0), "GBPUSD".to_string(), 15),
        ];
        assert_eq!(per_minute(&rows, Some("GBPUSD")).iter().map(|x| x.1).collect::<Vec<_>>(), [2, 0, 0, 15]);
        assert_eq!(per_minute(&rows, None).iter().map(|x| x.1).collect::<Vec<_>>(), [7, 0, 0, 15]);
        assert!(per_minute(&[], None).is_empty());
    }
}
