//! The Rollback pane: one rollback at a time, of an order, its transaction group or a
//! batch, from its pre-check (or batch preview) through a reason and a confirmation to the
//! run and its result. The flow's state is in `flow`, its drawing in `draw`.

mod draw;
mod flow;

use crossterm::event::KeyEvent;
use uuid::Uuid;

use crate::console::app::{App, Effects, Load};
use crate::console::hints::Keys;
use crate::console::incident::{JournalEvent, JournalRequest};
use crate::console::keys::EventKeys;
use crate::console::panes::Pane;
use crate::console::panes::orders;
use crate::console::panes::postcheck::PostcheckView;
use crate::console::protocol::{BatchTarget, Command, RequestId};
use crate::core::batch::{BatchItem, Outcome, Proof, Summary};
use crate::core::contract::{BaselineFigures, BatchPreview, Precheck, RollbackAndPostcheck};
use crate::core::journal::Event;
use crate::core::keys::KeyAction;
use crate::core::observed;
use crate::core::workflow::Level;
use crate::core::workflow::incident::Step;
use rust_decimal::Decimal;

pub(crate) use draw::render;
pub use flow::{Flow, FlowTarget, LastBatch, Stage};

/// The keys the footer names.
pub(crate) const HINTS: &[(KeyAction, &str)] =
    &[(KeyAction::Rollback, "roll back"), (KeyAction::Cancel, "cancel/close")];

/// Keys: roll back the order, its group or the selection, and cancel (the first asked on
/// the rollback screen), wherever the focus is on the rollback screen.
pub(crate) fn key(app: &mut App, action: KeyAction) -> Option<Effects> {
    match action {
        KeyAction::Rollback => Some(start(app, false)),
        KeyAction::RollbackGroup => Some(start(app, true)),
        KeyAction::RollbackBatch => Some(start_batch(app)),
        KeyAction::Cancel => cancel(app),
        _ => None,
    }
}

/// Said when a rollback is asked for while one is prepared or runs.
fn one_at_a_time(app: &mut App) -> Effects {
    let text = format!(
        "A rollback is already being prepared or running ({} to abandon it).",
        Keys(&app.keymap).prefer(KeyAction::Cancel, "esc")
    );
    app.say(text, true)
}

fn start(app: &mut App, group: bool) -> Effects {
    if app.flow.as_ref().is_some_and(|f| !f.is_finished()) {
        return one_at_a_time(app);
    }
    let Some(o) = app.orders.current().cloned() else {
        return app.say("No order under the cursor.", true);
    };
    if group && o.transaction_id.is_none() {
        return app.say("This order has no transaction id, so no group: roll it back on its own.", true);
    }
    let id = app.id();
    let target = if group { FlowTarget::Group(o.clone()) } else { FlowTarget::Single(o.clone()) };
    let accept = app.keymap.hint_key(KeyAction::Accept);
    app.flow = Some(Flow::new(target, Stage::Prechecking { id }, &accept));
    app.precheck = Load::Loading { id, since: app.now };
    app.focus_pane(Pane::Rollback);
    Effects::with(vec![Command::Precheck { id, order: o.id, user: o.user_id }])
}

fn start_batch(app: &mut App) -> Effects {
    if app.flow.as_ref().is_some_and(|f| !f.is_finished()) {
        return one_at_a_time(app);
    }
    let target = if app.orders.all_matching {
        BatchTarget::Matching(app.orders.query.clone())
    } else if !app.orders.selected.is_empty() {
        BatchTarget::Orders(app.orders.selection())
    } else {
        let k = Keys(&app.keymap);
        let text = format!(
            "Select orders first ({}), or every order matching the filter ({}).",
            k.of(KeyAction::ToggleSelect),
            k.of(KeyAction::SelectAllMatching)
        );
        return app.say(text, true);
    };
    let id = app.id();
    let accept = app.keymap.hint_key(KeyAction::Accept);
    app.flow = Some(Flow::new(FlowTarget::Batch(target.clone()), Stage::Previewing { id }, &accept));
    app.focus_pane(Pane::Rollback);
    Effects::with(vec![Command::PreviewBatch { id, target }])
}

/// Cancel: stops what runs (on the server too), or closes a finished flow. None while a
/// reason or a confirmation is being given: then cancel is for the panes asked next.
fn cancel(app: &mut App) -> Option<Effects> {
    let now = app.now;
    let flow = app.flow.as_mut()?;
    match flow.stage {
        Stage::Running { id, .. } | Stage::Prechecking { id } | Stage::Previewing { id } => {
            flow.stage = Stage::Cancelling { id, since: now };
            Some(Effects::with(vec![Command::Cancel { id }]))
        }
        Stage::Cancelling { .. } => Some(Effects::none()),
        _ if flow.is_finished() => {
            app.flow = None;
            Some(Effects::redraw())
        }
        _ => None,
    }
}

/// Keys typed into the reason or confirmation input (only while the flow is on screen:
/// Enter or Esc on the incident screen must never confirm or abandon a rollback unseen).
/// None: not the flow's key.
pub(crate) fn text_key(app: &mut App, key: KeyEvent) -> Option<Effects> {
    let flow = app.flow.as_mut()?;
    let typing = match flow.stage {
        Stage::Reason => true,
        Stage::Confirm => flow.confirm_word.is_some(),
        _ => false,
    };
    if !typing && flow.stage != Stage::Confirm {
        return None;
    }
    // Moving between panes still works while typing.
    if matches!(app.keymap.action(&key), Some(KeyAction::NextPane | KeyAction::PrevPane)) {
        return None;
    }
    match app.keymap.dialog_action(&key) {
        Some(KeyAction::Dismiss) => {
            app.flow = None;
            Some(app.say("Rollback abandoned: nothing was changed.", false))
        }
        Some(KeyAction::Accept) => Some(enter(app)),
        _ if typing => {
            let target = if flow.stage == Stage::Reason { &mut flow.reason } else { &mut flow.confirm };
            target.input(key);
            flow.hint = None;
            Some(Effects::redraw())
        }
        _ => None,
    }
}

/// Text pasted into the reason or confirmation input; true when one took it.
pub(crate) fn paste(app: &mut App, text: &str) -> bool {
    let Some(f) = app.flow.as_mut() else { return false };
    let input = match f.stage {
        Stage::Reason => &mut f.reason,
        Stage::Confirm if f.confirm_word.is_some() => &mut f.confirm,
        _ => return false,
    };
    input.insert_str(text);
    true
}

fn enter(app: &mut App) -> Effects {
    let level = app.incident.level;
    // The id a confirmation sends with, taken on every enter (as the console always has):
    // ids are only ever compared, so the gaps are harmless.
    let id = app.id();
    let Some(flow) = app.flow.as_mut() else { return Effects::none() };
    match flow.stage {
        Stage::Reason => {
            // Recorded on every order and audit row: checked as every reason is.
            if let Err(why) = crate::core::workflow::incident::reason_ok(&flow.reason_text(), "A reason") {
                flow.hint = Some(format!("{why}."));
            } else {
                flow.hint = None;
                flow.confirm_word = match (&flow.target, &flow.preview) {
                    (FlowTarget::Batch(_), Some((_, items))) => Some(items.len().to_string()),
                    _ if level == Level::Critical => Some("ROLLBACK".into()),
                    _ => None,
                };
                flow.stage = Stage::Confirm;
            }
            Effects::redraw()
        }
        Stage::Confirm => confirm(app, id),
        _ => Effects::none(),
    }
}

/// Enter on the confirmation: the rollback's intent goes to the journal, and the rollback
/// or the batch to the worker once it is there (`on_journal`). Without an incident journal
/// it goes at once; after `--no-journal` with the waiver for the worker to record first.
fn confirm(app: &mut App, id: RequestId) -> Effects {
    let now = app.now;
    let dismiss = app.keymap.hint_key(KeyAction::Dismiss);
    let journaled = app.case.is_some();
    let waive_journal = app.no_journal && !journaled;
    let Some(flow) = app.flow.as_mut() else { return Effects::none() };
    if let Some(word) = &flow.confirm_word {
        let typed = flow.confirm.lines().join("");
        if typed.trim() != word {
            flow.hint = Some(format!("Type {word} exactly to confirm, or {dismiss} to abandon."));
            return Effects::redraw();
        }
    }
    let reason = flow.reason_text();
    let operation = flow.operation;
    let mut planned = None;
    let (command, intent) = match (&flow.target, &flow.baseline, &flow.preview) {
        (FlowTarget::Single(_) | FlowTarget::Group(_), Some((order, user, baseline)), _) => {
            let group = matches!(flow.target, FlowTarget::Group(_));
            // What the pre-check said it would do, from the baseline it took.
            let figures = serde_json::from_value::<BaselineFigures>(baseline.clone()).ok();
            let (orders, refund) = match (&figures, group) {
                (Some(f), true) => (f.group.order_ids.len() as u64, f.group.expected_refund),
                (Some(f), false) => (1, f.expected_refund),
                (None, _) => (u64::from(!group), Decimal::ZERO),
            };
            let intent = observed::rollback_intended(operation, *order, *user, group, orders, refund, &reason);
            let command = Command::Rollback {
                id,
                order: *order,
                user: *user,
                reason,
                baseline: baseline.clone(),
                group,
                operation,
                waive_journal,
            };
            (command, intent)
        }
        (FlowTarget::Batch(_), _, Some((p, items))) => {
            flow.run.total = items.len() as u64;
            planned = Some((operation, now));
            let intent = observed::batch_intended(operation, items.len() as u64, p.total_refund, &reason);
            let preview = p.headline();
            (Command::RunBatch { id, items: items.clone(), reason, operation, waive_journal, preview }, intent)
        }
        _ => {
            flow.stage = Stage::Failed { error: "nothing to roll back: the pre-check gave no baseline".into() };
            return Effects::redraw();
        }
    };
    // Its rollbacks are expected from now on: the dashboard does not call them a burst.
    app.planned_batches.extend(planned);
    if journaled {
        let Some(flow) = app.flow.as_mut() else { return Effects::none() };
        flow.stage = Stage::Journaling { id, command: Box::new(command) };
        return Effects::journal(vec![JournalRequest::Step(Step::Observe(intent))]);
    }
    if let Some(flow) = app.flow.as_mut() {
        flow.stage = Stage::Running { id, since: now };
    }
    Effects::with(vec![command])
}

/// The journal's answer while the flow waits for its intent to be written: appended, the
/// rollback goes to the worker; refused, it does not, and the person is told why. None when
/// the flow was not waiting (the answer is someone else's).
pub(crate) fn on_journal(app: &mut App, ev: &JournalEvent) -> Option<Effects> {
    let now = app.now;
    let flow = app.flow.as_mut()?;
    let Stage::Journaling { id, command } = &flow.stage else { return None };
    let (id, command, operation) = (*id, (**command).clone(), flow.operation);
    match ev {
        JournalEvent::Appended { entries, .. } => {
            let ours =
                entries.iter().any(|e| matches!(&e.event, Event::RollbackIntended(i) if i.operation == operation));
            if !ours {
                return None;
            }
            flow.stage = Stage::Running { id, since: now };
            if let Some(case) = app.case.as_mut() {
                case.awaiting_outcome = Some(operation);
                case.outcome_lost = None;
            }
            Some(Effects::with(vec![command]))
        }
        JournalEvent::Refused(why) => {
            flow.stage = Stage::Failed {
                error: format!(
                    "not rolled back: its intent could not be written to the incident's journal: {why}. \
                     Nothing was changed. Fix the journal, or start the console with --no-journal \
                     (each rollback's waiver is then recorded in the audit log)."
                ),
            };
            let text = format!("Not rolled back: the journal cannot be written ({why}). Nothing was changed.");
            Some(app.say(text, true))
        }
        // Not an answer to the intent: the flow keeps waiting for it.
        JournalEvent::Unreadable(_) => None,
    }
}

/// The flow's pre-check from the worker; true when it was the flow's.
pub(crate) fn on_precheck(
    app: &mut App,
    id: RequestId,
    order: Uuid,
    user: Uuid,
    result: Result<Precheck, String>,
) -> bool {
    let Some(flow) = app.flow.as_mut().filter(|f| f.request() == Some(id)) else { return false };
    if matches!(flow.stage, Stage::Cancelling { .. }) {
        // It finished before the cancel reached it: the operator still said stop.
        flow.stage = Stage::Cancelled { message: "Cancelled: nothing was changed.".into() };
        return true;
    }
    match result {
        Ok(p) if p.ready => {
            flow.baseline = p.baseline.clone().map(|b| (order, user, b));
            flow.stage = Stage::Reason;
        }
        Ok(_) => flow.stage = Stage::PrecheckFailed,
        Err(e) => flow.stage = Stage::Failed { error: e },
    }
    true
}

/// How long the flow has run, at its end.
fn elapsed_ms(flow: &Flow, now: chrono::DateTime<chrono::Utc>) -> i64 {
    match flow.stage {
        Stage::Running { since, .. } | Stage::Cancelling { since, .. } => (now - since).num_milliseconds(),
        _ => 0,
    }
}

/// A single or group rollback's result: the flow ends, the Post-check pane shows the proof,
/// the orders and the dashboard load again and the ledger is audited.
pub(crate) fn on_rollback(app: &mut App, id: RequestId, result: Result<RollbackAndPostcheck, String>) -> Effects {
    let now = app.now;
    let Some(flow) = app.flow.as_mut().filter(|f| f.request() == Some(id)) else {
        return Effects::none();
    };
    let elapsed_ms = elapsed_ms(flow, now);
    let r = match result {
        Ok(r) => r,
        Err(e) => {
            flow.stage = Stage::Failed { error: e };
            return Effects::redraw();
        }
    };
    let passed = r.postcheck.as_ref().is_some_and(|p| p.successful);
    let message = if r.rollback.success {
        format!(
            "Rolled back {} order(s): refunded {}, margin released {}. Post-check {}.",
            r.rollback.order_ids.as_ref().map_or(0, Vec::len),
            crate::core::format::money(r.rollback.refunded.unwrap_or_default()),
            crate::core::format::money(r.rollback.margin_released.unwrap_or_default()),
            if passed { "passed" } else { "FAILED" }
        ) + &match &r.rollback.reply_lost {
            Some(_) => " (The reply was lost; the database's rows show this rollback.)".to_string(),
            None => String::new(),
        }
    } else {
        format!(
            "Refused ({}): {}. Nothing was changed.",
            r.rollback.error_code.as_deref().unwrap_or("unknown"),
            r.rollback.message.as_deref().unwrap_or("")
        )
    };
    flow.stage = Stage::Done { ok: r.rollback.success && passed, message, elapsed_ms };
    app.detail_scroll = 0;
    app.postcheck =
        Load::Loaded(PostcheckView { rollback: r.rollback.clone(), postcheck: r.postcheck.clone(), at: now });
    flow.result = Some(r);
    app.focus_pane(Pane::Postcheck);
    let mut e = orders::refresh(app);
    e.commands.extend([Command::RefreshDashboard, Command::AuditNow]);
    e
}

/// What a batch covers, from the worker.
pub(crate) fn on_batch_preview(
    app: &mut App,
    id: RequestId,
    result: Result<(BatchPreview, Vec<BatchItem>), String>,
) -> Effects {
    let Some(flow) = app.flow.as_mut().filter(|f| f.request() == Some(id)) else {
        return Effects::none();
    };
    match result {
        Ok((_, items)) if items.is_empty() => {
            flow.stage = Stage::Done {
                ok: true,
                message: "No executed order matches: nothing to roll back.".into(),
                elapsed_ms: 0,
            };
        }
        Ok(p) => {
            flow.preview = Some(p);
            flow.stage = Stage::Reason;
        }
        Err(e) => flow.stage = Stage::Failed { error: e },
    }
    Effects::redraw()
}

/// A running batch's progress.
pub(crate) fn on_batch_progress(
    app: &mut App,
    id: RequestId,
    (done, total, rolled_back, problems): (u64, u64, u64, u64),
    recent: Vec<(BatchItem, Outcome)>,
) -> Effects {
    let Some(flow) = app.flow.as_mut().filter(|f| f.request() == Some(id)) else {
        return Effects::none();
    };
    flow.run.done = done;
    flow.run.total = total;
    flow.run.rolled_back = rolled_back;
    flow.run.problems = problems;
    for r in recent {
        if let Outcome::RolledBack { refunded, .. } = &r.1 {
            flow.run.refunded += *refunded;
        }
        flow.run.recent.push_front(r);
    }
    flow.run.recent.truncate(50);
    Effects::redraw()
}

/// The end of a batch: its selection is spent; the orders and the dashboard load again and
/// the ledger is audited now, as the proof.
pub(crate) fn on_batch_done(app: &mut App, id: RequestId, result: Result<Summary, String>) -> Effects {
    let now = app.now;
    let Some(flow) = app.flow.as_mut().filter(|f| f.request() == Some(id)) else {
        return Effects::none();
    };
    let elapsed_ms = elapsed_ms(flow, now);
    flow.stage = match &result {
        Ok(s) if s.cancelled => {
            Stage::Cancelled { message: format!("Batch stopped: {}. Run it again to finish.", s.outcome_sentence()) }
        }
        Ok(s) => Stage::Done { ok: s.complete(), message: format!("{}.", s.outcome_sentence()), elapsed_ms },
        Err(e) => Stage::Failed { error: e.clone() },
    };
    flow.summary = result.ok();
    app.last_batch = flow.summary.clone().map(|summary| LastBatch { at: now, summary, proof: None });
    app.orders.selected.clear();
    app.orders.all_matching = false;
    let mut e = orders::refresh(app);
    e.commands.extend([Command::RefreshDashboard, Command::AuditNow]);
    e
}

/// A batch's proof: kept with the last batch it proves (a proof of an older batch is
/// dropped). True when it was the last batch's.
pub(crate) fn on_batch_proof(app: &mut App, operation: uuid::Uuid, result: Result<Proof, String>) -> bool {
    match app.last_batch.as_mut().filter(|b| b.summary.batch_id == operation) {
        Some(b) => {
            b.proof = Some(result);
            true
        }
        None => false,
    }
}

/// The flow's request was cancelled on the server; true when it was the flow's.
pub(crate) fn on_cancelled(app: &mut App, id: RequestId) -> bool {
    let Some(flow) = app.flow.as_mut().filter(|f| f.request() == Some(id)) else { return false };
    flow.stage = Stage::Cancelled { message: "Cancelled on the server: nothing was changed.".into() };
    true
}

/// The flow's request failed; true when it was the flow's.
pub(crate) fn on_failed(app: &mut App, id: RequestId, error: String) -> bool {
    let Some(flow) = app.flow.as_mut().filter(|f| f.request() == Some(id)) else { return false };
    flow.stage = Stage::Failed { error };
    true
}

/// The footer while the flow takes keys.
pub(crate) fn hint(flow: &Flow, k: Keys) -> Option<String> {
    let (accept, dismiss) = (k.of(KeyAction::Accept), k.of(KeyAction::Dismiss));
    Some(match flow.stage {
        Stage::Reason => format!(" typing the reason · {accept} continue · {dismiss} abandon (nothing is changed)"),
        Stage::Confirm if flow.confirm_word.is_some() => {
            format!(" type the word shown · {accept} roll back · {dismiss} abandon")
        }
        Stage::Confirm => format!(" {accept} roll back · {dismiss} abandon (nothing is changed)"),
        Stage::Running { .. } | Stage::Prechecking { .. } | Stage::Previewing { .. } => format!(
            " {} cancel (on the server too) · {} pane · {} help",
            k.all(KeyAction::Cancel),
            k.of(KeyAction::NextPane),
            k.of(KeyAction::Help)
        ),
        _ => return None,
    })
}
