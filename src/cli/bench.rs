//! `bench`: rollbacks and the audit against pgbench's TPC-B on the same server.

use std::time::Duration;

use serde_json::json;

use super::args::{BenchArgs, GlobalArgs};
use super::{print_json, say};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::ops::bench::scale::{self, ScalePlan, ScaleReport, SizeReport, Unit};
use crate::ops::bench::{BenchPlan, run};
use crate::store::sandbox::{self, Durability};
use crate::store::target;

/// The server to bench on: `--database-url`'s, else the sandbox's (started if need be), as
/// its superuser, without the interactive timeouts (building and auditing millions of
/// orders takes minutes).
async fn admin_settings(g: &GlobalArgs) -> Result<crate::store::connect::ConnectSettings> {
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
    settings.statement_timeout = Duration::ZERO;
    settings.lock_timeout = Duration::ZERO;
    Ok(settings)
}

/// `bench --scale`: the cost curve, a table per size as each is done, then one table of
/// every size.
async fn scale(g: &GlobalArgs, args: BenchArgs) -> Result<i32> {
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let console = if args.no_console {
        None
    } else {
        Some(std::env::current_exe().map_err(|e| Error::BadInput(format!("cannot find this program: {e}")))?)
    };
    let plan = ScalePlan { sizes, runs: usize::from(args.runs), keep_database: args.keep_database, console };
    let settings = admin_settings(g).await?;
    let json = g.json;
    let report = scale::run(settings, &plan, &say, &|size| {
        if !json {
            print_size(size);
        }
    })
    .await?;
    if json {
        print_json(&json!(report))?;
    } else {
        println!("Server: {}", crate::core::sanitize::line(&report.server));
        print_curve(&report);
    }
    Ok(EXIT_OK)
}

/// A figure for people: "3.1 ms", "2.40 s", "21.3 MB".
fn amount(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Kib => format!("{:.1} MB", v / 1024.0),
        Unit::Seconds if v >= 1.0 => format!("{v:.2} s"),
        Unit::Seconds if v >= 0.01 => format!("{:.0} ms", v * 1000.0),
        Unit::Seconds => format!("{:.2} ms", v * 1000.0),
    }
}

fn print_size(s: &SizeReport) {
    let b = &s.build;
    println!();
    println!(
        "Book of {} orders, {} accounts: generated in {:.1} s (rows {:.1} s, indexes and keys {:.1} s, VACUUM ANALYZE {:.1} s), {:.2} GB on disk; full audit checkpoint {:.1} s",
        s.orders,
        s.accounts,
        b.total_seconds,
        b.rows_seconds,
        b.structure_seconds,
        b.vacuum_seconds,
        s.database_bytes as f64 / 1e9,
        s.checkpoint_seconds
    );
    println!(
        "  {:<33} {:>9}  {:>21}  {:>4}  {:>7}  expected as the book grows",
        "figure", "median", "min-max", "runs", "x prev"
    );
    for f in &s.figures {
        println!(
            "  {:<33} {:>9}  {:>21}  {:>4}  {:>7}  {}",
            f.name,
            amount(f.unit, f.median),
            format!("{} - {}", amount(f.unit, f.min), amount(f.unit, f.max)),
            f.runs,
            f.growth.map_or("-".into(), |g| format!("{g:.2}x")),
            f.expected
        );
    }
}

/// Every size side by side, with the growth factor from one size to the next.
fn print_curve(r: &ScaleReport) {
    let Some(first) = r.sizes.first() else { return };
    println!();
    print!("  {:<33}", "figure (median; x: growth from the size before)");
    for s in &r.sizes {
        print!(" {:>20}", format!("{} orders", crate::ops::bench::scale::label(s.orders)));
    }
    println!();
    print!("  {:<33}", "generation");
    for s in &r.sizes {
        print!(" {:>20}", format!("{:.1} s", s.build.total_seconds));
    }
    println!();
    for (i, f) in first.figures.iter().enumerate() {
        print!("  {:<33}", f.name);
        for s in &r.sizes {
            let cell = s.figures.get(i).map_or(String::new(), |g| match g.growth {
                Some(x) => format!("{} ({x:.1}x)", amount(g.unit, g.median)),
                None => amount(g.unit, g.median),
            });
            print!(" {cell:>20}");
        }
        println!("  {}", f.expected);
    }
}

/// `incident-console bench`.
pub(super) async fn bench(g: &GlobalArgs, args: BenchArgs) -> Result<i32> {
    if args.scale {
        return scale(g, args).await;
    }
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        return Err(Error::BadInput("--concurrency takes positive numbers, e.g. 1,4".into()));
    }
    if args.chunk.is_empty() || args.chunk.iter().any(|&c| c == 0 || c > crate::ops::batch::MAX_CHUNK_SIZE) {
        return Err(Error::BadInput("--chunk takes numbers from 1 to 1000, e.g. 1,50".into()));
    }
    let settings = admin_settings(g).await?;
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
