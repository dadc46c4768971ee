//! `maintenance on|off --reason R`: switched, then proved by a probe.

use serde_json::json;

use super::args::{self, GlobalArgs, OnOff};
use super::output::print_json;
use super::{check_reason, connect};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Result};
use crate::core::sanitize;
use crate::core::workflow::incident::Observation;

pub(super) async fn maintenance(g: &GlobalArgs, a: args::MaintenanceArgs) -> Result<i32> {
    check_reason(&a.reason)?;
    let (_s, pool) = connect(g).await?;
    let on = a.mode == OnOff::On;
    // Switched, then proved: a probe order inside a transaction that is rolled back.
    let (r, p) = crate::ops::maintenance::switch_maintenance(&pool, on, &a.reason).await?;
    let (state, probe, refused) = (p.state, p.probe_code, p.new_orders_refused);
    let verified = refused == on;
    let seen = Observation::Maintenance { on, reason: a.reason.clone(), verified };
    super::observe(g, vec![seen], Some(&pool)).await;
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
