//! `bench`: rollbacks and the audit against pgbench's TPC-B on the same server.

use std::time::Duration;

use serde_json::json;

use super::args::{BenchArgs, GlobalArgs};
use super::{print_json, say};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::ops::bench::scale::{self, ScalePlan, ScaleReport, SizeReport, Unit};
use crate::ops::bench::{BenchPlan, BenchReport, CallFigures, run};
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
        print!(" {:>20}", format!("{} orders", crate::ops::bench::scale::size_label(s.orders)));
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
        script_clients: args.script_clients,
        batch_orders: args.batch_orders,
        console_rounds: args.console_rounds,
        peer: args.peer.or_else(|| crate::ops::bench::on_path("rainfrog")).map(|p| (p, args.peer_marker.clone())),
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
    if !g.json {
        println!();
        print!("{}", table(&report));
    }
    let clean = report.audit.as_ref().is_none_or(|a| a.violations == 0);
    Ok(if clean { EXIT_OK } else { EXIT_CHECK_FAILED })
}

/// The table: each figure as measured in this run, next to its goal.
fn table(r: &BenchReport) -> String {
    let mut rows: Vec<[String; 3]> = Vec::new();
    let versus = |f: &CallFigures| match (f.ratio, f.pgbench_tps) {
        (Some(ratio), Some(tps)) => {
            format!("{ratio:.2}x ({:.0} orders/s ÷ {tps:.0} tps)", f.orders_per_second)
        }
        _ => format!("{:.0} orders/s (no pgbench baseline)", f.orders_per_second),
    };
    if let Some(f) = &r.single_calls {
        rows.push([
            format!("rollback_execute_order_atomic, {} clients (pgbench script, one order per call)", f.clients),
            versus(f),
            "≥ 1.0x TPC-B".into(),
        ]);
    }
    if let Some(f) = &r.cli_batch {
        rows.push([
            format!("CLI batch of {} orders from a file (rollback --orders FILE --yes)", f.orders),
            versus(f),
            "≥ 3.0x TPC-B".into(),
        ]);
    }
    if let Some(a) = &r.audit {
        rows.push([
            format!("audit --full over {} orders ÷ count(*) over the tables it reads", a.orders),
            format!("{:.2}x ({:.3}s ÷ {:.3}s)", a.full_ratio, a.full_seconds, a.full_count_seconds),
            "≤ 3x".into(),
        ]);
    }
    if let Some(c) = &r.console {
        rows.push(match &c.peer {
            Some(p) => [
                format!("launch → first frame in tmux ÷ {}'s", crate::core::sanitize::line(&p.name)),
                format!(
                    "{:.2}x ({:.1} ms vs {:.1} ms; its {} at {:.1} ms)",
                    p.ratio,
                    c.first_frame_ms,
                    p.first_frame_ms,
                    crate::core::sanitize::line(&p.marker),
                    p.marker_ms
                ),
                "≤ 0.5x".into(),
            ],
            None => [
                "launch → first frame in tmux (no peer to compare with)".into(),
                format!("{:.1} ms", c.first_frame_ms),
                "≤ 0.5x a peer's".into(),
            ],
        });
        rows.push(["launch → orders listed".into(), format!("{:.1} ms", c.orders_listed_ms), "≤ 100 ms".into()]);
        rows.push([
            "RSS after paging, idle CPU, key latency, cancel".into(),
            format!(
                "{:.1} MB, {:.2}%, {:.1} ms, {}",
                c.rss_mb,
                c.idle_cpu_pct,
                c.key_ms,
                c.cancel_ms.map_or("not measured".into(), |m| format!("{m:.1} ms"))
            ),
            "keep (19–20 MB, 0.03%, 16–19 ms, 14 ms)".into(),
        ]);
    }
    if rows.is_empty() {
        return String::new();
    }
    let widths: Vec<usize> = (0..3).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    let mut out =
        format!("{} | {} | {}\n", pad("figure (same server, same run)", widths[0]), pad("measured", widths[1]), "goal");
    out.push_str(&format!("{}-|-{}-|-{}\n", "-".repeat(widths[0]), "-".repeat(widths[1]), "-".repeat(widths[2])));
    for r in rows {
        out.push_str(&format!("{} | {} | {}\n", pad(&r[0], widths[0]), pad(&r[1], widths[1]), r[2]));
    }
    if let Some(c) = &r.console {
        out.push_str(&format!("(console figures: medians of {} rounds in tmux)\n", c.rounds));
    }
    out
}
