//! Where the worker's and the journal's answers go: each to the pane that asked (its
//! request id says which), and what they show that belongs in the journal.

use super::{App, Effects, Load, Message};
use crate::console::incident::{JournalEvent, JournalRequest, audit_observation};
use crate::console::maintenance;
use crate::console::panes::rollback::FlowTarget;
use crate::console::panes::{dashboard, orders, precheck, rollback};
use crate::console::protocol::{Command, ConnState, DbEvent};

impl App {
    pub(super) fn on_db(&mut self, ev: DbEvent) -> Effects {
        match ev {
            DbEvent::Connection(state) => {
                let came_up = matches!(state, ConnState::Up { .. }) && !matches!(self.conn, ConnState::Up { .. });
                if state == self.conn {
                    return Effects::none();
                }
                self.conn = state;
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
            DbEvent::Orders { id, page, rows, has_more } => orders::on_page(self, id, page, rows, has_more),
            DbEvent::OrderCount { id, count, capped } => orders::on_count(self, id, count, capped),
            DbEvent::Precheck { id, order, user, result } => {
                // A flow's pre-check is also the Pre-check pane's request: both take it.
                let pane = precheck::on_answer(self, id, order, user, &result);
                let flow = rollback::on_precheck(self, id, order, user, result);
                if pane || flow { Effects::redraw() } else { Effects::none() }
            }
            DbEvent::Rollback { id, result } => rollback::on_rollback(self, id, result),
            DbEvent::BatchPreview { id, result } => rollback::on_batch_preview(self, id, result),
            DbEvent::BatchProgress { id, done, total, rolled_back, problems, recent } => {
                rollback::on_batch_progress(self, id, (done, total, rolled_back, problems), recent)
            }
            DbEvent::BatchDone { id, result } => rollback::on_batch_done(self, id, result),
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
            DbEvent::MaintenanceSet { id, on, reason, result } => {
                maintenance::on_switched(self, id, on, reason, result)
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
        let Some(case) = self.case.as_mut() else { return Effects::none() };
        match ev {
            JournalEvent::Appended { entries, note } => {
                case.append(entries, now);
                self.incident = case.state.header();
                let sync = Command::SyncJournal { incident: case.state.id.clone(), path: case.journal_path.clone() };
                if let Some(n) = note {
                    self.message = Some(Message { text: n, error: false });
                }
                Effects::with(vec![sync])
            }
            JournalEvent::Refused(why) => self.say(why, true),
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
            DbEvent::Rollback { id, result: Ok(r) } if flow_request == Some(*id) => {
                let reason = self.flow.as_ref().map(|f| f.reason_text()).unwrap_or_default();
                match self.flow.as_ref().map(|f| &f.target) {
                    Some(FlowTarget::Single(o)) => {
                        seen.extend(crate::core::observed::rollback(r, o.id, o.user_id, false, &reason))
                    }
                    Some(FlowTarget::Group(o)) => {
                        seen.extend(crate::core::observed::rollback(r, o.id, o.user_id, true, &reason))
                    }
                    _ => {}
                }
                if let Some(c) = self.case.as_mut() {
                    c.audit_wanted = Some(now);
                }
            }
            DbEvent::BatchDone { id, result: Ok(s) } if flow_request == Some(*id) => {
                let users =
                    self.flow.as_ref().and_then(|f| f.preview.as_ref()).map_or(0, |(p, _)| p.users.max(0) as u64);
                let reason = self.flow.as_ref().map(|f| f.reason_text()).unwrap_or_default();
                seen.push(crate::core::observed::batch(s, users, &reason));
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
