//! `metrics`: rollback metrics and alerts.

use std::time::Duration;

use serde_json::json;

use super::args::{self, GlobalArgs};
use super::connect;
use super::output::print_json;
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::metrics::{self, Thresholds};
use crate::store::db;

fn chrono_duration(d: Duration) -> Result<chrono::Duration> {
    chrono::Duration::from_std(d).map_err(|_| Error::BadInput("duration too long".into()))
}

pub(super) async fn metrics_command(g: &GlobalArgs, a: args::MetricsArgs) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let now = chrono::Utc::now();
    let since = now
        .checked_sub_signed(chrono_duration(a.since)?)
        .ok_or_else(|| Error::BadInput("--since reaches before any date".into()))?;
    let records = db::rollback_records(&pool, since).await?;
    let failed_postchecks = db::failed_postchecks(&pool, since).await?;
    let violations = if a.skip_audit { 0 } else { db::ledger_audit(&pool).await?.len() as u64 };
    let thresholds = Thresholds {
        burst_count: a.burst_count,
        burst_window: chrono_duration(a.burst_window)?,
        long_rollback: chrono_duration(a.long_rollback)?,
    };
    let m = metrics::compute(&records, violations, failed_postchecks.max(0) as u64, now, &thresholds);
    if g.json {
        print_json(&json!({ "since": since, "audited": !a.skip_audit, "metrics": m }))?;
    } else {
        let opt = |d: Option<rust_decimal::Decimal>, unit: &str| d.map_or("none".to_string(), |d| format!("{d}{unit}"));
        println!("Rollbacks since {}", since.format("%Y-%m-%d %H:%M UTC"));
        println!("  orders rolled back {} · operations {}", m.orders_rolled_back, m.operations);
        println!("  calls {} · succeeded {} · failed {}", m.total, m.succeeded, m.failed);
        println!("  success rate {}", opt(m.success_rate_percent, " %"));
        println!("  mean {} · p95 {}", opt(m.mean_ms, " ms"), opt(m.p95_ms, " ms"));
        println!(
            "  last rollback {} · in the last {} minutes {}",
            m.last_rollback.map_or("never".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            thresholds.burst_window.num_minutes(),
            m.recent
        );
        if m.alerts.is_empty() {
            println!("Alerts: none");
        } else {
            for alert in &m.alerts {
                println!("ALERT: {}", alert.describe());
            }
        }
    }
    Ok(if m.alerts.is_empty() { EXIT_OK } else { EXIT_CHECK_FAILED })
}
