//! `drill`: the automated rollback drill on drill accounts, every step checked.

use super::args::GlobalArgs;
use super::{print_json, say};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Result};
use crate::core::sanitize;
use crate::ops::drill::run;
use crate::store::target;

/// `incident-console drill`.
pub(super) async fn drill(g: &GlobalArgs) -> Result<i32> {
    let settings = target::resolve(g.database_url(), &g.session(), &say).await?;
    let report = run(&settings).await?;
    if g.json {
        print_json(&report)?;
    } else {
        println!("Rollback drill on {} by {}", report.database, sanitize::line(&report.operator));
        for (i, s) in report.steps.iter().enumerate() {
            println!(
                "{:>2}. {}  {} ({} ms)\n      {}",
                i + 1,
                if s.passed { "PASS" } else { "FAIL" },
                s.name,
                s.elapsed_ms,
                sanitize::line(&s.detail)
            );
        }
        println!("Drill {}", if report.passed { "PASSED: every step held." } else { "FAILED." });
    }
    Ok(if report.passed { EXIT_OK } else { EXIT_CHECK_FAILED })
}
