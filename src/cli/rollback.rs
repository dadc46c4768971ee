//! `rollback ORDER --user U [--transaction]`: one order or its transaction group, after its
//! pre-check and a typed confirmation, journaled as intended before it runs, proved by the
//! post-check. Batches are `batch.rs`.

use super::approvals::{Obtained, journal_use, obtain};
use crate::core::approval::ApprovalKind;
use crate::ops::approval::{Ask, current_incident};
use std::time::Duration;

use serde_json::json;

use super::args::{self, GlobalArgs};
use super::output::{self, print_json};
use super::precheck::print_precheck;
use super::signals::Interrupts;
use super::{check_reason, confirm, connect, not_confirmed};
use crate::core::contract::RollbackAndPostcheck;
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, EXIT_OUTCOME_NOT_JOURNALED, Error, Result};
use crate::core::format::money;
use crate::core::{observed, sanitize};
use crate::ops::rollback::{RollbackRequest, rollback_and_prove};
use crate::store::db;

pub(super) async fn rollback_one(g: &GlobalArgs, a: args::RollbackArgs) -> Result<i32> {
    check_reason(&a.reason)?;
    let (order, user) = match (a.order, a.user) {
        (Some(o), Some(u)) => (o, u),
        _ => return Err(Error::BadInput("give the order and --user".into())),
    };
    let (_s, pool) = connect(g).await?;

    // Round trip 1: every pre-check, and the baseline.
    let pre = db::precheck(&pool, order, user).await?;
    if !g.json {
        print_precheck(&pre);
    }
    let figures = match (&pre.baseline, pre.figures()) {
        (Some(b), Some(f)) if pre.ready => (b.clone(), f),
        _ => {
            let (code, message) = pre.refusal();
            if !a.no_journal {
                super::observe(g, vec![observed::precheck(&pre, order, user)], Some(&pool)).await;
            }
            if g.json {
                print_json(&json!({ "precheck": pre, "refused": { "error_code": code, "message": message },
                                     "rollback": null, "postcheck": null }))?;
            } else {
                println!("Refused ({code}): {message}. Nothing was changed.");
            }
            return Ok(EXIT_CHECK_FAILED);
        }
    };
    let (baseline, f) = figures;
    let plan = if a.transaction {
        format!(
            "Roll back {} executed order(s) of transaction {} for user {}: refund {}, release margin {}.",
            f.group.order_ids.len(),
            f.transaction_id.map(|t| t.to_string()).unwrap_or_else(|| "(none)".into()),
            user,
            money(f.group.expected_refund),
            money(f.group.expected_margin_release)
        )
    } else {
        format!(
            "Roll back order {order} of user {user}: refund {}, release margin {}.",
            money(f.expected_refund),
            money(f.expected_margin_release)
        )
    };
    if !a.yes {
        eprintln!("{plan}\nReason: {}", sanitize::line(&a.reason));
        if !confirm("Type yes to roll back: ".into(), "yes".into()).await? {
            return not_confirmed(g);
        }
    } else if !g.json {
        println!("{plan}");
    }

    // Nothing moves before its intent is on disk in the incident's journal (or, with
    // --no-journal, its waiver is in the audit log): else refused, nothing changed.
    let operation = uuid::Uuid::new_v4();
    // A second person, when the policy asks for one (a group at Level 3, or past this
    // login's budget): the rollback then runs under the approval's operation.
    let scope: Vec<(uuid::Uuid, uuid::Uuid)> =
        if a.transaction { f.group.order_ids.iter().map(|&o| (o, user)).collect() } else { vec![(order, user)] };
    let ask = Ask {
        kind: if a.transaction { ApprovalKind::Group } else { ApprovalKind::Batch },
        operation,
        orders: scope,
        target: None,
        reason: a.reason.clone(),
        incident: current_incident(),
        preview: json!({ "preview": plan }),
        single: !a.transaction,
    };
    let approval = obtain(g, &pool, &ask).await?;
    if let Obtained::Stopped(code) = approval {
        return Ok(code);
    }
    let (orders, refund) =
        if a.transaction { (f.group.order_ids.len() as u64, f.group.expected_refund) } else { (1, f.expected_refund) };
    let intent = observed::rollback_intended(operation, order, user, a.transaction, orders, refund, &a.reason);
    let before = vec![observed::precheck(&pre, order, user)];
    let recorded = super::intend(g, a.no_journal, before, intent, &[(order, user)], &pool).await?;

    // Round trip 2: rollback and post-check together, retried and recorded as the console's.
    let req = RollbackRequest { order, user, reason: a.reason.clone(), baseline, group: a.transaction, operation };
    let result = match run_interruptible(&pool, &req).await {
        Ok(r) => r,
        Err(e) => {
            let failed = observed::rollback_failed(&e.to_string(), order, user, a.transaction, &a.reason, operation);
            if let Some(why) = super::outcome(g, &recorded, vec![failed], Some(&pool)).await {
                super::outcome_lost(&why, operation);
            }
            return Err(e);
        }
    };
    let ok = result.rollback.success
        && result.postcheck.as_ref().is_some_and(|p| p.successful)
        && !result.rollback.breaker_opened;
    let seen = observed::rollback(&result, order, user, a.transaction, &a.reason, operation);
    let journal_error = super::outcome(g, &recorded, seen, Some(&pool)).await;
    if result.rollback.success {
        journal_use(g, &pool, &approval).await;
    }
    if journal_error.is_none() {
        super::settle(g, &recorded, &pool).await;
    }
    if g.json {
        let mut out = json!({ "precheck": pre, "rollback": result.rollback, "postcheck": result.postcheck });
        if let Some(why) = &journal_error {
            out["journal_error"] = json!(why);
        }
        print_json(&out)?;
    } else {
        print_outcome(&result);
    }
    if result.rollback.breaker_opened {
        eprintln!(
            "The database's post-check of the account failed after the rollback: the circuit breaker is now OPEN and \
             every rollback is refused (breaker status; a person closes it with breaker close --reason \"...\")."
        );
    }
    if let Some(why) = &journal_error {
        super::outcome_lost(why, operation);
        return Ok(EXIT_OUTCOME_NOT_JOURNALED);
    }
    Ok(if ok { EXIT_OK } else { EXIT_CHECK_FAILED })
}

/// Runs the rollback on a connection of its own. Ctrl-C (or SIGTERM, SIGHUP) cancels it on
/// the server at once (a cancelled call changes nothing, and that is what is reported); a
/// second one stops waiting, and what the database shows is read back.
async fn run_interruptible(pool: &db::Db, req: &RollbackRequest) -> Result<RollbackAndPostcheck> {
    let asked = std::sync::atomic::AtomicBool::new(false);
    let mut conn = pool.acquire().await?;
    let backend = match conn.session() {
        Some(s) => db::backend_identity(s).await.ok(),
        None => None,
    };
    let mut interrupts = Interrupts::listen();
    let was_asked = || asked.load(std::sync::atomic::Ordering::Relaxed);
    let call = rollback_and_prove(pool, &mut conn, req, &was_asked);
    tokio::pin!(call);
    let mut signals = 0;
    loop {
        tokio::select! {
            r = &mut call => {
                return match r {
                    Err(e) if db::is_cancel(&e) && asked.load(std::sync::atomic::Ordering::Relaxed) => Err(Error::CheckFailed(
                        "cancelled on the server before it committed: nothing was changed".into(),
                    )),
                    other => other,
                };
            }
            name = interrupts.next() => {
                signals += 1;
                asked.store(true, std::sync::atomic::Ordering::Relaxed);
                match (signals, backend) {
                    (1, Some((pid, _))) => {
                        eprintln!("\n{name}: cancelling on the server … ({name} again stops waiting)");
                        let _ = tokio::time::timeout(Duration::from_secs(2), db::cancel_backend(pool, pid)).await;
                    }
                    _ => {
                        eprintln!("\n{name}: not waiting any longer; reading the order back from the database …");
                        break;
                    }
                }
            }
        }
    }
    // The call was given up: end its server process, then read what it left.
    let lost = Error::CheckFailed(
        "the wait was ended, and the call was stopped on the server before it committed: nothing was changed".into(),
    );
    crate::ops::rollback::settle(pool, req, backend, lost).await
}

/// What the rollback did and what its post-check found, for people.
fn print_outcome(result: &RollbackAndPostcheck) {
    let r = &result.rollback;
    if let Some(why) = &r.reply_lost {
        println!("The reply was lost ({}); the database's rows show this rollback committed:", sanitize::line(why));
    }
    if r.success {
        // A rollback read back after its reply was lost has no count of transfers and no
        // duration: say nothing of them rather than "0" (the post-check counts the reversals).
        let how = match (r.transfers_reversed, r.duration_us) {
            (Some(t), Some(us)) => format!(", {t} transfer(s) reversed in {} ms", us as f64 / 1000.0),
            (Some(t), None) => format!(", {t} transfer(s) reversed"),
            (None, _) => String::new(),
        };
        println!(
            "Rolled back {} order(s): refunded {}, margin released {}{how}.",
            r.order_ids.as_ref().map_or(0, Vec::len),
            money(r.refunded.unwrap_or_default()),
            money(r.margin_released.unwrap_or_default()),
        );
    } else {
        println!(
            "Refused ({}): {}. Nothing was changed.",
            sanitize::line(r.error_code.as_deref().unwrap_or("unknown")),
            sanitize::line(r.message.as_deref().unwrap_or(""))
        );
    }
    if let Some(p) = &result.postcheck {
        println!("Post-check against the baseline: {}", if p.successful { "PASSED" } else { "FAILED" });
        print!("{}", output::checks(&p.checks));
    }
}
