//! `release list|show|diff|deploy|verify|rollback|restore`: the execution system's releases.

use super::approvals::{Obtained, journal_use, obtain};
use crate::core::approval::ApprovalKind;
use crate::ops::approval::{Ask, current_incident};
use std::time::Instant;

use serde_json::json;

use super::args::{GlobalArgs, ReleaseAction, ReleaseRollbackArgs};
use super::output::print_json;
use super::{check_reason, confirm, connect, not_confirmed, observe, say};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::release::{Drift, ReleaseRefusal, RevertPrecheck};
use crate::core::sanitize;
use crate::ops::release::{self, Answer};
use crate::store::db::Db;

pub(super) async fn release_command(g: &GlobalArgs, action: ReleaseAction) -> Result<i32> {
    let (settings, pool) = connect(g).await?;
    let code = match action {
        ReleaseAction::List => list(g, &pool).await,
        ReleaseAction::Show { name, definitions } => show(g, &pool, &name, definitions).await,
        ReleaseAction::Diff { from, to } => diff(g, &pool, &from, &to).await,
        ReleaseAction::Deploy { plan, to } => deploy(g, &pool, plan, to, settings.is_sandbox).await,
        ReleaseAction::Verify => verify(g, &pool).await,
        ReleaseAction::Rollback(a) => rollback(g, &pool, a).await,
        ReleaseAction::Restore { name } => restore(g, &pool, &name).await,
    };
    pool.close().await;
    code
}

/// An object changed since its release was deployed, as a person reads it.
fn drift_text(d: &Drift) -> String {
    format!(
        "{} {}: recorded {}, now {}",
        d.kind,
        sanitize::line(&d.identity),
        d.recorded_sum.as_deref().unwrap_or("absent"),
        d.current_sum.as_deref().unwrap_or("absent")
    )
}

fn refused(g: &GlobalArgs, what: &str, r: &ReleaseRefusal) -> Result<i32> {
    if g.json {
        print_json(&json!({ "success": false, "error_code": r.error_code, "message": r.message, "drift": r.drift }))?;
    }
    eprintln!("{what} refused ({}): {}", r.error_code, sanitize::line(&r.message));
    for d in &r.drift {
        eprintln!("  drift: {}", drift_text(d));
    }
    Ok(EXIT_CHECK_FAILED)
}

async fn list(g: &GlobalArgs, pool: &Db) -> Result<i32> {
    let rows = release::list(pool).await?;
    if g.json {
        print_json(&rows)?;
        return Ok(EXIT_OK);
    }
    if rows.is_empty() {
        println!("No release recorded. Deploy a plan with `release deploy --plan DIR`.");
        return Ok(EXIT_OK);
    }
    let current = rows.iter().rev().find(|r| r.active()).map(|r| r.id);
    println!("{:>4}  {:<24} {:<10} {:<17} {:>7}  state", "id", "release", "service", "deployed (UTC)", "objects");
    for r in &rows {
        let state = match (&r.reverted_at, Some(r.id) == current) {
            (Some(at), _) => format!(
                "reverted {} by {}",
                at.format("%Y-%m-%d %H:%M"),
                sanitize::line(r.reverted_by.as_deref().unwrap_or("?"))
            ),
            (None, true) => "CURRENT".to_string(),
            (None, false) => "in effect".to_string(),
        };
        println!(
            "{:>4}  {:<24} {:<10} {:<17} {:>7}  {state}",
            r.id,
            sanitize::line(&r.name),
            sanitize::line(r.service_version.as_deref().unwrap_or("-")),
            r.deployed_at.format("%Y-%m-%d %H:%M"),
            r.objects
        );
    }
    Ok(EXIT_OK)
}

async fn show(g: &GlobalArgs, pool: &Db, name: &str, definitions: bool) -> Result<i32> {
    let (row, objects) = release::show(pool, name).await?;
    if g.json {
        print_json(&json!({ "release": row, "objects": objects }))?;
        return Ok(EXIT_OK);
    }
    println!(
        "Release {} (id {}), service {}: {}",
        sanitize::line(&row.name),
        row.id,
        sanitize::line(row.service_version.as_deref().unwrap_or("-")),
        sanitize::line(&row.description)
    );
    println!(
        "Deployed {} by {} (login {}){}",
        row.deployed_at.format("%Y-%m-%d %H:%M:%S UTC"),
        sanitize::line(&row.deployed_by),
        sanitize::line(&row.deployed_by_login),
        row.reverted_at.map(|t| format!("; reverted {}", t.format("%Y-%m-%d %H:%M:%S UTC"))).unwrap_or_default()
    );
    println!("{} object(s) changed:", objects.len());
    for o in &objects {
        println!(
            "  {:<8} {:<10} {}  {} -> {}",
            o.change(),
            o.kind,
            sanitize::line(&o.identity),
            o.before_sum.as_deref().unwrap_or("(none)"),
            o.after_sum.as_deref().unwrap_or("(none)")
        );
        if definitions {
            for (label, def) in [("before", &o.before_def), ("after", &o.after_def)] {
                if let Some(d) = def {
                    println!("    {label}:");
                    for line in d.lines() {
                        println!("      {}", sanitize::line(line));
                    }
                }
            }
        }
    }
    Ok(EXIT_OK)
}

async fn diff(g: &GlobalArgs, pool: &Db, from: &str, to: &str) -> Result<i32> {
    let diffs = release::diff(pool, from, to).await?;
    if g.json {
        print_json(&diffs)?;
        return Ok(EXIT_OK);
    }
    if diffs.is_empty() {
        println!("{} and {} leave the same objects.", sanitize::line(from), sanitize::line(to));
    }
    for d in &diffs {
        println!("=== {} {}", d.kind, sanitize::line(&d.identity));
        for line in d.diff.lines() {
            println!("{}", sanitize::line(line));
        }
    }
    Ok(EXIT_OK)
}

async fn deploy(
    g: &GlobalArgs,
    pool: &Db,
    plan: Option<std::path::PathBuf>,
    to: Option<String>,
    is_sandbox: bool,
) -> Result<i32> {
    let scripts = match (&plan, is_sandbox) {
        (Some(dir), _) => crate::store::releases::read_plan(dir)?,
        (None, true) => crate::store::releases::sandbox_plan()?,
        (None, false) => {
            return Err(Error::BadInput("--plan DIR is required (the plan directory of the releases)".into()));
        }
    };
    let done = release::deploy_plan(pool, &scripts, to.as_deref(), &|_| None).await?;
    let ok = done.iter().all(|d| d.answer.get("success").and_then(serde_json::Value::as_bool) == Some(true));
    if g.json {
        print_json(&done)?;
    } else if done.is_empty() {
        println!("Every release of the plan is deployed already.");
    } else {
        for d in &done {
            match d.answer.get("success").and_then(serde_json::Value::as_bool) {
                Some(true) => println!(
                    "Deployed {} ({} object(s) changed; its verify script passed).",
                    sanitize::line(&d.name),
                    d.answer.get("objects").and_then(serde_json::Value::as_i64).unwrap_or(0)
                ),
                _ => eprintln!(
                    "Deploy of {} refused ({}): {}",
                    sanitize::line(&d.name),
                    sanitize::line(d.answer.get("error_code").and_then(serde_json::Value::as_str).unwrap_or("?")),
                    sanitize::line(d.answer.get("message").and_then(serde_json::Value::as_str).unwrap_or("?"))
                ),
            }
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_CHECK_FAILED })
}

async fn verify(g: &GlobalArgs, pool: &Db) -> Result<i32> {
    let v = release::verify(pool).await?;
    if g.json {
        print_json(&json!({ "current": v.current, "objects": v.objects, "drift": v.drift,
                            "verify_failed": v.verify_failed, "passed": v.passed() }))?;
    } else {
        match &v.current {
            None => println!("No release is in effect."),
            Some(c) => println!("Current release: {}", sanitize::line(c)),
        }
        if v.drift.is_empty() {
            println!("No drift: {} object(s) have the checksums their releases recorded.", v.objects);
        } else {
            println!("DRIFT: {} object(s) changed since their release was deployed:", v.drift.len());
            for d in &v.drift {
                println!("  {}", drift_text(d));
            }
        }
        match &v.verify_failed {
            None => println!("Verify script: passes."),
            Some(e) => println!("Verify script: FAILS: {}", sanitize::line(e)),
        }
    }
    Ok(if v.passed() { EXIT_OK } else { EXIT_CHECK_FAILED })
}

/// The pre-check as a person reads it.
fn print_precheck(p: &RevertPrecheck) {
    let names: Vec<String> = p.releases.iter().map(|r| sanitize::line(&r.name).into_owned()).collect();
    println!("Release rollback to {} (reverts {}), pre-check:", sanitize::line(&p.target), names.join(", "));
    println!("  Maintenance mode: {}", if p.maintenance_mode { "ON" } else { "off (the rollback will be refused)" });
    println!("  Objects it changes ({}):", p.objects.len());
    for o in &p.objects {
        println!("    {:<8} {:<10} {}", o.action, o.kind, sanitize::line(&o.identity));
    }
    if p.archive.is_empty() {
        println!("  Values it drops: none");
    } else {
        for a in &p.archive {
            println!("  Archives, then drops: {} {} ({} value(s))", a.kind, sanitize::line(&a.object), a.values);
        }
    }
    if p.drift.is_empty() {
        println!("  Drift: none (every object is as its release deployed it)");
    } else {
        for d in &p.drift {
            println!("  DRIFT, changed by hand since deployed: {}", drift_text(d));
        }
    }
    if let Some(v) = &p.target_service_version {
        println!("  Service version of {}: {}", sanitize::line(&p.target), sanitize::line(v));
    }
}

async fn rollback(g: &GlobalArgs, pool: &Db, a: ReleaseRollbackArgs) -> Result<i32> {
    if !a.dry_run || !a.reason.trim().is_empty() {
        check_reason(&a.reason)?;
    }
    let reason = if a.reason.trim().is_empty() { "dry run".to_string() } else { a.reason.clone() };
    let pre = match release::precheck(pool, &a.to).await? {
        Answer::Done(p) => p,
        Answer::Refused(r) => return refused(g, "Release rollback", &r),
    };
    if !g.json {
        print_precheck(&pre);
    }
    if !a.dry_run && !a.yes && !confirm(format!("Type {} to roll back to it: ", pre.target), pre.target.clone()).await?
    {
        return not_confirmed(g);
    }
    if !g.json {
        say(if a.dry_run {
            "Rehearsing the rollback (done, then undone) …"
        } else {
            "Rolling back, then proving …"
        });
    }
    let operation = uuid::Uuid::new_v4();
    let mut approval = Obtained::NotNeeded;
    if !a.dry_run {
        let ask = Ask {
            kind: ApprovalKind::ReleaseRollback,
            operation,
            orders: Vec::new(),
            target: Some(a.to.clone()),
            reason: reason.clone(),
            incident: current_incident(),
            preview: json!({ "reverts": pre.releases.iter().map(|r| r.name.clone()).collect::<Vec<_>>().join(", "),
                             "objects changed": pre.objects.len(),
                             "values archived": pre.archive.iter().map(|x| x.values).sum::<i64>(),
                             "drift": pre.drift.len() }),
            single: false,
        };
        approval = obtain(g, pool, &ask).await?;
        if let Obtained::Stopped(code) = approval {
            return Ok(code);
        }
    }
    let started = Instant::now();
    let done = match release::rollback(pool, &a.to, &reason, a.accept_drift, a.dry_run, Some(operation)).await? {
        Answer::Done(d) => d,
        Answer::Refused(r) => return refused(g, "Release rollback", &r),
    };
    let elapsed = started.elapsed();
    let proved = done.proof.as_ref().is_some_and(|p| p.passed);
    if !a.dry_run {
        let seen = crate::core::observed::release_rollback(&done.answer, done.proof.as_ref(), &reason);
        observe(g, vec![seen], Some(pool)).await;
        journal_use(g, pool, &approval).await;
    }
    if g.json {
        print_json(&json!({ "success": true, "dry_run": a.dry_run, "precheck": pre, "rollback": done.answer,
                            "proof": done.proof, "proved": proved, "elapsed_ms": elapsed.as_millis() }))?;
    } else {
        let names: Vec<String> = done.answer.reverted.iter().map(|r| sanitize::line(&r.name).into_owned()).collect();
        println!(
            "{} {} -> {} in one transaction ({} ms).",
            if a.dry_run { "Rehearsed (and undone):" } else { "Reverted" },
            names.join(", "),
            sanitize::line(&done.answer.target),
            elapsed.as_millis()
        );
        for x in &done.answer.archived {
            println!(
                "Archived {}: {} value(s), checksum {} = the live table's (archive set {}).",
                sanitize::line(&x.object),
                x.rows,
                x.archived_checksum,
                x.set_id
            );
        }
        let ok = done.answer.checks.iter().filter(|c| c.ok).count();
        println!("{ok}/{} object(s) have the target's checksums in the transaction.", done.answer.checks.len());
        if let Some(p) = &done.proof {
            println!("Proof:");
            for c in &p.checks {
                println!("  {}  {:<22} {}", if c.passed { "PASS" } else { "FAIL" }, c.name, sanitize::line(&c.detail));
            }
            println!("Release rollback {}", if p.passed { "PROVED." } else { "NOT PROVED." });
        }
    }
    Ok(if a.dry_run || proved { EXIT_OK } else { EXIT_CHECK_FAILED })
}

async fn restore(g: &GlobalArgs, pool: &Db, name: &str) -> Result<i32> {
    match release::restore(pool, name).await? {
        Answer::Refused(r) => refused(g, "Restore", &r),
        Answer::Done(d) => {
            if g.json {
                print_json(&d)?;
            } else if d.restored.is_empty() {
                println!("Nothing archived is waiting for {}.", sanitize::line(name));
            } else {
                for s in &d.restored {
                    println!(
                        "Restored {}: {} value(s), checksum {} = the archive's (set {}).",
                        sanitize::line(&s.object),
                        s.rows,
                        s.checksum,
                        s.set_id
                    );
                }
            }
            Ok(EXIT_OK)
        }
    }
}
