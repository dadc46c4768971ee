//! The blast radius's reads: executions per minute and repeated executions on the book's
//! last trading day (drill accounts left out). Both read one day, so their cost follows
//! a day's orders, not the book's.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{Executor, Postgres};
use uuid::Uuid;

use crate::core::blast::Repeated;
use crate::core::error::Result;

/// The book's last trading day, as `[from, to)` in UTC: a CTE both statements start with
/// (a macro, so each statement stays one static text). The day is the newest customer
/// order's, read backwards through the created_at index: a max over the whole book read
/// every order (12 s at 10 M orders in `bench --scale`).
macro_rules! day {
    () => {
        "WITH day AS ( \
           SELECT (d::timestamp AT TIME ZONE 'UTC') AS from_, ((d + 1)::timestamp AT TIME ZONE 'UTC') AS to_ \
           FROM (SELECT (SELECT (o.created_at AT TIME ZONE 'UTC')::date FROM orders o \
                         JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill \
                         ORDER BY o.created_at DESC LIMIT 1) AS d) x ) "
    };
}

/// The repeat rule, in one place: order `b` is a twin of executed order `a` when both are
/// executed for the same user, symbol, side and quantity within `$1` seconds of each other
/// under different idempotency keys. Looked up through the (user, status) index, one
/// user's orders at a time.
macro_rules! twin {
    () => {
        "b.user_id = a.user_id AND b.status = 'executed' AND a.status = 'executed' \
         AND b.symbol = a.symbol AND b.side = a.side AND b.quantity = a.quantity \
         AND b.id <> a.id AND b.idempotency_key IS DISTINCT FROM a.idempotency_key \
         AND b.created_at BETWEEN a.created_at - make_interval(secs => $1) \
                              AND a.created_at + make_interval(secs => $1)"
    };
}

/// Executions (orders executed, rolled back after or not) per minute and symbol.
pub async fn executions_per_minute<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
) -> Result<Vec<(DateTime<Utc>, String, i64)>> {
    Ok(sqlx::query_as(concat!(
        day!(),
        "SELECT date_trunc('minute', o.created_at) AS m, o.symbol, count(*) \
         FROM orders o JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill, day \
         WHERE o.created_at >= day.from_ AND o.created_at < day.to_ \
           AND o.status IN ('executed', 'rolled_back') \
         GROUP BY 1, 2 ORDER BY 1, 2"
    ))
    .fetch_all(e)
    .await?)
}

/// Executed orders with a near twin: the same user, symbol, side and quantity executed
/// within `within_seconds` under another idempotency key. The twin is looked up through
/// the (user, status) index, one user's orders at a time, so the cost follows the day's
/// orders, not their square.
pub async fn repeated_executions<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    within_seconds: i64,
) -> Result<Vec<Repeated>> {
    let rows: Vec<(Uuid, Uuid, String, String, Decimal, DateTime<Utc>)> = sqlx::query_as(concat!(
        day!(),
        "SELECT a.id, a.user_id, a.symbol, a.side::text, a.quantity, a.created_at \
         FROM orders a JOIN profiles pr ON pr.id = a.user_id AND NOT pr.is_drill, day \
         WHERE a.status = 'executed' AND a.created_at >= day.from_ AND a.created_at < day.to_ \
           AND EXISTS (SELECT 1 FROM orders b WHERE ",
        twin!(),
        ") ORDER BY a.symbol, a.created_at, a.id"
    ))
    .bind(within_seconds as f64)
    .fetch_all(e)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, user_id, symbol, side, quantity, at)| Repeated { id, user_id, symbol, side, quantity, at })
        .collect())
}

/// How many twins (the repeat rule of `repeated_executions`) each of these orders has,
/// for those that have some: the list marks a page's repeated executions from it, at the
/// cost of the page's rows, not the book's.
pub async fn repeat_counts<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    orders: &[Uuid],
    within_seconds: i64,
) -> Result<Vec<(Uuid, i64)>> {
    Ok(sqlx::query_as(concat!(
        "SELECT a.id, count(*) FROM orders a JOIN orders b ON ",
        twin!(),
        " WHERE a.id = ANY($2) GROUP BY a.id"
    ))
    .bind(within_seconds as f64)
    .bind(orders.to_vec())
    .fetch_all(e)
    .await?)
}
