//! `rollback` of a batch: by symbol and time window or from an order file, with a preview,
//! a typed confirmation, progress, Ctrl-C, and the audit of the touched users afterwards.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::approvals::{Obtained, journal_use, obtain};
use super::args::{self, GlobalArgs};
use super::output::{self, print_json};
use super::signals::Interrupts;
use super::{check_reason, confirm, connect, not_confirmed};
use crate::core::approval::ApprovalKind;
use crate::core::batch::{self, BatchItem, Outcome, Proof, Summary};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, EXIT_OUTCOME_NOT_JOURNALED, EXIT_UNREACHABLE, Error, Result};
use crate::core::format::money;
use crate::core::observed;
use crate::core::sanitize;
use crate::core::workflow::incident::Observation;
use crate::ops::approval::{Ask, current_incident};
use crate::ops::batch::{BatchOptions, Progress, cancel as cancel_batch, known_so_far, run as run_batch};
use crate::store::connect::ConnectSettings;
use crate::store::db;

async fn batch_items(pool: &db::Db, a: &args::RollbackArgs, json: bool) -> Result<Vec<BatchItem>> {
    if let Some(path) = &a.orders {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", path.display())))?;
        let ids = batch::parse_order_file(&text)?;
        let owners: std::collections::HashMap<Uuid, Uuid> = db::order_owners(pool, &ids).await?.into_iter().collect();
        let unknown: Vec<String> = ids.iter().filter(|i| !owners.contains_key(i)).map(|i| i.to_string()).collect();
        if !unknown.is_empty() {
            return Err(Error::BadInput(format!(
                "{} order id(s) in {} do not exist: {}",
                unknown.len(),
                path.display(),
                unknown.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        return Ok(ids
            .into_iter()
            .filter_map(|id| owners.get(&id).map(|&user_id| BatchItem { order_id: id, user_id }))
            .collect());
    }
    match (&a.symbol, a.from, a.to) {
        (Some(symbol), Some(from), Some(to)) => {
            let [Some(from), Some(to)] = db::resolve_time_bounds(pool, [Some(from), Some(to)]).await? else {
                return Err(Error::BadInput("--from and --to are both needed".into()));
            };
            if from >= to {
                return Err(Error::BadInput(format!("--from ({from}) must be before --to ({to})")));
            }
            if !json {
                // A time of day was resolved against the book: say which window it became.
                println!(
                    "Window: {} {} orders created from {} to {} UTC.",
                    sanitize::line(symbol),
                    a.status.as_str(),
                    from.format("%Y-%m-%d %H:%M:%S"),
                    to.format("%Y-%m-%d %H:%M:%S")
                );
            }
            Ok(db::orders_in_window(pool, symbol, from, to, a.status.as_str())
                .await?
                .into_iter()
                .map(|(order_id, user_id)| BatchItem { order_id, user_id })
                .collect())
        }
        _ => Err(Error::BadInput(
            "say what to roll back: ORDER --user U, or --symbol S --from T1 --to T2, or --orders FILE".into(),
        )),
    }
}

/// Where the batch's orders came from, for the approver.
fn batch_source(a: &args::RollbackArgs) -> String {
    match (&a.orders, &a.symbol, a.from, a.to) {
        (Some(path), ..) => format!("order file {}", path.display()),
        (None, Some(symbol), Some(from), Some(to)) => {
            format!("{symbol} {} orders from {from} to {to}", a.status.as_str())
        }
        _ => String::new(),
    }
}

pub(super) async fn rollback_batch(g: &GlobalArgs, a: args::RollbackArgs) -> Result<i32> {
    check_reason(&a.reason)?;
    let (settings, pool) = connect(g).await?;
    let items = batch_items(&pool, &a, g.json).await?;
    if items.is_empty() {
        if g.json {
            print_json(&json!({ "preview": null, "summary": null, "message": "no orders match" }))?;
        } else {
            println!("No orders match: nothing to roll back.");
        }
        return Ok(EXIT_OK);
    }
    let ids: Vec<Uuid> = items.iter().map(|i| i.order_id).collect();
    let preview = db::batch_preview(&pool, &ids).await?;
    let maintenance = db::maintenance_state(&pool).await?;
    let headline = preview.headline();
    if !g.json {
        println!("{headline}");
        if !maintenance.maintenance_mode {
            println!("Note: maintenance mode is off; new orders keep executing during the batch.");
        }
    }
    if !a.yes {
        eprintln!("Reason: {}", sanitize::line(&a.reason));
        let word = preview.orders.to_string();
        if !confirm(format!("Type {word} to roll back {word} order(s): "), word).await? {
            return not_confirmed(g);
        }
    }

    let mut opts = BatchOptions::new(a.reason.clone());
    // A second person, when the policy asks for one: the batch runs under the operation the
    // approval names, and only over the orders it covers.
    let pairs: Vec<(Uuid, Uuid)> = items.iter().map(|i| (i.order_id, i.user_id)).collect();
    let ask = Ask {
        kind: ApprovalKind::Batch,
        operation: opts.batch_id,
        orders: pairs.clone(),
        target: None,
        reason: a.reason.clone(),
        incident: current_incident(),
        preview: json!({ "preview": headline, "source": batch_source(&a) }),
        single: false,
    };
    let approval = obtain(g, &pool, &ask).await?;
    if let Obtained::Stopped(code) = approval {
        pool.close().await;
        return Ok(code);
    }
    opts.concurrency = usize::from(a.concurrency);
    if let Some(secs) = a.reconnect_for_secs {
        opts.reconnect_for = Duration::from_secs(secs);
    }
    if let Some(n) = a.chunk_size {
        opts.chunk_size = usize::from(n);
    }
    // Nothing moves before the batch's intent is on disk in the incident's journal (or, with
    // --no-journal, its waiver is in the audit log); its id is the batch's.
    let intent = observed::batch_intended(opts.batch_id, items.len() as u64, preview.total_refund, &a.reason);
    let recorded = super::intend(g, a.no_journal, Vec::new(), intent, &pairs, &pool).await?;
    let (summary, outcomes) = run_with_progress(&settings, &pool, items, &opts).await?;

    // Prove the batch: its post-check against the rows, and every touched user's balance
    // and margin against the ledger. A database that went away still gets the summary and
    // the journal entry; the proof says it did not run.
    // A batch that lost its server asks once, briefly, whether it is back, rather than let
    // the proof and the journal's database copy each wait out the pool's connection timeout
    // while the operator waits for the summary.
    let lost_server = !summary.unknown.is_empty() || !summary.failed.is_empty();
    let gone = if lost_server { settings.probe_connection(Duration::from_secs(3)).await.err() } else { None };
    let audit = match &gone {
        Some(why) => Err(Error::Unreachable(format!("the audit did not run: {why}"))),
        None => crate::ops::batch::prove(&pool, &summary, &outcomes).await,
    };
    let mut seen = vec![observed::batch(&summary, &a.reason, opts.batch_id)];
    if let Ok(proof) = &audit {
        seen.push(Observation::Audit { violations: proof.violations.len() as u64 });
        // A ledger violation among the accounts the batch touched: no rollback more until a
        // person has looked.
        if !proof.violations.is_empty() {
            let why = format!("{} ledger violation(s) after batch {}", proof.violations.len(), opts.batch_id);
            if let Ok(v) = db::open_breaker(&pool, &why, "ledger_audit").await
                && v.get("changed").and_then(serde_json::Value::as_bool) == Some(true)
            {
                seen.push(Observation::Breaker(crate::core::journal::event::Breaker {
                    open: true,
                    reason: why,
                    source: "ledger_audit".into(),
                }));
            }
        }
    }
    if summary.refused.iter().any(|(_, code, _)| code == "breaker_open") {
        eprintln!(
            "The circuit breaker is open: the batch stopped ({} order(s) not attempted). See `breaker status`; a person \
             closes it with `breaker close --reason \"...\"`, then the same batch finishes what is left.",
            summary.not_attempted
        );
    }
    // The journal file is written either way; its database copy catches up on the next run.
    let journal_error = super::outcome(g, &recorded, seen, gone.is_none().then_some(&pool)).await;
    if summary.rolled_back > 0 {
        journal_use(g, &pool, &approval).await;
    }
    if gone.is_some() && matches!(recorded, crate::ops::journaling::Recorded::Journal { .. }) {
        eprintln!(
            "note: the journal's database copy was not updated (the database did not answer); the next run copies it"
        );
    }
    if journal_error.is_none() && audit.is_ok() {
        super::settle(g, &recorded, &pool).await;
    }
    let (proof, audit_error) = match &audit {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    if g.json {
        let mut out = json!({ "preview": preview, "summary": summary,
                              "postcheck": proof.map(|p| &p.checks),
                              "audit_of_touched_users": proof.map(|p| &p.violations),
                              "audit_error": audit_error });
        if let Some(why) = &journal_error {
            out["journal_error"] = json!(why);
        }
        print_json(&out)?;
    } else {
        print_summary(&summary, proof, audit_error.as_deref());
    }
    if let Some(why) = &journal_error {
        super::outcome_lost(why, opts.batch_id);
        return Ok(EXIT_OUTCOME_NOT_JOURNALED);
    }
    Ok(match audit {
        _ if !summary.unknown.is_empty() => EXIT_UNREACHABLE,
        Err(e) => e.exit_code(),
        Ok(p) if summary.complete() && p.passed() => EXIT_OK,
        Ok(_) => EXIT_CHECK_FAILED,
    })
}

/// Runs the batch with a progress line on stderr. The first Ctrl-C (or SIGTERM, SIGHUP)
/// stops taking new orders and cancels the calls in flight on the server; the summary says
/// what is left (running the batch again finishes it). A second one stops waiting: what is
/// known is reported, each order in flight settled from the database or unknown.
async fn run_with_progress(
    settings: &ConnectSettings,
    pool: &db::Db,
    items: Vec<BatchItem>,
    opts: &BatchOptions,
) -> Result<(Summary, Vec<(BatchItem, Outcome)>)> {
    let progress = Arc::new(Progress::default());
    let total = items.len() as u64;
    let started = std::time::Instant::now();
    let shown = progress.clone();
    // Set when the run is over, cancelled or not: the last line says what really finished.
    let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run_over = over.clone();
    let drawer = tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
        if tty {
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} rolled back/finished · {per_sec} · eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
        }
        let mut last_line = std::time::Instant::now();
        loop {
            let ended = run_over.load(Ordering::Relaxed);
            let done = shown.done.load(Ordering::Relaxed);
            if tty {
                bar.set_position(done);
            } else if last_line.elapsed() >= Duration::from_secs(2) || done == total || ended {
                eprintln!(
                    "progress: {done}/{total} finished, {} rolled back{}",
                    shown.rolled_back.load(Ordering::Relaxed),
                    if ended && done < total { format!(", {} not attempted", total - done) } else { String::new() }
                );
                last_line = std::time::Instant::now();
            }
            if done >= total || ended {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bar.finish_and_clear();
    });
    let mut interrupts = Interrupts::listen();
    let run = run_batch(settings, items.clone(), opts, progress.clone());
    tokio::pin!(run);
    let mut signals = 0;
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            name = interrupts.next() => {
                signals += 1;
                if signals == 1 {
                    // Said once the cancel reached the server, not before: what commits
                    // meanwhile is reported as rolled back, never as stopped.
                    cancel_batch(pool, &progress).await;
                    eprintln!("\n{name}: cancelling on the server; the orders in flight stop and change nothing. \
                               {name} again stops waiting.");
                } else {
                    eprintln!("\n{name}: not waiting any longer; settling the orders in flight from the database …");
                    let elapsed = started.elapsed().as_millis();
                    break Ok(known_so_far(settings, &items, opts, &progress, elapsed).await);
                }
            }
        }
    };
    over.store(true, Ordering::Relaxed);
    let _ = drawer.await;
    result
}

/// The batch's summary for people: what happened, the money, each refusal and failure,
/// the audit of the touched users, and whether a second run can finish it.
fn print_summary(summary: &Summary, proof: Option<&Proof>, audit_error: Option<&str>) {
    println!(
        "Done in {:.1}s: {}{}.",
        summary.elapsed_ms as f64 / 1000.0,
        summary.outcome_sentence(),
        if summary.not_attempted > 0 { " (cancelled)" } else { "" }
    );
    println!(
        "Refunded {}, margin released {}, {} retries.",
        money(summary.refunded),
        money(summary.margin_released),
        summary.retries
    );
    for (id, code, msg) in &summary.refused {
        println!("  refused {id}: {} — {}", sanitize::line(code), sanitize::line(msg));
    }
    for (id, err) in &summary.failed {
        println!("  failed  {id}: {}", sanitize::line(err));
    }
    for (id, err) in &summary.unknown {
        println!("  UNKNOWN {id}: may be rolled back — {}", sanitize::line(err));
    }
    match (proof, audit_error) {
        (Some(p), _) => {
            println!("Post-check of the batch (the database's rows against this summary):");
            print!("{}", output::checks(&p.checks));
            print!("{}", output::violations(&p.violations, false));
        }
        (None, e) => println!(
            "The audit of the touched users did not run: {}. Run `incident-console audit` when the database is back.",
            sanitize::line(e.unwrap_or("no answer"))
        ),
    }
    if !summary.unknown.is_empty() {
        println!(
            "The {} unknown order(s) may or may not be rolled back: the database could not be asked. \
             Check them (`incident-console orders --id ID`) or run the same command again, which settles them.",
            summary.unknown.len()
        );
    }
    // Failed and unattempted orders may go through on a second run; refused ones will
    // be refused again (their state does not allow a rollback).
    let retryable = summary.failed.len() + summary.not_attempted;
    if retryable > 0 {
        println!(
            "Run the same command again to finish the {retryable} order(s) not done; nothing is rolled back twice."
        );
    }
    if !summary.refused.is_empty() {
        println!(
            "The {} refused order(s) cannot be rolled back as they stand (see why above); a second run refuses them again.",
            summary.refused.len()
        );
    }
}
