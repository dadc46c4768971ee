//! The benchmark's order book: deterministic accounts and executed orders, written in bulk.

use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::Say;
use crate::core::error::Result;
use crate::store::db::{self, SeedOrder};

/// Deterministic accounts and executed orders for the bench.
fn bench_book(
    seed: u64,
    users: usize,
    orders: usize,
    at: chrono::DateTime<chrono::Utc>,
) -> (Vec<(Uuid, Decimal)>, Vec<SeedOrder>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut id = || {
        let mut b = [0u8; 16];
        rand::Rng::fill_bytes(&mut rng, &mut b);
        uuid::Builder::from_random_bytes(b).into_uuid()
    };
    let accounts: Vec<(Uuid, Decimal)> = (0..users).map(|_| (id(), Decimal::from(1_000_000_000))).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut book = Vec::with_capacity(orders);
    for n in 0..orders {
        let mut b = [0u8; 32];
        rand::Rng::fill_bytes(&mut rng, &mut b);
        let (i1, i2) = b.split_at(16);
        let sym = crate::store::demo::SYMBOLS[n % 8];
        book.push(SeedOrder {
            id: uuid::Builder::from_random_bytes(i1.try_into().unwrap_or_default()).into_uuid(),
            position_id: uuid::Builder::from_random_bytes(i2.try_into().unwrap_or_default()).into_uuid(),
            user_id: accounts[rng.random_range(0..users)].0,
            symbol: sym.0.to_string(),
            order_type: "market",
            side: if n % 2 == 0 { "buy" } else { "sell" },
            quantity: Decimal::from(rng.random_range(1..=50) * 1000),
            price: sym.1,
            transaction_id: Some(uuid::Builder::from_random_bytes(b[8..24].try_into().unwrap_or_default()).into_uuid()),
            idempotency_key: format!("bench-{seed}-{n}"),
            at: at + chrono::Duration::milliseconds(n as i64),
        });
    }
    (accounts, book)
}

pub(super) async fn seed(
    conn: &mut PgConnection,
    say: Say<'_>,
    seed_no: u64,
    users: usize,
    orders: usize,
    label: &str,
) -> Result<Vec<SeedOrder>> {
    let (accounts, book) = bench_book(seed_no, users, orders, chrono::Utc::now() - chrono::Duration::hours(1));
    db::create_accounts(&mut *conn, &accounts).await?;
    let started = Instant::now();
    for (i, chunk) in book.chunks(20_000).enumerate() {
        db::insert_executed_orders(conn, chunk).await?;
        if (i + 1) % 10 == 0 {
            say(&format!(
                "  {label}: {} of {} orders written ({:.0}s)",
                (i + 1) * 20_000,
                orders,
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(book)
}
