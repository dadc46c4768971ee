//! `maintenance on|off --reason R [--symbol S]`: switched (every symbol, or one), then
//! proved by a probe order of that symbol in every isolation level.

use serde_json::json;

use super::args::{self, GlobalArgs, OnOff};
use super::output::print_json;
use super::{check_reason, connect};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::sanitize;
use crate::core::workflow::incident::Observation;

pub(super) async fn maintenance(g: &GlobalArgs, a: args::MaintenanceArgs) -> Result<i32> {
    check_reason(&a.reason)?;
    let symbol = match &a.symbol {
        Some(s) => Some(crate::core::orders::parse_symbol(s).map_err(|e| Error::BadInput(format!("--symbol: {e}")))?),
        None => None,
    };
    let (_s, pool) = connect(g).await?;
    let on = a.mode == OnOff::On;
    // Switched, then proved: a probe order inside a transaction that is rolled back.
    let (r, p) = match &symbol {
        Some(s) => crate::ops::maintenance::switch_symbol_maintenance(&pool, s, on, &a.reason).await?,
        None => crate::ops::maintenance::switch_maintenance(&pool, on, &a.reason).await?,
    };
    let (state, probe, refused) = (p.state, p.probe_code, p.new_orders_refused);
    let verified = refused == on;
    let seen = match &symbol {
        Some(s) => Observation::SymbolMaintenance { symbol: s.clone(), on, reason: a.reason.clone(), verified },
        None => Observation::Maintenance { on, reason: a.reason.clone(), verified },
    };
    super::observe(g, vec![seen], Some(&pool)).await;
    if let Some(s) = &symbol {
        if g.json {
            print_json(&json!({ "result": r, "state": state, "symbol": s,
                                "probe": { "error_code": probe, "new_orders_refused": refused }, "verified": verified }))?;
        } else {
            let what = if on { "ON: its new orders are refused" } else { "off: its new orders are accepted" };
            println!("Maintenance mode for {s} only is {what}; other symbols trade.");
            match (on, refused) {
                (true, true) => {
                    println!("Verified: a probe order of {s} was refused (maintenance_mode) and rolled back.")
                }
                (true, false) => println!(
                    "NOT VERIFIED: a probe order of {s} was not refused for maintenance (got {}).",
                    sanitize::line(probe.as_deref().unwrap_or("success"))
                ),
                (false, true) => println!(
                    "NOT VERIFIED: {s} was switched back on, but a probe order of it is still refused{}.",
                    if state.maintenance_mode { " (maintenance mode is on for every symbol)" } else { "" }
                ),
                (false, false) => {
                    println!("Verified: a probe order of {s} was not refused for maintenance (rolled back).")
                }
            }
        }
        return Ok(if verified { EXIT_OK } else { EXIT_CHECK_FAILED });
    }
    if g.json {
        print_json(
            &json!({ "result": r, "state": state, "probe": { "error_code": probe, "new_orders_refused": refused },
                             "verified": verified }),
        )?;
    } else if on {
        println!(
            "Maintenance mode is ON since {}.",
            state.maintenance_since.map_or("?".into(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        );
        if refused {
            println!("Verified: a probe order was refused (maintenance_mode) and rolled back.");
        } else {
            println!(
                "NOT VERIFIED: a probe order was not refused for maintenance (got {}).",
                sanitize::line(probe.as_deref().unwrap_or("success"))
            );
        }
    } else if refused {
        println!("NOT VERIFIED: maintenance mode was switched off, but a probe order is still refused.");
    } else {
        println!("Maintenance mode is off: new orders are accepted (probe rolled back).");
    }
    Ok(if verified { EXIT_OK } else { EXIT_CHECK_FAILED })
}
