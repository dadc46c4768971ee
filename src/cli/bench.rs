//! `bench`: rollbacks and the audit against pgbench's TPC-B on the same server.

use std::time::Duration;

use serde_json::json;

use super::args::{BenchArgs, GlobalArgs};
use super::{print_json, say};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::ops::bench::{BenchPlan, run};
use crate::store::sandbox::{self, Durability};
use crate::store::target;

/// `incident-console bench`.
pub(super) async fn bench(g: &GlobalArgs, args: BenchArgs) -> Result<i32> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        return Err(Error::BadInput("--concurrency takes positive numbers, e.g. 1,4".into()));
    }
    if args.chunk.is_empty() || args.chunk.iter().any(|&c| c == 0 || c > crate::ops::batch::MAX_CHUNK_SIZE) {
        return Err(Error::BadInput("--chunk takes numbers from 1 to 1000, e.g. 1,50".into()));
    }
    let mut settings = match g.database_url() {
        Some(url) => target::settings_for(url.to_string(), false, &g.session()),
        None => {
            let cluster = tokio::task::spawn_blocking(sandbox::sandbox_cluster)
                .await
                .map_err(|e| Error::Sandbox(e.to_string()))??;
            target::ensure_ready(&cluster, Durability::Durable, &say).await?;
            target::settings_for(cluster.url("postgres"), true, &g.session())
        }
    };
    // Seeding a million orders and auditing them must not hit the interactive timeouts.
    settings.statement_timeout = Duration::ZERO;
    settings.lock_timeout = Duration::ZERO;
    let plan = BenchPlan {
        orders: args.orders,
        concurrency: args.concurrency,
        chunk_sizes: args.chunk,
        audit_orders: args.audit_orders,
        pgbench_seconds: args.pgbench_seconds,
        keep_database: args.keep_database,
    };
    let report = run(settings, &plan, &say).await?;
    if g.json {
        print_json(&json!(report))?;
    } else {
        println!("Server: {}", crate::core::sanitize::line(&report.server));
        for f in &report.rollback {
            println!(
                "Rollback, {} connection(s), {} per call: {} orders in {:.2}s = {:.0} orders/s; pgbench TPC-B-like {}; ratio {} ({} retries)",
                f.concurrency,
                f.chunk_size,
                f.orders,
                f.seconds,
                f.orders_per_second,
                f.pgbench_tps.map_or("not run".into(), |t| format!("{t:.0} tps")),
                f.ratio.map_or("n/a".into(), |r| format!("{r:.2}x")),
                f.retries
            );
        }
        if let Some(a) = &report.audit {
            println!(
                "Audit of {} orders / {} transfers, recomputed from the tables: {:.3}s; count(*) over the same tables {:.3}s; ratio {:.2}x",
                a.orders, a.transfers, a.full_seconds, a.full_count_seconds, a.full_ratio
            );
            println!(
                "Audit from a checkpoint ({:.2}s to build) after {} more rollbacks: {:.3}s; count(*) over the tables it reads {:.3}s; ratio {:.2}x; {} violation(s)",
                a.checkpoint_seconds,
                a.changed_orders,
                a.incremental_seconds,
                a.incremental_count_seconds,
                a.incremental_ratio,
                a.violations
            );
        }
    }
    let clean = report.audit.as_ref().is_none_or(|a| a.violations == 0);
    Ok(if clean { EXIT_OK } else { EXIT_CHECK_FAILED })
}
