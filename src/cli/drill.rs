//! `drill [--level 1|3]`: the automated drills, every step checked. Level 1 rolls back
//! orders of drill accounts; Level 3 takes a database of its own on the sandbox through a
//! full-system rollback.

use super::args::GlobalArgs;
use super::{print_json, say};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::sanitize;
use crate::ops::drill::{Step, run};
use crate::store::target;

fn print_steps(steps: &[Step]) {
    for (i, s) in steps.iter().enumerate() {
        println!(
            "{:>2}. {}  {} ({} ms)\n      {}",
            i + 1,
            if s.passed { "PASS" } else { "FAIL" },
            s.name,
            s.elapsed_ms,
            sanitize::line(&s.detail)
        );
    }
}

/// `incident-console drill`.
pub(super) async fn drill(g: &GlobalArgs, level: u8) -> Result<i32> {
    match level {
        1 => {}
        3 => return drill_level3(g).await,
        _ => {
            return Err(Error::BadInput(
                "--level 1 drills rollbacks of orders, --level 3 a full-system rollback; there is no Level 2 drill"
                    .into(),
            ));
        }
    }
    let settings = target::resolve(g.database_url(), &g.session(), &say).await?;
    let report = run(&settings).await?;
    if g.json {
        print_json(&report)?;
    } else {
        println!("Rollback drill on {} by {}", report.database, sanitize::line(&report.operator));
        print_steps(&report.steps);
        println!("Drill {}", if report.passed { "PASSED: every step held." } else { "FAILED." });
    }
    Ok(if report.passed { EXIT_OK } else { EXIT_CHECK_FAILED })
}

async fn drill_level3(g: &GlobalArgs) -> Result<i32> {
    if g.database_url().is_some() {
        return Err(Error::BadInput(
            "the Level 3 drill rolls back a release and a service: it runs only on the sandbox, in a database of its \
             own there (drop --database-url)"
                .into(),
        ));
    }
    let exe = std::env::current_exe().map_err(|e| Error::BadInput(format!("cannot find this program's path: {e}")))?;
    say("Level 3 drill on a database of its own on the sandbox (made afresh, dropped at the end) …");
    let report = crate::ops::drill_level3::run(&g.session(), &exe, &say).await?;
    if g.json {
        print_json(&report)?;
    } else {
        println!("Level 3 drill (full-system rollback) on the sandbox");
        print_steps(&report.steps);
        if let Some(dir) = &report.incident_dir {
            println!("Incident journal: {}", dir.display());
        }
        if let Some(r) = &report.report {
            println!("Report: {}", r.display());
        }
        println!("Level 3 drill {}", if report.passed { "PASSED: every step held." } else { "FAILED." });
    }
    Ok(if report.passed { EXIT_OK } else { EXIT_CHECK_FAILED })
}
