//! `incident-console bench`: rollback throughput through the batch path, and the time of a
//! whole-book audit, each next to a baseline measured on the same server in the same run
//! (pgbench's built-in TPC-B-like transaction; plain `count(*)` over the audited tables),
//! because this machine is shared and only ratios are meaningful.

mod book;
mod calls;
mod console;
mod console_rss;
mod generate;
pub mod scale;
mod server;
mod terminal;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sqlx::{Connection, PgConnection};

use crate::core::batch::BatchItem;
use crate::core::error::{Error, Result};
use crate::ops::batch::{self, BatchOptions, Progress};
use crate::store::connect::ConnectSettings;
use crate::store::db;
use crate::store::sandbox;
pub use calls::CallFigures;
pub use console::ConsoleFigures;
use server::{Server, Workload, pgbench_tps};

/// Where progress is told (stderr for the CLI).
pub type Say<'a> = &'a (dyn Fn(&str) + Sync);

/// Rollback throughput at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackFigures {
    /// Connections.
    pub concurrency: u16,
    /// Orders per call and per transaction (`BatchOptions::chunk_size`).
    pub chunk_size: usize,
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
    /// Building the first checkpoint (a full one: the figures of one snapshot).
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
    /// `rollback_execute_order_atomic` driven by a pgbench script, one order per call.
    pub single_calls: Option<CallFigures>,
    /// The real CLI rolling back an order file.
    pub cli_batch: Option<CallFigures>,
    /// Audit figures.
    pub audit: Option<AuditFigures>,
    /// The console in tmux (and the peer's first frame).
    pub console: Option<ConsoleFigures>,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    /// Orders rolled back per concurrency level.
    pub orders: usize,
    /// Concurrency levels.
    pub concurrency: Vec<u16>,
    /// Orders per call of the batch, each measured at every concurrency level.
    pub chunk_sizes: Vec<usize>,
    /// Size of the book the audit is timed on (0 skips it).
    pub audit_orders: usize,
    /// Seconds of each pgbench run (0 skips pgbench).
    pub pgbench_seconds: u32,
    /// Keep the benchmark's database afterwards.
    pub keep_database: bool,
    /// Clients of the pgbench script that calls the contract one order at a time (0 skips).
    pub script_clients: u16,
    /// Orders of the CLI's batch from an order file (0 skips).
    pub batch_orders: usize,
    /// Rounds of the console in tmux (0 skips).
    pub console_rounds: usize,
    /// A peer TUI to launch against the same database, and the text of its first frame.
    pub peer: Option<(std::path::PathBuf, String)>,
}

/// The mean of the TPC-B runs around a figure (None without any).
fn mean(tps: &[f64]) -> Option<f64> {
    (!tps.is_empty()).then(|| tps.iter().sum::<f64>() / tps.len() as f64)
}

/// The median of some runs (None without any).
fn median(mut runs: Vec<f64>) -> Option<f64> {
    runs.sort_by(f64::total_cmp);
    let n = runs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(runs[n / 2]),
        _ => Some((runs[n / 2 - 1] + runs[n / 2]) / 2.0),
    }
}

/// A tool's path when it is on PATH.
pub fn on_path(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(tool)).find(|p| p.is_file()))
}

/// Runs the benchmark on the server of `admin` (a database URL whose database can be
/// swapped for the benchmark's own). Leaves nothing behind unless asked to keep it.
pub async fn run(admin: ConnectSettings, plan: &BenchPlan, say: Say<'_>) -> Result<BenchReport> {
    let server = Server { admin, binaries: sandbox::ServerBinaries::find().ok() };
    let mut admin = server.admin.session_connection("the benchmark").await?;
    let version = db::server_version(&mut admin).await?;
    let tag = std::process::id();
    let book_db = format!("incident_bench_{tag}");
    let pg_db = format!("incident_pgbench_{tag}");
    db::drop_database(&mut admin, &book_db).await?;
    db::create_database(&mut admin, &book_db, None).await?;
    let bench = Bench { server: &server, plan, book: server.database(&book_db)?, pg_db: &pg_db, say };
    let result = bench.run(version).await;
    if plan.keep_database {
        say(&format!("Kept the database {book_db}"));
    } else {
        let _ = db::drop_database(&mut admin, &book_db).await;
    }
    let _ = db::drop_database(&mut admin, &pg_db).await;
    result
}

/// One run: the server, the plan, and the benchmark's own databases.
struct Bench<'a> {
    server: &'a Server,
    plan: &'a BenchPlan,
    book: ConnectSettings,
    pg_db: &'a str,
    say: Say<'a>,
}

impl Bench<'_> {
    async fn run(&self, version: String) -> Result<BenchReport> {
        {
            let pool = self.book.session_pool(2, "the benchmark").await?;
            db::migrate(&pool).await?;
            // Four eyes off in the benchmark's own database: its thousands of rollbacks by
            // one login are what the policy stops, and it measures the rollback itself (the
            // step still reads the policy, as it does everywhere).
            db::set_approval_policy(&pool, &serde_json::json!({ "enabled": false })).await?;
            pool.close().await;
        }
        let mut conn = self.book.session_connection("the benchmark").await?;
        let mut rollback = Vec::new();
        let mut pgbench_ready = false;
        let mut seeded = 0usize;
        let mut level = 0;
        for &c in &self.plan.concurrency {
            for &chunk in &self.plan.chunk_sizes {
                let (figures, orders) = self.rollbacks_at(&mut conn, level, c, chunk, &mut pgbench_ready).await?;
                seeded += orders;
                level += 1;
                rollback.push(figures);
            }
        }
        let single_calls = if self.plan.script_clients > 0 {
            let f = self.single_calls(&mut conn, 500, self.plan.script_clients, &mut pgbench_ready).await?;
            seeded += f.orders;
            Some(f)
        } else {
            None
        };
        let cli_batch = if self.plan.batch_orders > 0 {
            let f = self.cli_batch(&mut conn, 600, &mut pgbench_ready).await?;
            seeded += f.orders;
            Some(f)
        } else {
            None
        };
        let audit = if self.plan.audit_orders > 0 { Some(self.audit(&mut conn, seeded).await?) } else { None };
        let console = if self.plan.console_rounds > 0 { self.console(&mut conn).await? } else { None };
        let _ = conn.close().await;
        Ok(BenchReport { server: version, rollback, single_calls, cli_batch, audit, console })
    }

    /// Seeds a book, rolls all of it back on `c` connections, with pgbench at `c` clients
    /// before and after. Returns the figures and the orders seeded.
    async fn rollbacks_at(
        &self,
        conn: &mut PgConnection,
        level: usize,
        c: u16,
        chunk: usize,
        pgbench_ready: &mut bool,
    ) -> Result<(RollbackFigures, usize)> {
        let say = self.say;
        say(&format!("Concurrency {c}, {chunk} order(s) per call: seeding {} orders …", self.plan.orders));
        let users = (self.plan.orders / 20).max(usize::from(c) * 16);
        let orders = book::seed(conn, say, 100 + level as u64, users, self.plan.orders, "seed").await?;
        db::vacuum_analyze(conn).await?;
        let mut tps: Vec<f64> = self.tpcb(c, "", pgbench_ready).await?.into_iter().collect();
        say(&format!("  rolling back {} orders on {c} connection(s) …", orders.len()));
        let items: Vec<BatchItem> = orders.iter().map(|o| BatchItem { order_id: o.id, user_id: o.user_id }).collect();
        let opts = BatchOptions {
            concurrency: usize::from(c),
            chunk_size: chunk,
            ..BatchOptions::new("bench: batch rollback".into())
        };
        let started = Instant::now();
        let (summary, _) = batch::run(&self.book, items, &opts, Arc::new(Progress::default())).await?;
        let seconds = started.elapsed().as_secs_f64();
        if summary.rolled_back != orders.len() {
            return Err(Error::CheckFailed(format!(
                "the batch rolled back {} of {} orders: {}",
                summary.rolled_back,
                orders.len(),
                summary.outcome_sentence()
            )));
        }
        tps.extend(self.tpcb(c, " again", pgbench_ready).await?);
        let rate = orders.len() as f64 / seconds;
        let pgbench = mean(&tps);
        let figures = RollbackFigures {
            concurrency: c,
            chunk_size: chunk,
            orders: orders.len(),
            seconds,
            orders_per_second: rate,
            pgbench_tps: pgbench,
            ratio: pgbench.map(|p| rate / p),
            retries: summary.retries,
        };
        Ok((figures, orders.len()))
    }

    /// The console's figures in tmux on a fresh book of executed orders (the rest of the
    /// bench may have rolled all of its orders back).
    async fn console(&self, conn: &mut PgConnection) -> Result<Option<ConsoleFigures>> {
        let say = self.say;
        say("Console: seeding 20000 executed orders to list and to cancel a batch of …");
        book::seed(conn, say, 700, 200, 20_000, "console book").await?;
        db::vacuum_analyze(conn).await?;
        let plan = console::ConsolePlan {
            url: self.book.url.clone(),
            rounds: self.plan.console_rounds,
            peer: self.plan.peer.clone(),
            batch_symbol: crate::store::demo::SYMBOLS[0].0.to_string(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let task = tokio::task::spawn_blocking(move || {
            let say = move |s: &str| {
                let _ = tx.send(s.to_string());
            };
            console::measure(&plan, &say)
        });
        while let Some(line) = rx.recv().await {
            say(&line);
        }
        task.await.map_err(|e| Error::task("the console's figures", e))?
    }

    /// TPC-B at `clients` (None when pgbench is not installed or the plan skips it); the
    /// first call makes pgbench's database and initialises its tables.
    async fn tpcb(&self, clients: u16, again: &str, pgbench_ready: &mut bool) -> Result<Option<f64>> {
        if self.plan.pgbench_seconds == 0 {
            return Ok(None);
        }
        if !*pgbench_ready {
            let mut admin = self.server.admin.session_connection("the benchmark").await?;
            db::drop_database(&mut admin, self.pg_db).await?;
            db::create_database(&mut admin, self.pg_db, None).await?;
        }
        let tps = self.pgbench(clients, !*pgbench_ready, again).await?;
        *pgbench_ready = true;
        Ok(tps)
    }

    /// pgbench's TPS at `c` clients on the benchmark's pgbench database (None: no pgbench).
    async fn pgbench(&self, c: u16, init: bool, again: &str) -> Result<Option<f64>> {
        let pg = self.server.database(self.pg_db)?;
        let secs = self.plan.pgbench_seconds;
        (self.say)(&format!("  pgbench -c {c}{again} for {secs}s …"));
        let srv = Server { admin: self.server.admin.clone(), binaries: self.server.binaries.clone() };
        let tps =
            tokio::task::spawn_blocking(move || pgbench_tps(&srv, &pg, c, &Workload::TpcB { seconds: secs }, init))
                .await
                .map_err(|e| Error::task("pgbench", e))??;
        if tps.is_none() {
            (self.say)("pgbench is not installed: no TPS baseline");
        }
        Ok(tps)
    }

    /// The full audit against `count(*)`, then a checkpoint, 1,000 more rollbacks, and the
    /// audit from the checkpoint against `count(*)` of what it reads.
    async fn audit(&self, conn: &mut PgConnection, seeded: usize) -> Result<AuditFigures> {
        let say = self.say;
        let more = self.plan.audit_orders.saturating_sub(seeded);
        if more > 0 {
            say(&format!("Audit: growing the book to {} orders …", self.plan.audit_orders));
            book::seed(conn, say, 900, (more / 100).max(100), more, "audit book").await?;
        }
        db::vacuum_analyze(conn).await?;
        let (orders, transfers) = db::book_counts(conn).await?;
        say("  timing count(*) over the audited tables and ledger_audit_full() (best of 3) …");
        // Warm the cache once so neither side pays for the first read.
        let _ = db::ledger_audit_full(&mut *conn).await?;
        let full_count_seconds = db::time_audited_tables_count(conn, false).await?;
        let mut violations = 0;
        let mut full_seconds = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            violations += db::ledger_audit_full(&mut *conn).await?.len();
            full_seconds = full_seconds.min(t.elapsed().as_secs_f64());
        }

        say("  checkpoint, 1,000 more rollbacks, then ledger_audit() from the checkpoint (best of 3) …");
        let pool = self.book.session_pool(2, "the benchmark").await?;
        let t = Instant::now();
        db::refresh_audit_checkpoint(&pool, true).await?;
        let checkpoint_seconds = t.elapsed().as_secs_f64();
        let items: Vec<BatchItem> = db::some_executed_orders(conn, 1000)
            .await?
            .into_iter()
            .map(|(order_id, user_id)| BatchItem { order_id, user_id })
            .collect();
        let opts = BatchOptions { concurrency: 4, ..BatchOptions::new("bench: changes after the checkpoint".into()) };
        let (summary, _) = batch::run(&self.book, items, &opts, Arc::new(Progress::default())).await?;
        let _ = db::ledger_audit(&mut *conn).await?;
        let incremental_count_seconds = db::time_audited_tables_count(conn, true).await?;
        let mut incremental_seconds = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            violations += db::ledger_audit(&mut *conn).await?.len();
            incremental_seconds = incremental_seconds.min(t.elapsed().as_secs_f64());
        }
        pool.close().await;
        Ok(AuditFigures {
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
    }
}
