//! Bulk writes (demo book, benchmarks): run by the owner, not part of the contract.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{Executor, PgConnection, Postgres};
use uuid::Uuid;

use crate::core::error::{Error, Result};

/// An executed order to write in bulk (demo book, benchmarks): the amounts are computed
/// in SQL from the instrument's rates, exactly as `execute_order_atomic` does.
#[derive(Debug, Clone)]
pub struct SeedOrder {
    pub id: Uuid,
    pub position_id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub order_type: &'static str,
    pub side: &'static str,
    pub quantity: Decimal,
    pub price: Decimal,
    pub transaction_id: Option<Uuid>,
    pub idempotency_key: String,
    pub at: DateTime<Utc>,
}

/// Creates accounts with their initial deposits through `create_trading_account`.
pub async fn create_accounts<'e, E: Executor<'e, Database = Postgres>>(
    e: E,
    accounts: &[(Uuid, Decimal)],
) -> Result<u64> {
    let ids: Vec<Uuid> = accounts.iter().map(|a| a.0).collect();
    let deposits: Vec<Decimal> = accounts.iter().map(|a| a.1).collect();
    let created: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE (r ->> 'success')::boolean) \
         FROM unnest($1::uuid[], $2::numeric[]) AS a(id, deposit) \
         CROSS JOIN LATERAL create_trading_account(a.id, a.deposit) AS r",
    )
    .bind(ids)
    .bind(deposits)
    .fetch_one(e)
    .await?;
    Ok(created as u64)
}

/// Writes executed orders with their positions, ledger transfers and balance changes in
/// one statement, at historical times. Fails (changing nothing) if any account would go
/// negative or a symbol is unknown.
pub async fn insert_executed_orders(conn: &mut PgConnection, orders: &[SeedOrder]) -> Result<u64> {
    let n = orders.len();
    let mut ids = Vec::with_capacity(n);
    let mut positions = Vec::with_capacity(n);
    let mut users = Vec::with_capacity(n);
    let mut symbols = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut sides = Vec::with_capacity(n);
    let mut quantities = Vec::with_capacity(n);
    let mut prices = Vec::with_capacity(n);
    let mut txs: Vec<Option<Uuid>> = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut ats = Vec::with_capacity(n);
    for o in orders {
        ids.push(o.id);
        positions.push(o.position_id);
        users.push(o.user_id);
        symbols.push(o.symbol.clone());
        types.push(o.order_type.to_string());
        sides.push(o.side.to_string());
        quantities.push(o.quantity);
        prices.push(o.price);
        txs.push(o.transaction_id);
        keys.push(o.idempotency_key.clone());
        ats.push(o.at);
    }
    let inserted: i64 = sqlx::query_scalar(
        "WITH input AS ( \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
                                  $7::numeric[], $8::numeric[], $9::uuid[], $10::text[], $11::timestamptz[]) \
                 AS i(id, position_id, user_id, symbol, order_type, side, quantity, price, transaction_id, key, at) \
         ), calc AS ( \
             SELECT i.*, round(i.quantity * i.price * ins.margin_rate, 8) AS margin, \
                    round(i.quantity * i.price * ins.commission_rate, 8) AS commission \
             FROM input i JOIN instruments ins ON ins.symbol = i.symbol \
         ), new_orders AS ( \
             INSERT INTO orders (id, user_id, symbol, order_type, side, quantity, price, status, transaction_id, \
                                 idempotency_key, commission, execution_price, total_cost, executed_at, position_id, \
                                 created_at, updated_at) \
             SELECT id, user_id, symbol, order_type, side, quantity, price, 'executed', transaction_id, key, \
                    commission, price, margin + commission, at, position_id, at, at FROM calc \
             RETURNING 1 \
         ), new_positions AS ( \
             INSERT INTO positions (id, user_id, order_id, symbol, side, quantity, entry_price, margin_used, \
                                    commission_paid, transaction_id, opened_at) \
             SELECT position_id, user_id, id, symbol, side, quantity, price, margin, commission, transaction_id, at \
             FROM calc \
         ), new_transfers AS ( \
             INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, created_at) \
             SELECT c.user_id, 'user_cash', x.credit, x.amount, x.kind, c.id, c.at \
             FROM calc c CROSS JOIN LATERAL (VALUES \
                 ('user_margin'::ledger_account, c.margin, 'margin_lock'::transfer_kind), \
                 ('house_commission'::ledger_account, c.commission, 'commission'::transfer_kind)) \
                 AS x(credit, amount, kind) \
             WHERE x.amount > 0 \
         ), balances AS ( \
             UPDATE profiles p SET balance = p.balance - s.total, margin_used = p.margin_used + s.margin \
             FROM (SELECT user_id, sum(margin + commission) AS total, sum(margin) AS margin \
                   FROM calc GROUP BY user_id) s \
             WHERE p.id = s.user_id \
         ), daily AS ( \
             INSERT INTO daily_pnl_tracking AS d (user_id, trading_date, orders_executed, commission_paid) \
             SELECT user_id, (at AT TIME ZONE 'UTC')::date, count(*), sum(commission) FROM calc GROUP BY 1, 2 \
             ON CONFLICT (user_id, trading_date) DO UPDATE \
             SET orders_executed = d.orders_executed + excluded.orders_executed, \
                 commission_paid = d.commission_paid + excluded.commission_paid \
         ) \
         SELECT count(*) FROM new_orders",
    )
    .bind(ids)
    .bind(positions)
    .bind(users)
    .bind(symbols)
    .bind(types)
    .bind(sides)
    .bind(quantities)
    .bind(prices)
    .bind(txs)
    .bind(keys)
    .bind(ats)
    .fetch_one(&mut *conn)
    .await?;
    if inserted as usize != n {
        return Err(Error::BadInput(format!("wrote {inserted} of {n} orders: an instrument is unknown")));
    }
    Ok(inserted as u64)
}

/// An order that never executed (pending, or failed with a reason), for the demo book.
#[derive(Debug, Clone)]
pub struct SeedUnexecuted {
    pub id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub side: &'static str,
    pub quantity: Decimal,
    pub price: Decimal,
    pub status: &'static str,
    pub failure_reason: Option<String>,
    pub transaction_id: Option<Uuid>,
    pub idempotency_key: String,
    pub at: DateTime<Utc>,
}

/// Writes orders that moved no money.
pub async fn insert_unexecuted_orders(conn: &mut PgConnection, orders: &[SeedUnexecuted]) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO orders (id, user_id, symbol, order_type, side, quantity, price, status, failure_reason, \
                             transaction_id, idempotency_key, created_at, updated_at) \
         SELECT id, user_id, symbol, 'market', side, quantity, price, status, failure_reason, transaction_id, key, at, at \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::numeric[], $6::numeric[], $7::text[], \
                     $8::text[], $9::uuid[], $10::text[], $11::timestamptz[]) \
              AS i(id, user_id, symbol, side, quantity, price, status, failure_reason, transaction_id, key, at)",
    )
    .bind(orders.iter().map(|o| o.id).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.user_id).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.symbol.clone()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.side.to_string()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.quantity).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.price).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.status.to_string()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.failure_reason.clone()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.transaction_id).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.idempotency_key.clone()).collect::<Vec<_>>())
    .bind(orders.iter().map(|o| o.at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
