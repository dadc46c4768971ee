//! What the benchmark reads besides the contract: the server's version, table sizes, and
//! the `count(*)` baselines its audit timings are divided by.

use std::time::Instant;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::error::Result;

/// `count(*)` over every table the full audit reads.
const COUNT_BOOK: &str = "SELECT (SELECT count(*) FROM profiles) + (SELECT count(*) FROM orders) \
     + (SELECT count(*) FROM positions) + (SELECT count(*) FROM ledger_transfers) \
     + (SELECT count(*) FROM order_audit_log)";
/// ... and the incremental audit, which also reads the checkpoint.
const COUNT_INCREMENTAL: &str = "SELECT (SELECT count(*) FROM profiles) + (SELECT count(*) FROM orders) \
     + (SELECT count(*) FROM positions) + (SELECT count(*) FROM ledger_transfers) \
     + (SELECT count(*) FROM order_audit_log) + (SELECT count(*) FROM ledger_audit_checkpoint_users)";

/// `version()`.
pub async fn server_version(conn: &mut PgConnection) -> Result<String> {
    Ok(sqlx::query_scalar("SELECT version()").fetch_one(conn).await?)
}

/// `VACUUM ANALYZE`: fresh statistics and visibility maps before timing.
pub async fn vacuum_analyze(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("VACUUM ANALYZE").execute(conn).await?;
    Ok(())
}

/// Orders and ledger transfers in the book.
pub async fn book_counts(conn: &mut PgConnection) -> Result<(i64, i64)> {
    Ok(sqlx::query_as("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM ledger_transfers)")
        .fetch_one(conn)
        .await?)
}

/// Executed orders (id, user), at most `limit`, in id order.
pub async fn some_executed_orders(conn: &mut PgConnection, limit: i64) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as("SELECT id, user_id FROM orders WHERE status = 'executed' ORDER BY id LIMIT $1")
        .bind(limit)
        .fetch_all(conn)
        .await?)
}

/// Best of three, in seconds: `count(*)` over the tables the audit reads (with the
/// checkpoint's table for the incremental audit).
pub async fn time_audited_tables_count(conn: &mut PgConnection, incremental: bool) -> Result<f64> {
    let sql = if incremental { COUNT_INCREMENTAL } else { COUNT_BOOK };
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let _: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// The pgbench script of the single-call figure: each transaction takes the next order of
/// `bench_script_queue` and rolls it back with `rollback_execute_order_atomic`, one order
/// per call, as an outside tool would call the contract.
pub const SCRIPT_ROLLBACK: &str = "SELECT rollback_execute_order_atomic(q.order_id, q.user_id, 'bench: pgbench script') \
     FROM bench_script_queue q WHERE q.n = (SELECT nextval('bench_script_next'));\n";

/// Fills `bench_script_queue` (made afresh) with the orders the script rolls back, numbered
/// from 1 in the order given, and resets the sequence the script takes them by.
pub async fn create_script_queue(conn: &mut PgConnection, orders: &[(Uuid, Uuid)]) -> Result<()> {
    for sql in [
        "DROP TABLE IF EXISTS bench_script_queue",
        "DROP SEQUENCE IF EXISTS bench_script_next",
        "CREATE TABLE bench_script_queue (n bigint PRIMARY KEY, order_id uuid NOT NULL, user_id uuid NOT NULL)",
        "CREATE SEQUENCE bench_script_next",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    let (ids, users): (Vec<Uuid>, Vec<Uuid>) = orders.iter().copied().unzip();
    sqlx::query(
        "INSERT INTO bench_script_queue (n, order_id, user_id) \
         SELECT q.n, q.order_id, q.user_id FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS q (order_id, user_id, n)",
    )
    .bind(&ids)
    .bind(&users)
    .execute(&mut *conn)
    .await?;
    sqlx::query("ANALYZE bench_script_queue").execute(&mut *conn).await?;
    Ok(())
}

/// How many of the queued orders are rolled back now (what the script really did, whatever
/// pgbench counted).
pub async fn script_queue_rolled_back(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM bench_script_queue q JOIN orders o ON o.id = q.order_id WHERE o.status = 'rolled_back'",
    )
    .fetch_one(conn)
    .await?)
}

/// How many orders are rolled back with this exact reason.
pub async fn rolled_back_with_reason(conn: &mut PgConnection, reason: &str) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'rolled_back' AND rolled_back_reason = $1")
        .bind(reason)
        .fetch_one(conn)
        .await?)
}

// ---------------------------------------------------------------------------------------
// `bench --scale`: books of millions of orders generated on the server
// ---------------------------------------------------------------------------------------

/// The book's tables whose secondary structure (indexes other than the primary key, foreign
/// keys) a scale build drops and rebuilds: building an index once from sorted rows is many
/// times cheaper than ten million random insertions into it.
const BOOK_TABLES: &str =
    "ARRAY['orders', 'positions', 'ledger_transfers', 'profiles', 'daily_pnl_tracking']::regclass[]";

/// An index or constraint of the book as the catalog defines it: the statement that drops
/// it and the one that makes it again, both written by the server (`pg_get_indexdef`,
/// `pg_get_constraintdef`), so the rebuilt book has exactly the schema the migrations made,
/// whatever they made.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, sqlx::FromRow)]
pub struct BookStructure {
    /// 0: an index (or the unique or exclusion constraint it backs), 1: a foreign key.
    pub phase: i32,
    /// The table.
    pub tbl: String,
    /// The index's or constraint's name.
    pub name: String,
    /// `DROP INDEX …` or `ALTER TABLE … DROP CONSTRAINT …`.
    pub drop_sql: String,
    /// `CREATE INDEX …` or `ALTER TABLE … ADD CONSTRAINT …`.
    pub restore_sql: String,
}

/// The book's secondary structure: every foreign key from or to its tables, and every
/// index on them but the primary keys (kept: the rows go in in key order).
pub async fn book_structure(conn: &mut PgConnection) -> Result<Vec<BookStructure>> {
    let sql = format!(
        "SELECT 1 AS phase, c.conrelid::regclass::text AS tbl, c.conname::text AS name, \
                format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname) AS drop_sql, \
                format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname, \
                       pg_get_constraintdef(c.oid)) AS restore_sql \
         FROM pg_constraint c \
         WHERE c.contype = 'f' AND (c.conrelid = ANY ({BOOK_TABLES}) OR c.confrelid = ANY ({BOOK_TABLES})) \
         UNION ALL \
         SELECT 0, i.indrelid::regclass::text, ci.relname::text, \
                CASE WHEN c.oid IS NULL THEN format('DROP INDEX %s', i.indexrelid::regclass) \
                     ELSE format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname) END, \
                CASE WHEN c.oid IS NULL THEN pg_get_indexdef(i.indexrelid) \
                     ELSE format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname, \
                                 pg_get_constraintdef(c.oid)) END \
         FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid \
         LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x') \
         WHERE i.indrelid = ANY ({BOOK_TABLES}) AND NOT i.indisprimary \
         ORDER BY 1, 2, 3"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(conn).await?)
}

/// Runs one statement `book_structure` read from the catalog (a drop or a restore).
pub async fn run_structure_statement(conn: &mut PgConnection, sql: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(conn).await?;
    Ok(())
}

/// Whether the login is a superuser (a scale build loads rows as a replica does, without
/// firing triggers, which only a superuser may ask for).
pub async fn is_superuser(conn: &mut PgConnection) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetch_one(conn).await?)
}

/// The session settings of a scale build: rows loaded as a logical replica loads them (no
/// triggers: the per-row ones would cost more than the rows; the ledger audit and the
/// foreign keys, validated when they are added back, prove the result instead), memory for
/// sorting the indexes, and commits that do not wait for the disk (a crash loses a bench
/// database, nothing else).
pub async fn begin_scale_build(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql(
        "SET session_replication_role = replica; SET maintenance_work_mem = '512MB'; \
         SET synchronous_commit = off; SET work_mem = '64MB'",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Back to ordinary sessions: triggers fire again.
pub async fn end_scale_build(conn: &mut PgConnection) -> Result<()> {
    sqlx::raw_sql(
        "RESET session_replication_role; RESET maintenance_work_mem; RESET synchronous_commit; RESET work_mem",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// `users` accounts with `deposit` each, and each deposit's ledger transfer (what
/// `create_trading_account` writes), created a day before the book's first order. Ids
/// derived from the account's number, so every run builds the same book.
pub async fn scale_accounts(conn: &mut PgConnection, users: i64, deposit: Decimal, at: DateTime<Utc>) -> Result<u64> {
    let made = sqlx::query(
        "INSERT INTO profiles (id, balance, created_at) \
         SELECT md5('scale:u:' || k)::uuid, $2, $3 FROM generate_series(0, $1 - 1) k",
    )
    .bind(users)
    .bind(deposit)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, created_at) \
         SELECT id, 'house_clearing', 'user_cash', balance, 'deposit', created_at FROM profiles ORDER BY id",
    )
    .execute(conn)
    .await?;
    Ok(made.rows_affected())
}

/// The time-ordered id prefix of the order executed at `ms` milliseconds after the epoch:
/// orders' and positions' ids start with it (as UUIDv7 does), so both primary keys fill
/// from the right, and a range of ids is a range of time.
macro_rules! id_floor {
    ($ms:literal) => {
        concat!("(lpad(to_hex(", $ms, "::bigint), 12, '0') || repeat('0', 20))::uuid")
    };
}

/// Orders `lo..hi` of a book of `total` executed orders, one every 864 ms (100,000 a
/// day) up to `end_ms`, on `symbols` at `prices`, spread over every account by a hash of
/// the order's number. Amounts are computed from the instrument's rates exactly as
/// `execute_order_atomic` computes them (numeric, rounded to 8 places). Each order is its
/// own transaction group. Returns the orders written.
#[allow(clippy::too_many_arguments)]
pub async fn scale_orders(
    conn: &mut PgConnection,
    lo: i64,
    hi: i64,
    total: i64,
    end_ms: i64,
    symbols: &[String],
    prices: &[Decimal],
) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO orders (id, user_id, symbol, order_type, side, quantity, price, status, transaction_id, \
                             idempotency_key, commission, execution_price, total_cost, executed_at, position_id, \
                             created_at, updated_at) \
         SELECT g.id, g.user_id, g.symbol, 'market', g.side, g.quantity, g.price, 'executed', g.id, 'scale-' || g.n, \
                round(g.notional * i.commission_rate, 8), g.price, \
                round(g.notional * i.margin_rate, 8) + round(g.notional * i.commission_rate, 8), \
                g.at, g.position_id, g.at, g.at \
         FROM ( \
             SELECT n, ($5::text[])[n % cardinality($5::text[]) + 1] AS symbol, \
                    ($6::numeric[])[n % cardinality($6::numeric[]) + 1] AS price, \
                    CASE WHEN hashint8(n * 31) & 1 = 0 THEN 'buy' ELSE 'sell' END AS side, \
                    ((abs(hashint8(n * 7919)) % 50) + 1) * 1000::numeric AS quantity, \
                    ((abs(hashint8(n * 7919)) % 50) + 1) * 1000::numeric \
                        * ($6::numeric[])[n % cardinality($6::numeric[]) + 1] AS notional, \
                    u.ids[1 + abs(hashint8(n)) % cardinality(u.ids)] AS user_id, \
                    (t.p || '8' || t.s)::uuid AS id, (t.p || '9' || t.s)::uuid AS position_id, \
                    timestamptz 'epoch' + m.ms * interval '1 millisecond' AS at \
             FROM (SELECT array_agg(p.id ORDER BY p.id) AS ids FROM profiles p) u \
             CROSS JOIN generate_series($1::bigint, $2::bigint - 1) n \
             CROSS JOIN LATERAL (SELECT $4::bigint - ($3::bigint - 1 - n) * 864 AS ms) m \
             CROSS JOIN LATERAL (SELECT lpad(to_hex(m.ms), 12, '0') || '7000' AS p, lpad(to_hex(n), 15, '0') AS s) t \
         ) g JOIN instruments i ON i.symbol = g.symbol",
    )
    .bind(lo)
    .bind(hi)
    .bind(total)
    .bind(end_ms)
    .bind(symbols.to_vec())
    .bind(prices.to_vec())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The positions of the orders executed in `[from_ms, to_ms)`, read from the orders
/// themselves (their margin is the total cost less the commission).
pub async fn scale_positions(conn: &mut PgConnection, from_ms: i64, to_ms: i64) -> Result<u64> {
    let done = sqlx::query(concat!(
        "INSERT INTO positions (id, user_id, order_id, symbol, side, quantity, entry_price, margin_used, \
                                commission_paid, transaction_id, opened_at) \
         SELECT o.position_id, o.user_id, o.id, o.symbol, o.side, o.quantity, o.price, o.total_cost - o.commission, \
                o.commission, o.transaction_id, o.executed_at \
         FROM orders o WHERE o.id >= ",
        id_floor!("$1"),
        " AND o.id < ",
        id_floor!("$2"),
        " ORDER BY o.id"
    ))
    .bind(from_ms)
    .bind(to_ms)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The execution transfers (margin lock, commission) of the orders executed in
/// `[from_ms, to_ms)`.
pub async fn scale_transfers(conn: &mut PgConnection, from_ms: i64, to_ms: i64) -> Result<u64> {
    let done = sqlx::query(concat!(
        "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, created_at) \
         SELECT o.user_id, 'user_cash', x.credit, x.amount, x.kind, o.id, o.executed_at \
         FROM orders o CROSS JOIN LATERAL (VALUES \
             ('user_margin'::ledger_account, o.total_cost - o.commission, 'margin_lock'::transfer_kind), \
             ('house_commission'::ledger_account, o.commission::numeric, 'commission'::transfer_kind)) \
             AS x(credit, amount, kind) \
         WHERE o.id >= ",
        id_floor!("$1"),
        " AND o.id < ",
        id_floor!("$2"),
        " AND x.amount > 0 ORDER BY o.id, x.kind"
    ))
    .bind(from_ms)
    .bind(to_ms)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Every account's cached balance and margin after its orders (the ledger's figures), and
/// the daily figures `execute_order_atomic` keeps per account and day.
pub async fn scale_balances(conn: &mut PgConnection) -> Result<()> {
    sqlx::query(
        "UPDATE profiles p SET balance = p.balance - s.total, margin_used = p.margin_used + s.margin \
         FROM (SELECT user_id, sum(total_cost) AS total, sum(total_cost - commission) AS margin \
               FROM orders GROUP BY user_id) s \
         WHERE p.id = s.user_id",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO daily_pnl_tracking (user_id, trading_date, orders_executed, commission_paid) \
         SELECT user_id, (created_at AT TIME ZONE 'UTC')::date, count(*), sum(commission) \
         FROM orders GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows in the book's tables: orders, positions, ledger transfers, accounts.
pub async fn scale_counts(conn: &mut PgConnection) -> Result<(i64, i64, i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM positions), \
                (SELECT count(*) FROM ledger_transfers), (SELECT count(*) FROM profiles)",
    )
    .fetch_one(conn)
    .await?)
}

/// `count` executed orders (id, user) from the one executed at `from_ms` on, in id order
/// (the primary key: ids are time-ordered), for the bench to roll back.
pub async fn scale_orders_from(conn: &mut PgConnection, from_ms: i64, count: i64) -> Result<Vec<(Uuid, Uuid)>> {
    Ok(sqlx::query_as(concat!(
        "SELECT id, user_id FROM orders WHERE id >= ",
        id_floor!("$1"),
        " AND status = 'executed' ORDER BY id LIMIT $2"
    ))
    .bind(from_ms)
    .bind(count)
    .fetch_all(conn)
    .await?)
}

/// The database's size on disk, in bytes.
pub async fn database_bytes(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(conn).await?)
}
