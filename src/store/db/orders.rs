//! Reading the order book: listings, pages, counts, batch previews, time windows.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{Executor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::core::contract::*;
use crate::core::error::{Error, Result};
use crate::core::orders::{OrderListing, OrderSort, ResolvedQuery, SortColumn, SortKey, SortValue, TimeBound};

const ORDER_COLUMNS: &str = "SELECT o.id, o.user_id, o.symbol, o.side, o.order_type, o.quantity, o.price, o.status, \
     o.transaction_id, o.total_cost, o.commission, o.failure_reason, o.rolled_back_reason, o.created_at, \
     o.executed_at, o.rolled_back_at FROM orders o";

/// Orders matching the filter, oldest first.
pub async fn find_orders<'e, E: Executor<'e, Database = Postgres>>(e: E, f: &OrderListing) -> Result<Vec<OrderRow>> {
    // Static fragments chosen by which filters are set; every value is a bound parameter,
    // so each combination gets a plan that can use its index.
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(ORDER_COLUMNS);
    if !f.include_drill {
        q.push(" JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill");
    }
    q.push(" WHERE true");
    push_conditions(&mut q, &f.filter);
    q.push(" ORDER BY o.created_at, o.id LIMIT ").push_bind(f.limit);
    Ok(q.build_query_as::<OrderRow>().fetch_all(e).await?)
}

/// Users of the given orders (unknown ids are absent from the result).
pub async fn order_owners<'e, E: Executor<'e, Database = Postgres>>(e: E, ids: &[Uuid]) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as("SELECT id, user_id FROM orders WHERE id = ANY($1)").bind(ids.to_vec()).fetch_all(e).await?)
}

/// What rolling back these orders will do.
pub async fn batch_preview<'e, E: Executor<'e, Database = Postgres>>(e: E, ids: &[Uuid]) -> Result<BatchPreview> {
    let row: PgRow = sqlx::query(
        "SELECT count(*) AS orders, \
                count(*) FILTER (WHERE o.status = 'executed') AS executed, \
                count(DISTINCT o.user_id) AS users, \
                coalesce(sum(x.cash_back) FILTER (WHERE o.status = 'executed'), 0) AS refund, \
                coalesce(sum(x.margin_back) FILTER (WHERE o.status = 'executed'), 0) AS margin \
         FROM orders o \
         LEFT JOIN LATERAL ( \
             SELECT sum(CASE WHEN t.debit_account = 'user_cash' THEN t.amount \
                             WHEN t.credit_account = 'user_cash' THEN -t.amount END) AS cash_back, \
                    sum(CASE WHEN t.credit_account = 'user_margin' THEN t.amount \
                             WHEN t.debit_account = 'user_margin' THEN -t.amount END) AS margin_back \
             FROM ledger_transfers t \
             WHERE t.order_id = o.id AND t.reverses_id IS NULL \
               AND NOT EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.reverses_id = t.id) \
         ) x ON true \
         WHERE o.id = ANY($1)",
    )
    .bind(ids.to_vec())
    .fetch_one(e)
    .await?;
    Ok(BatchPreview {
        orders: row.try_get("orders")?,
        executed: row.try_get("executed")?,
        users: row.try_get("users")?,
        total_refund: row.try_get("refund")?,
        total_margin_release: row.try_get("margin")?,
    })
}

/// Whether the book holds no account and no order, read without counting either table.
pub async fn book_is_empty<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM profiles) AND NOT EXISTS (SELECT 1 FROM orders)")
        .fetch_one(e)
        .await?)
}

/// How many accounts and orders the book holds (every row counted: for a summary, not a test).
pub async fn book_size<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<(i64, i64)> {
    Ok(sqlx::query_as("SELECT (SELECT count(*) FROM profiles), (SELECT count(*) FROM orders)").fetch_one(e).await?)
}

/// Balance and margin of one user.
pub async fn account<'e, E: Executor<'e, Database = Postgres>>(e: E, user: Uuid) -> Result<Option<(Decimal, Decimal)>> {
    Ok(sqlx::query_as("SELECT balance, margin_used FROM profiles WHERE id = $1").bind(user).fetch_optional(e).await?)
}

/// Audit rows recording a rollback of this order.
pub async fn rollback_audit_rows<'e, E: Executor<'e, Database = Postgres>>(e: E, order: Uuid) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM order_audit_log WHERE order_id = $1 AND action = 'order_rolled_back'")
        .bind(order)
        .fetch_one(e)
        .await?)
}

/// What the database shows of these orders' rollbacks (unknown ids are left out): read on
/// a connection other than the one that lost a reply.
pub async fn order_rollback_states<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    orders: &[Uuid],
) -> Result<Vec<crate::core::contract::OrderRollbackState>> {
    Ok(sqlx::query_as(
        "SELECT o.id AS order_id, o.status::text AS status, a.rollback_id, a.batch_id AS operation, \
                a.operator::text AS operator, a.created_at AS at, \
                coalesce(a.db_user = session_user, false) AS by_this_login, \
                coalesce((a.details->>'refunded')::numeric, 0)::numeric(20,8) AS refunded, \
                coalesce(CASE WHEN o.status = 'rolled_back' THEN p.margin_used END, 0)::numeric(20,8) \
                    AS margin_released \
         FROM unnest($1::uuid[]) AS q(id) \
         JOIN orders o ON o.id = q.id \
         LEFT JOIN order_audit_log a ON a.order_id = o.id AND a.action = 'order_rolled_back' \
         LEFT JOIN positions p ON p.id = o.position_id",
    )
    .bind(orders)
    .fetch_all(e)
    .await?)
}

/// Orders each operation rolled back, the cash they gave back and the users whose orders
/// they were, as its audit rows show (`batch_id` is the operation): the truth a journal's
/// figures are settled against. Only this login's rows count: any session can claim an
/// operation id, not another's login.
pub async fn operation_totals<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    operations: &[Uuid],
) -> Result<Vec<(Uuid, i64, rust_decimal::Decimal, Vec<Uuid>)>> {
    Ok(sqlx::query_as(
        "SELECT q.op, count(a.id), coalesce(sum((a.details->>'refunded')::numeric), 0)::numeric(20,8), \
                coalesce(array_agg(DISTINCT a.user_id) FILTER (WHERE a.user_id IS NOT NULL), '{}') \
         FROM unnest($1::uuid[]) AS q(op) \
         LEFT JOIN order_audit_log a ON a.batch_id = q.op AND a.action = 'order_rolled_back' \
                                       AND a.db_user = session_user \
         GROUP BY q.op",
    )
    .bind(operations)
    .fetch_all(e)
    .await?)
}

/// What the database shows of an order's rollback and of its transaction group's (each
/// audit row names the operation that did it): read to settle a lost reply.
pub async fn group_rollback_states<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    order: Uuid,
) -> Result<Vec<crate::core::contract::OrderRollbackState>> {
    Ok(sqlx::query_as(
        "SELECT o.id AS order_id, o.status::text AS status, a.rollback_id, a.batch_id AS operation, \
                a.operator::text AS operator, a.created_at AS at, \
                coalesce(a.db_user = session_user, false) AS by_this_login, \
                coalesce((a.details->>'refunded')::numeric, 0)::numeric(20,8) AS refunded, \
                coalesce(CASE WHEN o.status = 'rolled_back' THEN p.margin_used END, 0)::numeric(20,8) \
                    AS margin_released \
         FROM orders o \
         LEFT JOIN order_audit_log a ON a.order_id = o.id AND a.action = 'order_rolled_back' \
         LEFT JOIN positions p ON p.id = o.position_id \
         WHERE o.id = $1 \
            OR (o.user_id, o.transaction_id) = (SELECT user_id, transaction_id FROM orders WHERE id = $1)",
    )
    .bind(order)
    .fetch_all(e)
    .await?)
}

/// Executed orders of one symbol in a time window with a given status (the batch by window).
pub async fn orders_in_window<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    symbol: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    status: &str,
) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as(
        "SELECT o.id, o.user_id FROM orders o \
         WHERE o.symbol = $1 AND o.created_at >= $2 AND o.created_at < $3 AND o.status = $4 \
         ORDER BY o.created_at, o.id",
    )
    .bind(symbol.to_string())
    .bind(from)
    .bind(to)
    .bind(status.to_string())
    .fetch_all(e)
    .await?)
}

/// The first execution of `symbol` in `[from, to)` outside drill accounts (rolled back
/// since or not): when and which order. What "impact began, taken from the burst" reads.
pub async fn first_execution<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    symbol: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<(DateTime<Utc>, Uuid)>> {
    Ok(sqlx::query_as(
        "SELECT o.executed_at, o.id FROM orders o \
         JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill \
         WHERE o.symbol = $1 AND o.executed_at >= $2 AND o.executed_at < $3 \
         ORDER BY o.executed_at, o.id LIMIT 1",
    )
    .bind(symbol.to_string())
    .bind(from)
    .bind(to)
    .fetch_optional(e)
    .await?)
}

/// The trading date of the newest order outside drill accounts (a filter's times of day
/// refer to it).
pub async fn newest_trading_date<'e, E: Executor<'e, Database = Postgres>>(e: E) -> Result<Option<NaiveDate>> {
    Ok(sqlx::query_scalar(
        "SELECT (o.created_at AT TIME ZONE 'UTC')::date FROM orders o \
         JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill \
         ORDER BY o.created_at DESC LIMIT 1",
    )
    .fetch_optional(e)
    .await?)
}

/// Resolves times of day (`TimeBound::TimeOfDay`) on the book's latest trading day (today
/// when the book is empty); instants stay as they are.
pub async fn resolve_time_bounds<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    bounds: [Option<TimeBound>; 2],
) -> Result<[Option<DateTime<Utc>>; 2]> {
    let needs_day = bounds.iter().any(|b| matches!(b, Some(TimeBound::TimeOfDay(_))));
    let day = if needs_day {
        newest_trading_date(e).await?.unwrap_or_else(|| Utc::now().date_naive())
    } else {
        Utc::now().date_naive()
    };
    Ok(bounds.map(|b| {
        b.map(|b| match b {
            TimeBound::At(t) => t,
            TimeBound::TimeOfDay(t) => day.and_time(t).and_utc(),
        })
    }))
}

fn push_filter(q: &mut QueryBuilder<Postgres>, f: &ResolvedQuery) {
    q.push(" JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill WHERE true");
    push_conditions(q, f);
}

/// The filter's conditions, each a static fragment with a bound value, after a WHERE.
fn push_conditions(q: &mut QueryBuilder<Postgres>, f: &ResolvedQuery) {
    push_id_ranges(q, "o.id", &f.ids);
    push_id_ranges(q, "o.user_id", &f.user_ids);
    push_id_ranges(q, "o.transaction_id", &f.transaction_ids);
    if !f.symbols.is_empty() {
        q.push(" AND o.symbol = ANY(").push_bind(f.symbols.clone()).push(")");
    }
    if !f.statuses.is_empty() {
        q.push(" AND o.status = ANY(").push_bind(f.statuses.clone()).push(")");
    }
    if !f.sides.is_empty() {
        q.push(" AND o.side = ANY(").push_bind(f.sides.clone()).push(")");
    }
    if let Some((n, inclusive)) = f.min_quantity {
        q.push(if inclusive { " AND o.quantity >= " } else { " AND o.quantity > " }).push_bind(n);
    }
    if let Some((n, inclusive)) = f.max_quantity {
        q.push(if inclusive { " AND o.quantity <= " } else { " AND o.quantity < " }).push_bind(n);
    }
    if let Some(t) = f.from {
        q.push(" AND o.created_at >= ").push_bind(t);
    }
    if let Some(t) = f.to {
        q.push(" AND o.created_at < ").push_bind(t);
    }
}

/// `column` is one of the ids or in one of the prefixes' ranges (an id is the range from
/// itself to itself, so an index answers either). `column` is one of this module's names.
fn push_id_ranges(q: &mut QueryBuilder<Postgres>, column: &'static str, ranges: &[crate::core::orders::IdRange]) {
    if ranges.is_empty() {
        return;
    }
    q.push(" AND (false");
    for r in ranges {
        match r.as_exact() {
            Some(id) => q.push(" OR ").push(column).push(" = ").push_bind(id),
            None => q.push(" OR ").push(column).push(" BETWEEN ").push_bind(r.lo).push(" AND ").push_bind(r.hi),
        };
    }
    q.push(")");
}

/// Symbols that no instrument has (a filter naming one is a typo, not an empty result).
pub async fn unknown_symbols<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    symbols: &[String],
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT s FROM unnest($1::text[]) WITH ORDINALITY AS u(s, n) \
         WHERE NOT EXISTS (SELECT 1 FROM instruments i WHERE i.symbol = u.s) ORDER BY n",
    )
    .bind(symbols.to_vec())
    .fetch_all(e)
    .await?)
}

/// Where a page of orders starts, in the list's order (`OrderSort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageFrom {
    /// The top of the list, downwards.
    Start,
    /// The end of the list, upwards (closest to the end first).
    End,
    /// The orders below the key, closest first.
    After(SortKey),
    /// The orders above the key, closest first.
    Before(SortKey),
}

/// The SQL a sort column is ordered and compared by (static text: the column comes from an
/// enum, never from input). A missing amount becomes a sentinel beyond every amount in
/// the direction of the end, so it sorts last either way and the keyset comparison, which
/// NULL would make unknown, stays total.
fn sort_expression(sort: OrderSort) -> &'static str {
    match (sort.column, sort.descending) {
        (SortColumn::Time, _) => "o.created_at",
        (SortColumn::Symbol, _) => "o.symbol",
        (SortColumn::Side, _) => "o.side::text",
        (SortColumn::Status, _) => "o.status::text",
        (SortColumn::Quantity, _) => "o.quantity::numeric",
        (SortColumn::Price, true) => "coalesce(o.price::numeric, -1)",
        (SortColumn::Price, false) => "coalesce(o.price::numeric, 1e30)",
        (SortColumn::Cost, true) => "coalesce(o.total_cost::numeric, -1)",
        (SortColumn::Cost, false) => "coalesce(o.total_cost::numeric, 1e30)",
        (SortColumn::User, _) => "o.user_id",
    }
}

/// A key's value as the sort expression has it (the same sentinel for a missing amount).
fn push_sort_value(q: &mut QueryBuilder<Postgres>, sort: OrderSort, value: &SortValue) {
    match value {
        SortValue::Time(t) => q.push_bind(*t),
        SortValue::Text(t) => q.push_bind(t.clone()),
        SortValue::Id(id) => q.push_bind(*id),
        SortValue::Amount(a) => {
            q.push("coalesce(").push_bind(*a).push("::numeric, ");
            q.push(if sort.descending { "-1" } else { "1e30" }).push(")")
        }
    };
}

/// One page of orders from a place in the list sorted by `sort` (keyset paging on the sort
/// column and the id: the cost of a page does not depend on how deep in the book it is).
/// Returns the rows, closest to where it starts first, and whether there are more beyond
/// them.
pub async fn orders_page<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    f: &ResolvedQuery,
    sort: OrderSort,
    from: &PageFrom,
    limit: i64,
) -> Result<(Vec<OrderRow>, bool)> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(ORDER_COLUMNS);
    push_filter(&mut q, f);
    let expr = sort_expression(sort);
    // Reading downwards goes the sort's way; upwards, the other way.
    let downwards = matches!(from, PageFrom::Start | PageFrom::After(_));
    if let PageFrom::After(k) | PageFrom::Before(k) = from {
        let below = if sort.descending { " < (" } else { " > (" };
        let above = if sort.descending { " > (" } else { " < (" };
        q.push(" AND (").push(expr).push(", o.id)").push(if downwards { below } else { above });
        push_sort_value(&mut q, sort, &k.value);
        q.push(", ").push_bind(k.id).push(")");
    }
    let direction = if sort.descending == downwards { " DESC" } else { "" };
    q.push(" ORDER BY ").push(expr).push(direction).push(", o.id").push(direction);
    q.push(" LIMIT ").push_bind(limit + 1);
    let mut rows = q.build_query_as::<OrderRow>().fetch_all(e).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    Ok((rows, more))
}

/// Orders matching the filter per minute, over the day that ends with the newest of them
/// (at most 1440 rows, whatever the book holds; counted on the server). Minutes with none
/// are absent.
pub async fn orders_per_minute<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    f: &ResolvedQuery,
) -> Result<Vec<(DateTime<Utc>, i64)>> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new("WITH newest AS (SELECT max(o.created_at) AS t FROM orders o");
    push_filter(&mut q, f);
    q.push(") SELECT date_trunc('minute', o.created_at) AS m, count(*) FROM orders o");
    push_filter(&mut q, f);
    q.push(
        " AND o.created_at > (SELECT t - interval '1 day' FROM newest) \
         GROUP BY 1 ORDER BY 1",
    );
    Ok(q.build_query_as().fetch_all(e).await?)
}

/// How many orders match, counting at most `cap` (true when there are more).
pub async fn count_orders<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    f: &ResolvedQuery,
    cap: i64,
) -> Result<(i64, bool)> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT count(*) FROM (SELECT 1 FROM orders o");
    push_filter(&mut q, f);
    q.push(" LIMIT ").push_bind(cap + 1).push(") s");
    let n: i64 = q.build_query_scalar().fetch_one(e).await?;
    Ok((n.min(cap), n > cap))
}

/// Executed orders matching a filter, oldest first, at most `cap` (error beyond).
pub async fn executed_matching<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    f: &ResolvedQuery,
    cap: i64,
) -> Result<Vec<(Uuid, Uuid)>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT o.id, o.user_id FROM orders o");
    // Only executed orders are rolled back: the filter's statuses, if it names some, must
    // include it, or nothing matches.
    if !f.statuses.is_empty() && !f.statuses.iter().any(|s| s == "executed") {
        return Ok(Vec::new());
    }
    let mut only_executed = f.clone();
    only_executed.statuses = vec!["executed".into()];
    push_filter(&mut q, &only_executed);
    q.push(" ORDER BY o.created_at, o.id LIMIT ").push_bind(cap + 1);
    let rows: Vec<(Uuid, Uuid)> = q.build_query_as().fetch_all(e).await?;
    if rows.len() as i64 > cap {
        return Err(Error::BadInput(format!("more than {cap} orders match: narrow the filter")));
    }
    Ok(rows)
}
