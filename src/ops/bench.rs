//! `incident-console bench`: rollback throughput through the batch path, and the time of a
//! whole-book audit, each next to a baseline measured on the same server in the same run
//! (pgbench's built-in TPC-B-like transaction; plain `count(*)` over the audited tables),
//! because this machine is shared and only ratios are meaningful.

use std::sync::Arc;
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::core::batch::BatchItem;
use crate::core::error::{Error, Result};
use crate::ops::batch::{self, BatchOptions, Progress};
use crate::store::connect::ConnectSettings;
use crate::store::db::{self, SeedOrder};
use crate::store::sandbox::{self};

/// Rollback throughput at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackFigures {
    /// Connections.
    pub concurrency: u16,
    /// Orders rolled back.
    pub orders: usize,
    /// Wall time.
    pub seconds: f64,
    /// Orders per second.
    pub orders_per_second: f64,
    /// pgbench TPS at the same client count (mean of a run before and one after).
    pub pgbench_tps: Option<f64>,
    /// orders/s divided by pgbench TPS.
    pub ratio: Option<f64>,
    /// Retries the batch needed.
    pub retries: u64,
}

/// The audit timing.
#[derive(Debug, Clone, Serialize)]
pub struct AuditFigures {
    /// Orders in the book.
    pub orders: i64,
    /// Ledger transfers in the book.
    pub transfers: i64,
    /// Best of three, `ledger_audit_full()`: every table recomputed.
    pub full_seconds: f64,
    /// Best of three, `count(*)` over the tables the full audit reads.
    pub full_count_seconds: f64,
    /// full / count.
    pub full_ratio: f64,
    /// Building the first checkpoint (horizon and figures).
    pub checkpoint_seconds: f64,
    /// Orders rolled back after the checkpoint (what the incremental audit has to add).
    pub changed_orders: usize,
    /// Best of three, `ledger_audit()` from the checkpoint.
    pub incremental_seconds: f64,
    /// Best of three, `count(*)` over the tables the incremental audit reads (the book's
    /// tables and the checkpoint's).
    pub incremental_count_seconds: f64,
    /// incremental / count.
    pub incremental_ratio: f64,
    /// Violations found by either (must be zero).
    pub violations: usize,
}

/// Everything the bench measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Server version.
    pub server: String,
    /// Rollback figures per concurrency.
    pub rollback: Vec<RollbackFigures>,
    /// Audit figures.
    pub audit: Option<AuditFigures>,
}

fn say(msg: &str) {
    eprintln!("{msg}");
}

/// The server to benchmark on: an admin URL (database `postgres`) and a way to name other
/// databases on it.
struct Server {
    admin: ConnectSettings,
    binaries: Option<sandbox::ServerBinaries>,
}

impl Server {
    fn database(&self, name: &str) -> Result<ConnectSettings> {
        let opts = self.admin.options()?;
        let mut s = self.admin.clone();
        s.url = replace_database(&s.url, opts.get_database().unwrap_or("postgres"), name)?;
        Ok(s)
    }
}

fn replace_database(url: &str, _current: &str, name: &str) -> Result<String> {
    // postgres://user@host:port/DB?query  ->  the path segment is the database.
    let scheme_end = url.find("://").ok_or_else(|| Error::BadInput("the database URL has no scheme".into()))? + 3;
    let path_start = url[scheme_end..].find('/').map(|i| scheme_end + i);
    let query_start = url.find('?');
    Ok(match path_start {
        Some(p) if query_start.is_none_or(|q| p < q) => {
            let end = query_start.unwrap_or(url.len());
            format!("{}/{}{}", &url[..p], name, &url[end..])
        }
        _ => {
            let end = query_start.unwrap_or(url.len());
            format!("{}/{}{}", &url[..end], name, &url[end..])
        }
    })
}

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

async fn seed(
    conn: &mut PgConnection,
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

fn pgbench_tps(server: &Server, db: &ConnectSettings, clients: u16, seconds: u32, init: bool) -> Result<Option<f64>> {
    let Some(bins) = &server.binaries else { return Ok(None) };
    let pgbench = bins.tool("pgbench");
    let pgbench = if pgbench.is_file() {
        pgbench
    } else if let Some(p) = which("pgbench") {
        p
    } else {
        say("pgbench is not installed: no TPS baseline");
        return Ok(None);
    };
    let opts = db.options()?;
    let mut base = std::process::Command::new(&pgbench);
    let host =
        opts.get_socket().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|| opts.get_host().to_string());
    base.env("PGHOST", host)
        .env("PGPORT", opts.get_port().to_string())
        .env("PGUSER", opts.get_username())
        .env("PGDATABASE", opts.get_database().unwrap_or("postgres"));
    if let Some(pw) = password_of(&db.url) {
        base.env("PGPASSWORD", pw);
    }
    if init {
        let out = std::process::Command::new(&pgbench)
            .envs(base.get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))))
            .args(["-i", "-q", "-s", "10"])
            .output()
            .map_err(|e| Error::Other(format!("cannot run pgbench: {e}")))?;
        if !out.status.success() {
            return Err(Error::Other(format!(
                "pgbench -i failed: {}",
                crate::core::sanitize::multiline(&String::from_utf8_lossy(&out.stderr))
            )));
        }
    }
    let c = clients.to_string();
    let out = base
        .args(["-n", "-c", &c, "-j", &c, "-T", &seconds.to_string()])
        .output()
        .map_err(|e| Error::Other(format!("cannot run pgbench: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    if tps.is_none() {
        return Err(Error::Other(format!(
            "pgbench printed no tps: {}",
            crate::core::sanitize::multiline(&String::from_utf8_lossy(&out.stderr))
        )));
    }
    Ok(tps)
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(tool)).find(|p| p.is_file()))
}

fn password_of(url: &str) -> Option<String> {
    let opts: sqlx::postgres::PgConnectOptions = url.parse().ok()?;
    let _ = opts;
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, p)| p.to_string())
}

/// `count(*)` over every table the full audit reads.
const COUNT_BOOK: &str = "SELECT (SELECT count(*) FROM profiles) + (SELECT count(*) FROM orders) \
     + (SELECT count(*) FROM positions) + (SELECT count(*) FROM ledger_transfers) \
     + (SELECT count(*) FROM order_audit_log)";
/// ... and the incremental audit, which also reads the checkpoint.
const COUNT_INCREMENTAL: &str = "SELECT (SELECT count(*) FROM profiles) + (SELECT count(*) FROM orders) \
     + (SELECT count(*) FROM positions) + (SELECT count(*) FROM ledger_transfers) \
     + (SELECT count(*) FROM order_audit_log) + (SELECT count(*) FROM ledger_audit_checkpoint_users)";

async fn best_of_3(conn: &mut PgConnection, sql: &'static str) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let _: i64 = sqlx::query_scalar(sql).fetch_one(&mut *conn).await?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// Orders rolled back per concurrency level.
    pub orders: usize,
    /// Concurrency levels.
    pub concurrency: Vec<u16>,
    /// Size of the book the audit is timed on (0 skips it).
    pub audit_orders: usize,
    /// Seconds of each pgbench run (0 skips pgbench).
    pub pgbench_seconds: u32,
    /// Keep the benchmark's database afterwards.
    pub keep_database: bool,
}

/// Runs the benchmark on the server of `admin` (a database URL whose database can be
/// swapped for the benchmark's own).
pub async fn run(admin: ConnectSettings, args: &BenchPlan) -> Result<BenchReport> {
    let server = Server { admin, binaries: sandbox::ServerBinaries::find().ok() };
    let server = &server;
    let mut admin = server.admin.connection().await?;
    let version: String = sqlx::query_scalar("SELECT version()").fetch_one(&mut admin).await?;
    let tag = std::process::id();
    let book_db = format!("incident_bench_{tag}");
    let pg_db = format!("incident_pgbench_{tag}");
    db::drop_database(&mut admin, &book_db).await?;
    db::create_database(&mut admin, &book_db, None).await?;
    let result = run_in(server, args, &book_db, &pg_db, version).await;
    // Leave nothing behind, whatever happened.
    if args.keep_database {
        say(&format!("Kept the database {book_db}"));
    } else {
        let _ = db::drop_database(&mut admin, &book_db).await;
    }
    let _ = db::drop_database(&mut admin, &pg_db).await;
    result
}

async fn run_in(server: &Server, args: &BenchPlan, book_db: &str, pg_db: &str, version: String) -> Result<BenchReport> {
    let book = server.database(book_db)?;
    {
        let pool = book.pool(2).await?;
        db::migrate(&pool).await?;
        pool.close().await;
    }
    let mut conn = book.connection().await?;
    let mut figures = Vec::new();
    let mut pgbench_ready = false;
    let mut seeded = 0usize;
    for (level, &c) in args.concurrency.iter().enumerate() {
        say(&format!("Concurrency {c}: seeding {} orders …", args.orders));
        let users = (args.orders / 20).max(usize::from(c) * 16);
        let orders = seed(&mut conn, 100 + level as u64, users, args.orders, "seed").await?;
        seeded += orders.len();
        sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;

        let mut tps = Vec::new();
        if args.pgbench_seconds > 0 {
            if !pgbench_ready {
                let mut admin = server.admin.connection().await?;
                db::drop_database(&mut admin, pg_db).await?;
                db::create_database(&mut admin, pg_db, None).await?;
            }
            let pg = server.database(pg_db)?;
            let secs = args.pgbench_seconds;
            let init = !pgbench_ready;
            say(&format!("  pgbench -c {c} for {secs}s …"));
            let srv = Server { admin: server.admin.clone(), binaries: server.binaries.clone() };
            if let Some(t) = tokio::task::spawn_blocking(move || pgbench_tps(&srv, &pg, c, secs, init))
                .await
                .map_err(|e| Error::Other(e.to_string()))??
            {
                tps.push(t);
            }
            pgbench_ready = true;
        }

        say(&format!("  rolling back {} orders on {c} connection(s) …", orders.len()));
        let items: Vec<BatchItem> = orders.iter().map(|o| BatchItem { order_id: o.id, user_id: o.user_id }).collect();
        let opts = BatchOptions { concurrency: usize::from(c), ..BatchOptions::new("bench: batch rollback".into()) };
        let started = Instant::now();
        let (summary, _) = batch::run(&book, items, &opts, Arc::new(Progress::default())).await?;
        let seconds = started.elapsed().as_secs_f64();
        if summary.rolled_back != orders.len() {
            return Err(Error::CheckFailed(format!(
                "the batch rolled back {} of {} orders ({} refused, {} failed)",
                summary.rolled_back,
                orders.len(),
                summary.refused.len(),
                summary.failed.len()
            )));
        }

        if args.pgbench_seconds > 0 && pgbench_ready {
            let pg = server.database(pg_db)?;
            let secs = args.pgbench_seconds;
            say(&format!("  pgbench -c {c} again for {secs}s …"));
            let srv = Server { admin: server.admin.clone(), binaries: server.binaries.clone() };
            if let Some(t) = tokio::task::spawn_blocking(move || pgbench_tps(&srv, &pg, c, secs, false))
                .await
                .map_err(|e| Error::Other(e.to_string()))??
            {
                tps.push(t);
            }
        }
        let rate = orders.len() as f64 / seconds;
        let pgbench = (!tps.is_empty()).then(|| tps.iter().sum::<f64>() / tps.len() as f64);
        figures.push(RollbackFigures {
            concurrency: c,
            orders: orders.len(),
            seconds,
            orders_per_second: rate,
            pgbench_tps: pgbench,
            ratio: pgbench.map(|p| rate / p),
            retries: summary.retries,
        });
    }

    let audit = if args.audit_orders > 0 {
        let more = args.audit_orders.saturating_sub(seeded);
        if more > 0 {
            say(&format!("Audit: growing the book to {} orders …", args.audit_orders));
            seed(&mut conn, 900, (more / 100).max(100), more, "audit book").await?;
        }
        sqlx::query("VACUUM ANALYZE").execute(&mut conn).await?;
        let (orders, transfers): (i64, i64) =
            sqlx::query_as("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM ledger_transfers)")
                .fetch_one(&mut conn)
                .await?;
        say("  timing count(*) over the audited tables and ledger_audit_full() (best of 3) …");
        // Warm the cache once so neither side pays for the first read.
        let _ = db::ledger_audit_full(&mut conn).await?;
        let full_count_seconds = best_of_3(&mut conn, COUNT_BOOK).await?;
        let mut violations = 0;
        let mut full_seconds = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            violations += db::ledger_audit_full(&mut conn).await?.len();
            full_seconds = full_seconds.min(t.elapsed().as_secs_f64());
        }

        say("  checkpoint, 1,000 more rollbacks, then ledger_audit() from the checkpoint (best of 3) …");
        let pool = book.pool(2).await?;
        let t = Instant::now();
        db::refresh_audit_checkpoint(&pool, true).await?;
        let checkpoint_seconds = t.elapsed().as_secs_f64();
        let candidates: Vec<(Uuid, Uuid)> =
            sqlx::query_as("SELECT id, user_id FROM orders WHERE status = 'executed' ORDER BY id LIMIT 1000")
                .fetch_all(&mut conn)
                .await?;
        let items: Vec<BatchItem> =
            candidates.iter().map(|&(order_id, user_id)| BatchItem { order_id, user_id }).collect();
        let opts = BatchOptions { concurrency: 4, ..BatchOptions::new("bench: changes after the checkpoint".into()) };
        let (summary, _) = batch::run(&book, items, &opts, Arc::new(Progress::default())).await?;
        let _ = db::ledger_audit(&mut conn).await?;
        let incremental_count_seconds = best_of_3(&mut conn, COUNT_INCREMENTAL).await?;
        let mut incremental_seconds = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            violations += db::ledger_audit(&mut conn).await?.len();
            incremental_seconds = incremental_seconds.min(t.elapsed().as_secs_f64());
        }
        pool.close().await;
        Some(AuditFigures {
            orders,
            transfers,
            full_seconds,
            full_count_seconds,
            full_ratio: full_seconds / full_count_seconds,
            checkpoint_seconds,
            changed_orders: summary.rolled_back,
            incremental_seconds,
            incremental_count_seconds,
            incremental_ratio: incremental_seconds / incremental_count_seconds,
            violations,
        })
    } else {
        None
    };
    let _ = conn.close().await;
    Ok(BenchReport { server: version, rollback: figures, audit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_database_of_a_url() {
        let r = |u: &str| replace_database(u, "", "other").unwrap_or_default();
        assert_eq!(
            r("postgresql:///postgres?host=/tmp/x&port=5432&user=postgres"),
            "postgresql:///other?host=/tmp/x&port=5432&user=postgres"
        );
        assert_eq!(r("postgres://u:p@h:5432/db"), "postgres://u:p@h:5432/other");
        assert_eq!(r("postgres://u@h"), "postgres://u@h/other");
        assert_eq!(password_of("postgres://u:s3@h/db").as_deref(), Some("s3"));
        assert_eq!(password_of("postgres://u@h/db"), None);
    }
}
