//! `service status|rollback --to VERSION [--demo STATE_DIR]`: the deployed service's
//! version read, or the service rolled back and judged (exit 0 passed, 1 not); and the
//! sandbox's demo service (`sandbox service run|version|deploy|probe`).

use super::args::{DemoServiceAction, GlobalArgs, ServiceAction, ServiceArgs};
use super::output::print_json;
use super::say;
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::sanitize;
use crate::core::service::{CommandRun, ServiceConfig};
use crate::store::demo_service;

pub(super) async fn service_command(g: &GlobalArgs, a: ServiceArgs) -> Result<i32> {
    let cfg = config(&a)?;
    match a.action {
        ServiceAction::Status => {
            let read = crate::ops::service::read_version(&cfg).await?;
            if g.json {
                print_json(&read)?;
            } else {
                print_run(&read.run);
                match &read.version {
                    Some(v) => println!("Running version: {v}"),
                    None => println!("The running version could not be read."),
                }
            }
            Ok(if read.version.is_some() { EXIT_OK } else { EXIT_CHECK_FAILED })
        }
        ServiceAction::Rollback { to } => {
            // A signal drops the rollback: the command running is killed with its process
            // group, and nobody is told the service was rolled back.
            let mut interrupts = super::signals::Interrupts::listen();
            let r = tokio::select! {
                r = crate::ops::service::rollback_service(&cfg, &to, &say) => r?,
                signal = interrupts.next() => {
                    say(&format!(
                        "{signal}: the service rollback was stopped and the command running was killed; the \
                         service may be part way: read its version with `service status`."
                    ));
                    if g.json {
                        print_json(&serde_json::json!({ "passed": false, "interrupted": signal }))?;
                    }
                    return Ok(EXIT_CHECK_FAILED);
                }
            };
            let seen = crate::core::observed::service_rollback(&r, &to);
            super::observe(g, vec![seen], None).await;
            if g.json {
                print_json(&r)?;
            } else {
                println!();
                for run in r.commands.iter().chain(&r.probe) {
                    print_run(run);
                }
                if r.version_reads > 1 {
                    println!("(the version was read {} times after the rollback command)", r.version_reads);
                }
                println!("{}: {}", if r.passed { "PASSED" } else { "FAILED" }, r.verdict);
            }
            Ok(if r.passed { EXIT_OK } else { EXIT_CHECK_FAILED })
        }
    }
}

/// The demo service's commands with `--demo`, else config.toml's `[service]`.
fn config(a: &ServiceArgs) -> Result<ServiceConfig> {
    if let Some(dir) = &a.demo {
        let exe = std::env::current_exe().map_err(|e| Error::file("find", "this program", e))?;
        return Ok(demo_service::demo_service_config(&exe, dir));
    }
    let path = crate::store::config::config_path()?;
    crate::store::config::ConsoleConfig::load()?.service.ok_or_else(|| {
        Error::BadInput(format!(
            "{} has no [service] table: set its rollback, version and probe commands (`config example` shows \
             them), or use --demo STATE_DIR for the sandbox's demo service",
            sanitize::line(&path.display().to_string())
        ))
    })
}

/// One command as it ran: what ran, how it ended, what it printed (already redacted and
/// escaped by `core::service`).
fn print_run(run: &CommandRun) {
    println!("[{}] $ {}", run.role, run.argv_shown);
    println!("  {} ({} ms)", run.ending(), run.elapsed_ms);
    for line in run.output.lines() {
        println!("  | {line}");
    }
}

/// `sandbox service run|version|deploy|probe`.
pub(super) async fn demo(action: DemoServiceAction) -> Result<i32> {
    tokio::task::spawn_blocking(move || demo_blocking(action)).await.map_err(|e| Error::task("the demo service", e))?
}

fn demo_blocking(action: DemoServiceAction) -> Result<i32> {
    let answer = match action {
        DemoServiceAction::Run { state_dir, listen, version } => {
            demo_service::serve(&state_dir, &listen, version.as_deref())?;
            return Ok(EXIT_OK);
        }
        DemoServiceAction::Version { state_dir } => demo_service::request(&state_dir, "GET", "/version")?,
        DemoServiceAction::Probe { state_dir } => demo_service::request(&state_dir, "GET", "/probe")?,
        DemoServiceAction::Deploy { state_dir, version } => {
            let v = crate::core::service::check_version(&version)
                .map_err(|e| Error::BadInput(format!("--version: {e}")))?;
            demo_service::deploy(&state_dir, v)?
        }
    };
    let body = sanitize::multiline(&answer.body);
    if (200..300).contains(&answer.status) {
        println!("{body}");
        Ok(EXIT_OK)
    } else {
        eprintln!("the demo service answered {}: {body}", answer.status);
        Ok(EXIT_CHECK_FAILED)
    }
}
