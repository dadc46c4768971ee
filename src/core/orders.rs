//! Which orders: the filter both front ends use (the console's filter line, the CLI's
//! flags), times given as instants or as times of day on the book's latest trading day,
//! and the parsing of symbols and times they share.

use chrono::{DateTime, NaiveTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

pub mod filter;
pub mod sort;

pub use sort::{OrderSort, SortColumn, SortKey, SortValue};

/// A time bound of the orders filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// An instant.
    At(DateTime<Utc>),
    /// A time of day on the book's latest trading day (the worker resolves it).
    TimeOfDay(NaiveTime),
}

/// An order, user or transaction id, or every id that starts with some hex digits (what
/// the console shows is an 8-digit prefix): the ids from `lo` to `hi`, inclusive, which is
/// a range an index can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// The smallest id it takes.
    pub lo: Uuid,
    /// The largest id it takes.
    pub hi: Uuid,
}

impl IdRange {
    /// Exactly this id.
    pub fn exact(id: Uuid) -> IdRange {
        IdRange { lo: id, hi: id }
    }

    /// Every id starting with these hex digits (1 to 32 of them, hyphens ignored); a whole
    /// id is [`IdRange::exact`]. None when it is not hex.
    pub fn prefix(text: &str) -> Option<IdRange> {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        if hex.is_empty() || hex.len() > 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let pad = |fill: char| {
            let full: String = hex.chars().chain(std::iter::repeat(fill)).take(32).collect();
            Uuid::parse_str(&full).ok()
        };
        Some(IdRange { lo: pad('0')?, hi: pad('f')? })
    }

    /// The id when it is one id.
    pub fn as_exact(&self) -> Option<Uuid> {
        (self.lo == self.hi).then_some(self.lo)
    }
}

impl std::fmt::Display for IdRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.as_exact() {
            Some(id) => write!(f, "{id}"),
            None => {
                // The digits lo and hi share are the prefix that was typed.
                let (lo, hi) = (self.lo.simple().to_string(), self.hi.simple().to_string());
                let n = lo.chars().zip(hi.chars()).take_while(|(a, b)| a == b).count();
                write!(f, "{}…", &lo[..n])
            }
        }
    }
}

/// A quantity bound: the value, and whether it is included.
pub type QuantityBound = (Decimal, bool);

/// Which orders: each kind of term that is given narrows the choice (AND across kinds);
/// several terms of one kind are alternatives (OR within a kind). Orders are created from
/// `from`, inclusive, to `to`, exclusive. `T` is how a time is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFilter<T> {
    /// Orders (ids or id prefixes).
    pub ids: Vec<IdRange>,
    /// Users' orders (ids or id prefixes).
    pub user_ids: Vec<IdRange>,
    /// Transaction groups (ids or id prefixes).
    pub transaction_ids: Vec<IdRange>,
    /// Symbols (upper case).
    pub symbols: Vec<String>,
    /// Statuses.
    pub statuses: Vec<String>,
    /// Sides (buy, sell).
    pub sides: Vec<String>,
    /// Quantity at least (or above, when not included).
    pub min_quantity: Option<QuantityBound>,
    /// Quantity at most (or below, when not included).
    pub max_quantity: Option<QuantityBound>,
    /// Created at or after.
    pub from: Option<T>,
    /// Created before.
    pub to: Option<T>,
}

impl<T> Default for OrderFilter<T> {
    fn default() -> Self {
        OrderFilter {
            ids: Vec::new(),
            user_ids: Vec::new(),
            transaction_ids: Vec::new(),
            symbols: Vec::new(),
            statuses: Vec::new(),
            sides: Vec::new(),
            min_quantity: None,
            max_quantity: None,
            from: None,
            to: None,
        }
    }
}

impl<T> OrderFilter<T> {
    /// One order.
    pub fn order(id: Uuid) -> Self {
        OrderFilter { ids: vec![IdRange::exact(id)], ..Default::default() }
    }

    /// The same filter with its times given another way (resolved to instants).
    pub fn with_times<U>(&self, from: Option<U>, to: Option<U>) -> OrderFilter<U> {
        OrderFilter {
            ids: self.ids.clone(),
            user_ids: self.user_ids.clone(),
            transaction_ids: self.transaction_ids.clone(),
            symbols: self.symbols.clone(),
            statuses: self.statuses.clone(),
            sides: self.sides.clone(),
            min_quantity: self.min_quantity,
            max_quantity: self.max_quantity,
            from,
            to,
        }
    }

    /// Whether it takes every order.
    pub fn is_everything(&self) -> bool {
        self.ids.is_empty()
            && self.user_ids.is_empty()
            && self.transaction_ids.is_empty()
            && self.symbols.is_empty()
            && self.statuses.is_empty()
            && self.sides.is_empty()
            && self.min_quantity.is_none()
            && self.max_quantity.is_none()
            && self.from.is_none()
            && self.to.is_none()
    }
}

impl<T: std::fmt::Display> OrderFilter<T> {
    /// The filter in words, as a person checks it before acting on what it matched:
    /// "symbol GBPUSD or EURUSD · side sell · created from 13:02 to 13:06".
    pub fn describe(&self) -> String {
        fn any<I: std::fmt::Display>(name: &str, v: &[I]) -> Option<String> {
            (!v.is_empty()).then(|| {
                let alternatives: Vec<String> =
                    v.iter().map(|x| crate::core::sanitize::line(&x.to_string()).into_owned()).collect();
                format!("{name} {}", alternatives.join(" or "))
            })
        }
        let quantity = match (self.min_quantity, self.max_quantity) {
            (None, None) => None,
            (Some((a, true)), Some((b, true))) => Some(format!("quantity {a} to {b}")),
            (lo, hi) => {
                let lo = lo.map(|(a, inc)| format!("{} {a}", if inc { "≥" } else { ">" }));
                let hi = hi.map(|(b, inc)| format!("{} {b}", if inc { "≤" } else { "<" }));
                Some(format!("quantity {}", [lo, hi].into_iter().flatten().collect::<Vec<_>>().join(" and ")))
            }
        };
        let window = match (&self.from, &self.to) {
            (None, None) => None,
            (Some(a), None) => Some(format!("created from {a}")),
            (None, Some(b)) => Some(format!("created before {b}")),
            (Some(a), Some(b)) => Some(format!("created from {a} to {b}")),
        };
        let parts: Vec<String> = [
            any("order", &self.ids),
            any("user", &self.user_ids),
            any("transaction", &self.transaction_ids),
            any("symbol", &self.symbols),
            any("status", &self.statuses),
            any("side", &self.sides),
            quantity,
            window,
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() { "every order".into() } else { parts.join(" · ") }
    }
}

impl std::fmt::Display for TimeBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeBound::At(t) => write!(f, "{}", t.format("%Y-%m-%d %H:%M:%S UTC")),
            TimeBound::TimeOfDay(t) => write!(f, "{}", t.format("%H:%M:%S")),
        }
    }
}

impl OrderQuery {
    /// The query with its times resolved (`[from, to]`, from the book), refused when it
    /// names a symbol no instrument has (`unknown`) or its window is empty: a typo or a
    /// reversed window is said, never shown as "0 match".
    pub fn resolved(&self, times: [Option<DateTime<Utc>>; 2], unknown: &[String]) -> Result<ResolvedQuery, String> {
        if !unknown.is_empty() {
            let names: Vec<String> = unknown.iter().map(|s| crate::core::sanitize::line(s).into_owned()).collect();
            return Err(format!("no instrument has the symbol {}", names.join(", ")));
        }
        let [from, to] = times;
        if let (Some(a), Some(b)) = (from, to)
            && a >= b
        {
            return Err(format!("empty window: from {a} is not before to {b}"));
        }
        Ok(self.with_times(from, to))
    }
}

/// The most orders the orders list's title counts ("100000+" beyond): the count costs at
/// most this many index entries, however big the book.
pub const TITLE_COUNT_CAP: i64 = 100_000;

/// A filter as typed (the console's filter line, the CLI's flags): times may be times of
/// day, resolved against the book when the query runs.
pub type OrderQuery = OrderFilter<TimeBound>;

/// A filter with its times resolved to instants, as the SQL takes it.
pub type ResolvedQuery = OrderFilter<DateTime<Utc>>;

/// A listing of orders (`orders`, the drill): oldest first, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct OrderListing {
    /// Which orders.
    pub filter: ResolvedQuery,
    /// Include the accounts created by `drill`.
    pub include_drill: bool,
    /// At most this many rows.
    pub limit: i64,
}

/// Why a time or a symbol was not understood; the message says what would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a time.
    #[error("not a time; use RFC 3339 (2026-11-25T13:02:00Z) or \"2026-11-25 13:02\" (UTC)")]
    Time,
    /// Not a time nor a time of day.
    #[error(
        "not a time; use RFC 3339 (2026-11-25T13:02:00Z), \"2026-11-25 13:02\" (UTC), or 13:02 for that time on \
         the book's latest trading day"
    )]
    TimeOrTimeOfDay,
    /// Not a time nor a time of day today (an incident's times).
    #[error("not a time; use RFC 3339 (2026-11-25T13:02:00Z), \"2026-11-25 13:02\" (UTC), or 13:02 for today (UTC)")]
    TimeOrTimeToday,
    /// Not a symbol.
    #[error("a symbol is 3 to 12 letters or digits, e.g. GBPUSD")]
    Symbol,
}

/// Parses RFC 3339, or "YYYY-MM-DD HH:MM[:SS]" / "YYYY-MM-DDTHH:MM[:SS]" taken as UTC.
pub fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::Utc>, ParseError> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc());
        }
    }
    Err(ParseError::Time)
}

/// A time as `parse_time` takes it, or a time of day ("13:02", "13:02:30") on the book's
/// latest trading day, resolved against the database when the command runs.
pub fn parse_time_bound(s: &str) -> Result<TimeBound, ParseError> {
    for fmt in ["%H:%M", "%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveTime::parse_from_str(s.trim(), fmt) {
            return Ok(TimeBound::TimeOfDay(t));
        }
    }
    parse_time(s).map(TimeBound::At).map_err(|_| ParseError::TimeOrTimeOfDay)
}

/// Symbols are 3 to 12 capital letters or digits.
pub fn parse_symbol(s: &str) -> Result<String, ParseError> {
    let up = s.trim().to_ascii_uppercase();
    if (3..=12).contains(&up.len()) && up.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
        Ok(up)
    } else {
        Err(ParseError::Symbol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_and_symbols() {
        assert!(parse_time("2026-11-25T13:02:00Z").is_ok());
        assert_eq!(parse_time("2026-11-25 13:02").ok(), parse_time("2026-11-25T13:02:00+00:00").ok());
        assert!(parse_time("yesterday").is_err());
        assert!(matches!(parse_time_bound("13:02"), Ok(TimeBound::TimeOfDay(_))));
        assert_eq!(parse_symbol("gbpusd").ok().as_deref(), Some("GBPUSD"));
        assert!(parse_symbol("GBP;USD").is_err());
    }
}
