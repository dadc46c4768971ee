//! The scale bench's order book, generated on the server: accounts, executed orders with
//! their positions, ledger transfers, balances and daily figures, written by a few set-based
//! `INSERT … SELECT generate_series` statements per half million orders, with the book's
//! secondary indexes and foreign keys dropped while the rows go in and made again after
//! (from the catalog's own definitions), then checked: the same indexes and constraints as
//! before, the expected row counts.

use std::time::Instant;

use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;

use super::Say;
use crate::core::error::{Error, Result};
use crate::store::db;

/// Orders written per statement (and per progress line).
const CHUNK: i64 = 500_000;

/// Milliseconds between two orders: 100,000 a day, so the book's last day (what the blast
/// radius reads) holds 100,000 orders once the book has that many.
pub const SPACING_MS: i64 = 864;

/// Each account's deposit: far more than its orders cost.
const DEPOSIT: i64 = 1_000_000_000;

/// The accounts of a book of `orders`: a hundred orders each on average (at least 100).
pub fn accounts_for(orders: u64) -> u64 {
    (orders / 100).max(100)
}

/// How long each step of a build took.
#[derive(Debug, Clone, Serialize)]
pub struct BuildTimes {
    /// Accounts, orders, positions, transfers, balances and daily figures.
    pub rows_seconds: f64,
    /// The indexes and foreign keys made again (and validated).
    pub structure_seconds: f64,
    /// `VACUUM ANALYZE`.
    pub vacuum_seconds: f64,
    /// Everything.
    pub total_seconds: f64,
}

/// Builds a book of `orders` executed orders ending at `end_ms` (milliseconds since the
/// epoch) in the database `conn` is connected to (migrated, empty).
pub async fn build(conn: &mut PgConnection, orders: u64, end_ms: i64, say: Say<'_>) -> Result<BuildTimes> {
    if !db::is_superuser(conn).await? {
        return Err(Error::BadInput(
            "bench --scale loads its book without triggers, as a replica does: it needs a superuser login".into(),
        ));
    }
    let started = Instant::now();
    let total = orders as i64;
    let users = accounts_for(orders) as i64;
    let before = db::book_structure(conn).await?;
    db::begin_scale_build(conn).await?;
    let built = async {
        for s in before.iter().rev() {
            db::run_structure_statement(conn, &s.drop_sql).await?;
        }
        let first_ms = end_ms - (total - 1) * SPACING_MS;
        let opened = chrono::DateTime::from_timestamp_millis(first_ms - 86_400_000)
            .ok_or_else(|| Error::BadInput("the book's times are out of range".into()))?;
        db::scale_accounts(conn, users, Decimal::from(DEPOSIT), opened).await?;
        let symbols: Vec<String> = crate::store::demo::SYMBOLS.iter().map(|s| s.0.to_string()).collect();
        let prices: Vec<Decimal> = crate::store::demo::SYMBOLS.iter().map(|s| s.1).collect();
        let mut lo = 0;
        while lo < total {
            let hi = (lo + CHUNK).min(total);
            let written = db::scale_orders(conn, lo, hi, total, end_ms, &symbols, &prices).await?;
            if written != (hi - lo) as u64 {
                return Err(Error::CheckFailed(format!("wrote {written} of {} orders", hi - lo)));
            }
            let (from_ms, to_ms) = (first_ms + lo * SPACING_MS, first_ms + hi * SPACING_MS);
            db::scale_positions(conn, from_ms, to_ms).await?;
            db::scale_transfers(conn, from_ms, to_ms).await?;
            say(&format!(
                "  {}: {hi} of {total} orders with their positions and transfers ({:.0} s)",
                size_label(orders),
                started.elapsed().as_secs_f64()
            ));
            lo = hi;
        }
        db::scale_balances(conn).await?;
        let rows_seconds = started.elapsed().as_secs_f64();
        say(&format!(
            "  {}: rows written in {rows_seconds:.0} s; making {} indexes and constraints …",
            size_label(orders),
            before.len()
        ));
        let t = Instant::now();
        for s in &before {
            let one = Instant::now();
            db::run_structure_statement(conn, &s.restore_sql).await?;
            if one.elapsed().as_secs_f64() > 5.0 {
                say(&format!("    {} on {} ({:.0} s)", s.name, s.tbl, one.elapsed().as_secs_f64()));
            }
        }
        Ok::<_, Error>((rows_seconds, t.elapsed().as_secs_f64()))
    }
    .await;
    // Triggers on again for whatever this connection does next, even after a failure.
    let ended = db::end_scale_build(conn).await;
    let (rows_seconds, structure_seconds) = built?;
    ended?;
    let after = db::book_structure(conn).await?;
    if after != before {
        return Err(Error::CheckFailed(
            "the rebuilt book's indexes and constraints differ from the migrated schema's".into(),
        ));
    }
    let counts = db::scale_counts(conn).await?;
    let expected = (total, total, 2 * total + users, users);
    if counts != expected {
        return Err(Error::CheckFailed(format!(
            "the book holds {counts:?} (orders, positions, transfers, accounts), not {expected:?}"
        )));
    }
    say(&format!("  {}: VACUUM ANALYZE …", size_label(orders)));
    let t = Instant::now();
    db::vacuum_analyze(conn).await?;
    let vacuum_seconds = t.elapsed().as_secs_f64();
    Ok(BuildTimes { rows_seconds, structure_seconds, vacuum_seconds, total_seconds: started.elapsed().as_secs_f64() })
}

/// "10k", "1m", "25500": a size as `--sizes` takes it.
pub fn size_label(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}m", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_accounts() {
        assert_eq!(size_label(10_000), "10k");
        assert_eq!(size_label(10_000_000), "10m");
        assert_eq!(size_label(25_500), "25500");
        assert_eq!(accounts_for(10_000_000), 100_000);
        assert_eq!(accounts_for(2_000), 100);
    }
}
