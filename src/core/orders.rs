//! Which orders: the filter both front ends use (the console's filter line, the CLI's
//! flags), times given as instants or as times of day on the book's latest trading day,
//! and the parsing of symbols and times they share.

use chrono::{DateTime, NaiveTime, Utc};
use uuid::Uuid;

/// A time bound of the orders filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// An instant.
    At(DateTime<Utc>),
    /// A time of day on the book's latest trading day (the worker resolves it).
    TimeOfDay(NaiveTime),
}

/// Which orders: each field that is set narrows the choice (orders created from `from`,
/// inclusive, to `to`, exclusive). `T` is how a time is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFilter<T> {
    /// One order.
    pub id: Option<Uuid>,
    /// One user's orders.
    pub user_id: Option<Uuid>,
    /// One transaction group.
    pub transaction_id: Option<Uuid>,
    /// One symbol (upper case).
    pub symbol: Option<String>,
    /// One status.
    pub status: Option<String>,
    /// Created at or after.
    pub from: Option<T>,
    /// Created before.
    pub to: Option<T>,
}

impl<T> Default for OrderFilter<T> {
    fn default() -> Self {
        OrderFilter { id: None, user_id: None, transaction_id: None, symbol: None, status: None, from: None, to: None }
    }
}

impl<T> OrderFilter<T> {
    /// The same filter with its times given another way (resolved to instants).
    pub fn with_times<U>(&self, from: Option<U>, to: Option<U>) -> OrderFilter<U> {
        OrderFilter {
            id: self.id,
            user_id: self.user_id,
            transaction_id: self.transaction_id,
            symbol: self.symbol.clone(),
            status: self.status.clone(),
            from,
            to,
        }
    }
}

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
