//! Where the worker's and the journal's answers go: each to the pane that asked (its
//! request id says which), and what they show that belongs in the journal.

use super::{App, Effects, Load, Message};
use crate::console::incident::{JournalEvent, JournalRequest, audit_observation};
use crate::console::maintenance;
use crate::console::panes::rollback::{FlowTarget, Stage};
use crate::console::panes::{dashboard, orders, precheck, rollback};
use crate::console::protocol::{Command, ConnState, DbEvent};
use crate::core::journal::Event;
use crate::core::observed;
use crate::store::journal::Entry;

impl App {
    pub(super) fn on_db(&mut self, ev: DbEvent) -> Effects {
        match ev {
            DbEvent::Connection(state) => {
                let came_up = matches!(state, ConnState::Up { .. }) && !matches!(self.conn, ConnState::Up { .. });
                if state == self.conn {
                    return Effects::none();
                }
                self.conn = state;
                if came_up {
                    crate::console::startup::mark("up");
                }
                if came_up && !self.orders.started {
                    let mut e = orders::reload(self);
                    e.commands.push(Command::RefreshDashboard);
                    return e;
                }
                Effects::redraw()
            }
            DbEvent::Target(t) => {
                self.target = t;
                Effects::redraw()
            }
            DbEvent::Replica(status) => {
                if self.replica.as_ref() == Some(&status) {
                    return Effects::none();
                }
                self.replica = Some(status);
                Effects::redraw()
            }
            DbEvent::Orders { id, page, rows, has_more } => orders::on_page(self, id, page, rows, has_more),
            DbEvent::RepeatMarks { id, rows, marks } => orders::on_marks(self, id, rows, marks),
            DbEvent::OrdersPerMinute { id, result } => orders::on_per_minute(self, id, result),
            DbEvent::BlastRadius { id, result } => crate::console::dialogs::blast::on_answer(self, id, result),
            DbEvent::Evidence { id, result } => self.on_evidence(id, result),
            DbEvent::BreakerSwitched { id, open, reason, result } => {
                crate::console::breaker::on_switched(self, id, open, reason, result)
            }
            DbEvent::Approvals(list) => crate::console::dialogs::approvals::on_list(self, list),
            DbEvent::Approval { request, action, reason, by } => {
                crate::console::dialogs::approvals::on_event(self, *request, action, reason, by)
            }
            DbEvent::ApprovalDecided { id, approve, result } => {
                crate::console::dialogs::approvals::on_decided(self, id, approve, result)
            }
            DbEvent::ReleasePlan { id, result } => crate::console::dialogs::release::on_plan(self, id, result),
            DbEvent::ReleaseRolledBack { id, reason, result } => {
                crate::console::dialogs::release::on_rolled_back(self, id, reason, result)
            }
            DbEvent::OrderCount { id, count, capped } => orders::on_count(self, id, count, capped),
            DbEvent::Precheck { id, order, user, result } => {
                // A flow's pre-check is also the Pre-check pane's request: both take it.
                let pane = precheck::on_answer(self, id, order, user, &result);
                let flow = rollback::on_precheck(self, id, order, user, result);
                if pane || flow { Effects::redraw() } else { Effects::none() }
            }
            DbEvent::Rollback { id, result } => rollback::on_rollback(self, id, result),
            DbEvent::BatchProof { operation, result } => {
                if rollback::on_batch_proof(self, operation, result) {
                    Effects::redraw()
                } else {
                    Effects::none()
                }
            }
            DbEvent::BatchPreview { id, result } => rollback::on_batch_preview(self, id, result),
            DbEvent::BatchProgress { id, done, total, rolled_back, problems, recent } => {
                rollback::on_batch_progress(self, id, (done, total, rolled_back, problems), recent)
            }
            DbEvent::BatchDone { id, result } => {
                // Cancelled on the way out: its summary is journaled (`journal_for`), and the
                // console ends; without one, what was heard of it is.
                let ours = self.flow.as_ref().and_then(|f| f.request()) == Some(id);
                if ours && let Some((why, _)) = self.leaving.take() {
                    if result.is_err() {
                        return self.quit_now(&why);
                    }
                    rollback::on_batch_done(self, id, result);
                    self.quit = true;
                    return Effects::with(vec![Command::Shutdown]);
                }
                rollback::on_batch_done(self, id, result)
            }
            DbEvent::Dashboard(d) => dashboard::on_figures(self, d),
            DbEvent::Maintenance(m) => {
                if self.maintenance.as_ref() == Some(&m) {
                    return Effects::none();
                }
                self.maintenance = Some(m);
                Effects::redraw()
            }
            DbEvent::Cancelled { id } => {
                let flow = rollback::on_cancelled(self, id);
                let pane = precheck::on_cancelled(self, id);
                if flow || pane { Effects::redraw() } else { Effects::none() }
            }
            DbEvent::MaintenanceSet { id, on, reason, symbol, result } => {
                maintenance::on_switched(self, id, (on, symbol), reason, result)
            }
            DbEvent::JournalSynced(r) => {
                let Some(case) = self.case.as_mut() else { return Effects::none() };
                let before = case.db_copy.clone();
                case.db_copy.take(r);
                if case.db_copy != before { Effects::redraw() } else { Effects::none() }
            }
            DbEvent::Failed { id, error } => {
                if let Some(e) = orders::on_failed(self, id, &error) {
                    return e;
                }
                if rollback::on_failed(self, id, error.clone()) {
                    return Effects::redraw();
                }
                if self.maintenance_request == Some(id) {
                    self.maintenance_request = None;
                    return self.say(format!("Maintenance mode not switched: {error}"), true);
                }
                Effects::none()
            }
        }
    }

    /// The loop's answer to a journal request.
    pub(super) fn on_journal(&mut self, ev: JournalEvent) -> Effects {
        let now = self.now;
        // A rollback waiting for its intent to be written runs, or is refused, on this answer.
        let gate = rollback::on_journal(self, &ev);
        let finished = self.flow.as_ref().is_none_or(|f| !f.is_running());
        let Some(case) = self.case.as_mut() else { return gate.unwrap_or_else(Effects::none) };
        match ev {
            JournalEvent::Appended { entries, note } => {
                let outcome = |e: &Entry| matches!(&e.event, Event::Rollback(r) if r.operation.is_some() && r.operation == case.awaiting_outcome);
                if entries.iter().any(outcome) {
                    case.awaiting_outcome = None;
                }
                case.append(entries, now);
                self.incident = case.state.header();
                let sync = Command::SyncJournal { incident: case.state.id.clone(), path: case.journal_path.clone() };
                if let Some(n) = note {
                    self.message = Some(Message { text: n, error: false });
                }
                let mut e = Effects::with(vec![sync]);
                // The rollback after its intent, once the journal's copy is asked for.
                e.commands.extend(gate.map(|g| g.commands).unwrap_or_default());
                e
            }
            JournalEvent::Unreadable(why) => self.say(why, true),
            JournalEvent::Refused(why) => {
                if let Some(refused) = gate {
                    return refused;
                }
                // The rollback in flight has ended: what was refused is its outcome (the
                // first thing recorded of its answer), written after the money moved.
                if finished && let Some(operation) = case.awaiting_outcome.take() {
                    case.outcome_lost = Some(operation);
                    if let Some(Stage::Done { message, .. }) = self.flow.as_mut().map(|f| &mut f.stage) {
                        message.push_str(" Its outcome is NOT in the journal: check the database.");
                    }
                }
                match self.case.as_ref().and_then(|c| c.outcome_lost) {
                    Some(operation) => self.say(
                        format!(
                            "The rollback ran, but its outcome could not be written to the journal ({why}): the journal \
                             shows operation {operation} with no outcome. Check the database."
                        ),
                        true,
                    ),
                    None => self.say(why, true),
                }
            }
        }
    }

    /// What an answer from the worker shows that belongs in the journal.
    pub(super) fn journal_for(&mut self, ev: &DbEvent) -> Vec<JournalRequest> {
        if self.case.is_none() {
            return Vec::new();
        }
        let now = self.now;
        let flow_request = self.flow.as_ref().and_then(|f| f.request());
        let mut seen = Vec::new();
        match ev {
            DbEvent::Precheck { id, order, user, result: Ok(p) } => {
                let ours =
                    matches!(self.precheck, Load::Loading { id: i, .. } if i == *id) || flow_request == Some(*id);
                if ours {
                    seen.push(crate::core::observed::precheck(p, *order, *user));
                }
            }
            DbEvent::Rollback { id, result } if flow_request == Some(*id) => {
                if let Some(f) = self.flow.as_ref()
                    && let FlowTarget::Single(o) | FlowTarget::Group(o) = &f.target
                {
                    let (group, reason) = (matches!(f.target, FlowTarget::Group(_)), f.reason_text());
                    match result {
                        Ok(r) => seen.extend(observed::rollback(r, o.id, o.user_id, group, &reason, f.operation)),
                        // The outcome of its intent: failed, with the worker's words.
                        Err(e) => seen.push(observed::rollback_failed(e, o.id, o.user_id, group, &reason, f.operation)),
                    }
                }
                if result.is_ok()
                    && let Some(c) = self.case.as_mut()
                {
                    c.audit_wanted = Some(now);
                }
            }
            // A single or group rollback stopped on the server (cancelled, or a statement
            // timeout): its one transaction rolled back, and that is its intent's outcome.
            DbEvent::Cancelled { id } | DbEvent::Failed { id, .. } if flow_request == Some(*id) => {
                if let Some(f) = self.flow.as_ref().filter(|f| f.is_changing_money())
                    && let FlowTarget::Single(o) | FlowTarget::Group(o) = &f.target
                {
                    let error = match ev {
                        DbEvent::Failed { error, .. } => error.clone(),
                        _ => "cancelled on the server: nothing was changed".to_string(),
                    };
                    let group = matches!(f.target, FlowTarget::Group(_));
                    seen.push(observed::rollback_failed(&error, o.id, o.user_id, group, &f.reason_text(), f.operation));
                }
            }
            DbEvent::BatchDone { id, result: Ok(s) } if flow_request == Some(*id) => {
                if let Some(f) = self.flow.as_ref() {
                    seen.push(match &self.leaving {
                        Some((why, _)) => observed::interrupted_batch(s, &f.reason_text(), why, f.operation),
                        None => observed::batch(s, &f.reason_text(), f.operation),
                    });
                }
                if let Some(c) = self.case.as_mut() {
                    c.audit_wanted = Some(now);
                }
            }
            // Switched by someone else: the journal (and so every message) must say so. Not
            // while this console's own switch is in flight: its answer records it.
            DbEvent::Maintenance(m)
                if self.maintenance.as_ref() != Some(m)
                    && self.maintenance_request.is_none()
                    && self.case.as_ref().is_some_and(|c| c.state.maintenance_on().is_some() != m.maintenance_mode) =>
            {
                seen.push(crate::core::observed::maintenance_seen(m));
            }
            DbEvent::BatchProof { operation, result: Ok(p) }
                if self.last_batch.as_ref().is_some_and(|b| b.summary.batch_id == *operation) =>
            {
                seen.push(crate::core::workflow::incident::Observation::Audit {
                    violations: p.violations.len() as u64,
                });
            }
            DbEvent::Dashboard(d) => {
                if let (Some(v), Some(at), Some(case)) = (d.audit_violations, d.audit_at, self.case.as_mut())
                    && let Some(o) = audit_observation(case, v, at)
                {
                    seen.push(o);
                }
            }
            _ => {}
        }
        self.observe(seen)
    }
}
