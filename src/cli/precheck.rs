//! `precheck ORDER --user U [--baseline-out FILE]`.

use super::args::{self, GlobalArgs};
use super::connect;
use super::output::{self, print_json};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::format::money;
use crate::core::observed;
use crate::store::db;

pub(super) fn print_precheck(p: &crate::core::contract::Precheck) {
    println!("Pre-check: {}", if p.ready { "READY" } else { "NOT READY" });
    print!("{}", output::checks(&p.checks));
    if let Some(f) = p.figures() {
        println!(
            "Baseline at {}: balance {}, margin used {}, open positions {}",
            f.captured_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
            money(f.balance),
            money(f.margin_used),
            f.open_positions
        );
        // What a rollback would give back: only when one could run now.
        let would = if p.ready { "refund" } else { "(not ready) would refund" };
        println!(
            "  This order:        {would} {}, margin released {}",
            money(f.expected_refund),
            money(f.expected_margin_release)
        );
        if f.transaction_id.is_some() {
            println!(
                "  Transaction group: {} executed order(s), refund {}, margin released {}, {} left alone",
                f.group.order_ids.len(),
                money(f.group.expected_refund),
                money(f.group.expected_margin_release),
                f.group.skipped.len()
            );
        }
    }
}

pub(super) async fn precheck(g: &GlobalArgs, a: args::PrecheckArgs) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let p = db::precheck(&pool, a.order, a.user).await?;
    super::observe(g, vec![observed::precheck(&p, a.order, a.user)], Some(&pool)).await;
    if let Some(path) = &a.baseline_out {
        let baseline = p
            .baseline
            .as_ref()
            .ok_or_else(|| Error::CheckFailed("no baseline: the order or the account does not exist".into()))?;
        let text =
            serde_json::to_string_pretty(baseline).map_err(|source| Error::Encode { what: "the baseline", source })?;
        std::fs::write(path, text).map_err(|e| Error::file("write", path, e))?;
    }
    if g.json {
        print_json(&p)?;
    } else {
        print_precheck(&p);
        if let Some(path) = &a.baseline_out {
            println!("Baseline written to {}", path.display());
        }
    }
    Ok(if p.ready { EXIT_OK } else { EXIT_CHECK_FAILED })
}
