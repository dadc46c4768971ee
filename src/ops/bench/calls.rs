//! Two of the throughput figures, each between two pgbench TPC-B runs at the same
//! client count: the contract's single call driven by a pgbench script (as an outside tool
//! calls it), and the real CLI rolling back an order file (as a person runs it).

use std::time::Instant;

use serde::Serialize;
use sqlx::PgConnection;

use super::server::{Server, Workload, pgbench_tps};
use super::{Bench, book};
use crate::core::error::{Error, Result};
use crate::store::db;
use crate::store::files::ScratchDir;

/// The reason the CLI batch rolls back with (and is counted by afterwards).
const CLI_REASON: &str = "bench: CLI batch from an order file";

/// One throughput figure next to TPC-B at the same client count.
#[derive(Debug, Clone, Serialize)]
pub struct CallFigures {
    /// Clients (pgbench) or connections (the CLI's `--concurrency`).
    pub clients: u16,
    /// Orders rolled back, counted in the database afterwards.
    pub orders: usize,
    /// Wall time (pgbench's own for the script; launch to exit for the CLI).
    pub seconds: f64,
    /// Orders per second.
    pub orders_per_second: f64,
    /// pgbench TPC-B TPS at the same client count (mean of a run before and one after).
    pub pgbench_tps: Option<f64>,
    /// orders/s ÷ TPC-B tps.
    pub ratio: Option<f64>,
}

impl CallFigures {
    fn new(clients: u16, orders: usize, seconds: f64, tps: &[f64]) -> CallFigures {
        let rate = orders as f64 / seconds.max(f64::EPSILON);
        let pgbench = super::mean(tps);
        CallFigures {
            clients,
            orders,
            seconds,
            orders_per_second: rate,
            pgbench_tps: pgbench,
            ratio: pgbench.map(|p| rate / p),
        }
    }
}

impl Bench<'_> {
    /// `rollback_execute_order_atomic` called by a pgbench script at `clients` clients, one
    /// order per call, every call taking the next order of a queue.
    pub(super) async fn single_calls(
        &self,
        conn: &mut PgConnection,
        seed_no: u64,
        clients: u16,
        pgbench_ready: &mut bool,
    ) -> Result<CallFigures> {
        let say = self.say;
        let per_client = (self.plan.orders / usize::from(clients)).max(1);
        let orders = per_client * usize::from(clients);
        say(&format!("pgbench script, {clients} clients, one order per call: seeding {orders} orders …"));
        let users = (orders / 20).max(usize::from(clients) * 16);
        let book = book::seed(conn, say, seed_no, users, orders, "seed").await?;
        let queue: Vec<_> = book.iter().map(|o| (o.id, o.user_id)).collect();
        db::create_script_queue(conn, &queue).await?;
        db::vacuum_analyze(conn).await?;
        let mut tps: Vec<f64> = self.tpcb(clients, "", pgbench_ready).await?.into_iter().collect();
        let Some(binaries) = self.server.binaries.clone() else {
            return Err(Error::Tool {
                tool: "pgbench",
                detail: "no PostgreSQL binaries found to run the script with".into(),
            });
        };
        let scratch = ScratchDir::new("incident-console-bench")?;
        let file = scratch.path().join("rollback.sql");
        std::fs::write(&file, db::SCRIPT_ROLLBACK).map_err(|e| Error::file("write", &file, e))?;
        say(&format!("  pgbench -f rollback.sql -c {clients} -t {per_client} …"));
        let srv = Server { admin: self.server.admin.clone(), binaries: Some(binaries) };
        let book_db = self.book.clone();
        let workload = Workload::Script { file: file.clone(), per_client: per_client as u64 };
        let started = Instant::now();
        let script_tps = tokio::task::spawn_blocking(move || pgbench_tps(&srv, &book_db, clients, &workload, false))
            .await
            .map_err(|e| Error::task("pgbench", e))??;
        let wall = started.elapsed().as_secs_f64();
        let Some(script_tps) = script_tps else {
            return Err(Error::Tool { tool: "pgbench", detail: "is not installed: the script cannot run".into() });
        };
        // pgbench counts calls; the figure counts what the database shows rolled back.
        let done = usize::try_from(db::script_queue_rolled_back(conn).await?).unwrap_or(0);
        if done != orders {
            return Err(Error::CheckFailed(format!("the pgbench script rolled back {done} of {orders} orders")));
        }
        tps.extend(self.tpcb(clients, " again", pgbench_ready).await?);
        // pgbench's tps, like the TPC-B tps it is divided by, leaves out connecting; every
        // transaction rolled back one order (counted above), so it is orders per second.
        let seconds = if script_tps > 0.0 { orders as f64 / script_tps } else { wall };
        Ok(CallFigures::new(clients, orders, seconds, &tps))
    }

    /// The real binary: `rollback --orders FILE --yes` over `batch_orders` orders, launch to
    /// exit, at its default concurrency, compared with TPC-B at that many clients.
    pub(super) async fn cli_batch(
        &self,
        conn: &mut PgConnection,
        seed_no: u64,
        pgbench_ready: &mut bool,
    ) -> Result<CallFigures> {
        let say = self.say;
        let orders = self.plan.batch_orders;
        // The CLI's default `--concurrency`.
        let clients = 4u16;
        say(&format!("CLI batch: seeding {orders} orders …"));
        let users = (orders / 20).max(64);
        let book = book::seed(conn, say, seed_no, users, orders, "seed").await?;
        db::vacuum_analyze(conn).await?;
        let mut tps: Vec<f64> = self.tpcb(clients, "", pgbench_ready).await?.into_iter().collect();
        let scratch = ScratchDir::new("incident-console-bench")?;
        let file = scratch.path().join("orders.txt");
        let text: String = book.iter().map(|o| format!("{}\n", o.id)).collect();
        std::fs::write(&file, text).map_err(|e| Error::file("write", &file, e))?;
        let exe = std::env::current_exe().map_err(|e| Error::file("find", "this program", e))?;
        say(&format!("  incident-console rollback --orders FILE --yes ({orders} orders) …"));
        let home = scratch.path().to_path_buf();
        let url = self.book.url.clone();
        let started = Instant::now();
        let out = tokio::process::Command::new(exe)
            .env("DATABASE_URL", url)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &home)
            .env("XDG_DATA_HOME", &home)
            .env("INCIDENT_CONSOLE_DATA_DIR", home.join("data"))
            .env("INCIDENT_CONSOLE_CONFIG", home.join("config.toml"))
            .args(["rollback", "--yes", "--reason", CLI_REASON, "--orders"])
            .arg(&file)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| Error::Tool { tool: "incident-console", detail: format!("cannot run it: {e}") })?;
        let seconds = started.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(Error::Tool {
                tool: "incident-console",
                detail: format!(
                    "rollback --orders exited {}: {}",
                    out.status,
                    crate::core::sanitize::multiline(&String::from_utf8_lossy(&out.stderr))
                ),
            });
        }
        let done = usize::try_from(db::rolled_back_with_reason(conn, CLI_REASON).await?).unwrap_or(0);
        if done != orders {
            return Err(Error::CheckFailed(format!("the CLI batch rolled back {done} of {orders} orders")));
        }
        tps.extend(self.tpcb(clients, " again", pgbench_ready).await?);
        Ok(CallFigures::new(clients, orders, seconds, &tps))
    }
}
