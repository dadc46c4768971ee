//! How keys, dialogs and answers change the incident screen, and what the rollback screen's
//! results ask to be recorded in the journal.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::incident::{
    Dialog, JournalEvent, JournalRequest, Purpose, audit_observation, editor_input, step_of, text_input,
};
use super::{App, Effects, Load, Screen};
use crate::console::protocol::{Command, ConnState, DbEvent, RequestId};
use crate::console::ui::layout::Pane;
use crate::core::comms::Draft;
use crate::core::contract::MaintenanceProbe;
use crate::core::keys::KeyAction;
use crate::core::workflow::Level;
use crate::core::workflow::classify::{Answer, QUESTIONS, classification_steps};
use crate::core::workflow::incident::{ItemState, Observation, Role, Step};

impl App {
    /// Keys that mean something for the incident; None lets the rollback screen have them.
    pub(super) fn incident_action(&mut self, action: KeyAction) -> Option<Effects> {
        let on_incident = self.screen == Screen::Incident;
        let needs_case = matches!(
            action,
            KeyAction::Screen
                | KeyAction::Tick
                | KeyAction::Skip
                | KeyAction::Assign
                | KeyAction::NextPhase
                | KeyAction::Level
                | KeyAction::Classify
                | KeyAction::Note
                | KeyAction::Edit
                | KeyAction::Fill
                | KeyAction::Waive
                | KeyAction::Copy
                | KeyAction::Report
        );
        if needs_case && self.case.is_none() {
            return Some(self.say("No incident journal is open in this console.", true));
        }
        let pane_only = matches!(
            action,
            KeyAction::Tick
                | KeyAction::Skip
                | KeyAction::Assign
                | KeyAction::Edit
                | KeyAction::Fill
                | KeyAction::Waive
                | KeyAction::Copy
        );
        if pane_only && !on_incident {
            return Some(
                self.say(
                    format!("That is for the incident screen ({} switches).", self.key_of(KeyAction::Screen)),
                    true,
                ),
            );
        }
        match action {
            KeyAction::Screen => {
                if on_incident {
                    self.screen = Screen::Rollback;
                    self.focus = Pane::Orders;
                } else {
                    self.screen = Screen::Incident;
                    self.focus = Pane::Checklist;
                }
                Some(Effects::redraw())
            }
            KeyAction::NextPane | KeyAction::PrevPane if on_incident => {
                let i = Pane::INCIDENT.iter().position(|p| *p == self.focus).unwrap_or(0);
                let n = Pane::INCIDENT.len();
                let next = if action == KeyAction::NextPane { (i + 1) % n } else { (i + n - 1) % n };
                self.focus = Pane::INCIDENT[next];
                Some(Effects::redraw())
            }
            KeyAction::Up
            | KeyAction::Down
            | KeyAction::PageUp
            | KeyAction::PageDown
            | KeyAction::Top
            | KeyAction::Bottom
                if on_incident =>
            {
                Some(self.move_incident_cursor(action))
            }
            KeyAction::Filter if on_incident => {
                let case = self.case.as_mut()?;
                self.focus = Pane::Timeline;
                let current = case.timeline_filter.clone();
                case.dialog = Some(Dialog::Text {
                    purpose: Purpose::TimelineFilter,
                    input: text_input(&current, "kind, operator or text; empty shows all"),
                    hint: None,
                });
                Some(Effects::redraw())
            }
            KeyAction::Precheck if on_incident => match self.focus {
                // Enter opens what is under the cursor.
                Pane::Messages => self.incident_action(KeyAction::Edit),
                Pane::Team | Pane::Checklist => self.incident_action(KeyAction::Assign),
                _ => Some(Effects::none()),
            },
            KeyAction::Precheck
            | KeyAction::Rollback
            | KeyAction::RollbackGroup
            | KeyAction::RollbackBatch
            | KeyAction::ToggleSelect
            | KeyAction::SelectAllMatching
            | KeyAction::ClearSelection
                if on_incident =>
            {
                Some(self.say(
                    format!("Orders are on the rollback screen ({} switches).", self.key_of(KeyAction::Screen)),
                    true,
                ))
            }
            // Esc on the incident screen never cancels a rollback the person cannot see.
            KeyAction::Cancel if on_incident => Some(Effects::none()),
            KeyAction::Tick => {
                let case = self.case.as_ref()?;
                if self.focus != Pane::Checklist {
                    return Some(self.say("Ticking works in the Checklist pane.", true));
                }
                match case.current_item() {
                    Some(it) => Some(Effects::journal(vec![JournalRequest::Step(Step::Tick { item: it.id.clone() })])),
                    None => Some(self.say("No item under the cursor.", true)),
                }
            }
            KeyAction::Skip => {
                if self.focus != Pane::Checklist {
                    return Some(self.say("Skipping works in the Checklist pane.", true));
                }
                let case = self.case.as_mut()?;
                let Some(item) = case.current_item().map(|i| i.id.clone()) else {
                    return Some(self.say("No item under the cursor.", true));
                };
                if case.state.item_state(&item) != &ItemState::Open {
                    return Some(self.say(format!("\"{item}\" is not open."), true));
                }
                case.dialog = Some(Dialog::Text {
                    purpose: Purpose::SkipReason(item),
                    input: text_input("", "why it does not apply"),
                    hint: None,
                });
                Some(Effects::redraw())
            }
            KeyAction::Assign => {
                let case = self.case.as_mut()?;
                match self.focus {
                    Pane::Checklist => {
                        let Some(item) = case.current_item().map(|i| i.id.clone()) else {
                            return Some(self.say("No item under the cursor.", true));
                        };
                        case.dialog = Some(Dialog::PickRole { item, cursor: 0 });
                        Some(Effects::redraw())
                    }
                    Pane::Team => match Role::ALL.get(case.team_cursor) {
                        Some(role) => {
                            let name = case.contact(role.key()).map(|c| c.name.clone()).unwrap_or_default();
                            case.dialog = Some(Dialog::Text {
                                purpose: Purpose::Person(*role),
                                input: text_input(&name, "name of the person taking the role"),
                                hint: None,
                            });
                            Some(Effects::redraw())
                        }
                        None => Some(self.say("Escalation contacts come from the config file.", true)),
                    },
                    _ => Some(self.say("Assign in the Checklist (item to role) or Team (person to role) pane.", true)),
                }
            }
            KeyAction::NextPhase => {
                let case = self.case.as_mut()?;
                let Some(to) = case.state.phase.next() else {
                    return Some(self.say("Post-incident is the last phase.", true));
                };
                let open = case
                    .checklist
                    .for_phase(case.state.phase, case.state.level)
                    .filter(|i| case.state.item_state(&i.id) == &ItemState::Open)
                    .count();
                case.dialog = Some(Dialog::ConfirmPhase { to, open });
                Some(Effects::redraw())
            }
            KeyAction::Level => {
                let case = self.case.as_mut()?;
                case.dialog = Some(Dialog::PickLevel { cursor: case.state.level });
                Some(Effects::redraw())
            }
            KeyAction::Classify => {
                let case = self.case.as_mut()?;
                case.dialog = Some(Dialog::Classify { index: 0, answers: Vec::new() });
                Some(Effects::redraw())
            }
            KeyAction::Note => {
                let case = self.case.as_mut()?;
                case.dialog = Some(Dialog::Text {
                    purpose: Purpose::Note,
                    input: text_input("", "what happened, what was decided"),
                    hint: None,
                });
                Some(Effects::redraw())
            }
            KeyAction::Maintenance => {
                if !matches!(self.conn, ConnState::Up { .. }) {
                    return Some(self.say("Maintenance mode needs the database: it is not connected.", true));
                }
                if self.maintenance_request.is_some() {
                    return Some(self.say("Maintenance mode is being switched; wait for the probe.", true));
                }
                let on = !self.maintenance.as_ref().is_some_and(|m| m.maintenance_mode);
                let Some(case) = self.case.as_mut() else {
                    // Without a journal the switch still works; it is just not recorded.
                    let id = self.id();
                    self.maintenance_request = Some(id);
                    return Some(Effects::with(vec![Command::SetMaintenance { id, on, reason: "console".into() }]));
                };
                case.dialog = Some(Dialog::Text {
                    purpose: Purpose::Maintenance(on),
                    input: text_input(
                        "",
                        if on { "e.g. stop new orders during the rollback" } else { "e.g. rollback verified" },
                    ),
                    hint: None,
                });
                Some(Effects::redraw())
            }
            KeyAction::Edit => {
                if self.focus != Pane::Messages {
                    return Some(self.say("Editing works in the Messages pane.", true));
                }
                let case = self.case.as_mut()?;
                // Times in the text ("Posted: …") are as of now, not of the last change.
                case.refresh_messages(self.now);
                let Some(slot) = case.current_message() else { return Some(Effects::none()) };
                if let Err(e) = &slot.rendered {
                    let msg = format!("{} cannot be filled: {e}", slot.name);
                    return Some(self.say(msg, true));
                }
                let (name, text) = (slot.name.clone(), slot.text().unwrap_or("").to_string());
                case.dialog = Some(Dialog::Editor { template: name, input: editor_input(&text) });
                Some(Effects::redraw())
            }
            KeyAction::Fill | KeyAction::Waive => {
                if self.focus != Pane::Messages {
                    return Some(self.say("Fields are filled in the Messages pane.", true));
                }
                let case = self.case.as_mut()?;
                let Some(name) = case.next_unfilled() else {
                    return Some(self.say("Every required field of this message is filled or waived.", false));
                };
                if action == KeyAction::Waive {
                    // Said, since a waiver holds for every message that uses the field.
                    let mut e = self.say(
                        format!("Waived \"{name}\" in every message that uses it (recorded in the timeline)."),
                        false,
                    );
                    e.journal = vec![JournalRequest::Step(Step::Waive { name })];
                    return Some(e);
                }
                let current = case.state.fields.get(&name).cloned().unwrap_or_default();
                case.dialog = Some(Dialog::Text {
                    purpose: Purpose::Field(name),
                    input: text_input(&current, "the text for the message"),
                    hint: None,
                });
                Some(Effects::redraw())
            }
            KeyAction::Copy => {
                if self.focus != Pane::Messages {
                    return Some(self.say("Copying works in the Messages pane.", true));
                }
                let case = self.case.as_mut()?;
                case.refresh_messages(self.now);
                match case.copy_request() {
                    Ok(r) => Some(Effects::journal(vec![r])),
                    Err(e) => Some(self.say(e, true)),
                }
            }
            KeyAction::Report => Some(Effects::journal(vec![JournalRequest::Report])),
            _ => None,
        }
    }

    fn key_of(&self, a: KeyAction) -> String {
        self.keymap.keys_for(a).split(' ').next().unwrap_or("?").to_string()
    }

    fn move_incident_cursor(&mut self, action: KeyAction) -> Effects {
        let focus = self.focus;
        let Some(case) = self.case.as_mut() else { return Effects::none() };
        let (len, pos) = match focus {
            Pane::Checklist => (case.checklist_rows().len(), case.checklist_cursor),
            Pane::Team => (super::incident::IncidentPanel::team_rows(), case.team_cursor),
            Pane::Timeline => (case.timeline_page(0, 0).1, case.timeline_offset),
            Pane::Messages => (case.messages.len(), case.message_cursor),
            _ => return Effects::none(),
        };
        // In Messages the page keys scroll the preview (a message is longer than the pane at
        // 80x24); up and down pick the message.
        if focus == Pane::Messages && matches!(action, KeyAction::PageUp | KeyAction::PageDown) {
            let before = case.preview_scroll;
            case.preview_scroll = match action {
                KeyAction::PageUp => before.saturating_sub(5),
                _ => before.saturating_add(5).min(case.preview_lines().saturating_sub(1)),
            };
            return if case.preview_scroll == before { Effects::none() } else { Effects::redraw() };
        }
        let last = len.saturating_sub(1);
        let page = 10;
        let next = match action {
            KeyAction::Up => pos.saturating_sub(1),
            KeyAction::Down => (pos + 1).min(last),
            KeyAction::PageUp => pos.saturating_sub(page),
            KeyAction::PageDown => (pos + page).min(last),
            KeyAction::Top => 0,
            _ => last,
        };
        if next == pos {
            return Effects::none();
        }
        match focus {
            Pane::Checklist => case.checklist_cursor = next,
            Pane::Team => case.team_cursor = next,
            Pane::Timeline => case.timeline_offset = next,
            _ => {
                case.message_cursor = next;
                case.preview_scroll = 0;
                case.refresh_selected(self.now);
            }
        }
        Effects::redraw()
    }

    /// A key while a dialog is open: the dialog takes it.
    pub(super) fn dialog_key(&mut self, key: KeyEvent) -> Effects {
        let id_for_maintenance = self.next_id;
        let Some(case) = self.case.as_mut() else { return Effects::none() };
        let Some(dialog) = case.dialog.as_mut() else { return Effects::none() };
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match dialog {
            Dialog::Text { purpose, input, hint } => match key.code {
                KeyCode::Esc => {
                    case.dialog = None;
                    self.say("Abandoned: nothing recorded.", false)
                }
                KeyCode::Enter => {
                    let text = input.lines().join(" ");
                    let purpose = purpose.clone();
                    match purpose {
                        Purpose::TimelineFilter => {
                            case.timeline_filter = text.trim().to_lowercase();
                            case.timeline_offset = 0;
                            case.dialog = None;
                            Effects::redraw()
                        }
                        Purpose::Maintenance(on) => {
                            let reason = match crate::core::workflow::incident::reason_ok(&text, "A reason") {
                                Ok(reason) => reason,
                                Err(why) => {
                                    *hint = Some(format!("{why}."));
                                    return Effects::redraw();
                                }
                            };
                            case.dialog = None;
                            self.next_id += 1;
                            self.maintenance_request = Some(id_for_maintenance);
                            self.message = Some(super::Message {
                                text: format!(
                                    "Switching maintenance mode {} and probing that new orders are {} …",
                                    if on { "ON" } else { "off" },
                                    if on { "refused" } else { "accepted" }
                                ),
                                error: false,
                            });
                            Effects::with(vec![Command::SetMaintenance { id: id_for_maintenance, on, reason }])
                        }
                        _ => match step_of(&purpose, &text) {
                            // Refused by the workflow (too long, hidden characters, …): the
                            // dialog stays open with the text, and says why.
                            Ok(Some(step)) if let Err(why) = case.state.decide(step.clone(), &case.checklist) => {
                                *hint = Some(why);
                                Effects::redraw()
                            }
                            Ok(Some(step)) => {
                                case.dialog = None;
                                Effects::journal(vec![JournalRequest::Step(step)])
                            }
                            Ok(None) => {
                                case.dialog = None;
                                Effects::redraw()
                            }
                            Err(h) => {
                                *hint = Some(h);
                                Effects::redraw()
                            }
                        },
                    }
                }
                _ => {
                    input.input(key);
                    *hint = None;
                    Effects::redraw()
                }
            },
            Dialog::PickRole { item, cursor } => {
                let n = Role::ALL.len();
                let pick = match key.code {
                    KeyCode::Esc => {
                        case.dialog = None;
                        return Effects::redraw();
                    }
                    KeyCode::Up | KeyCode::Char('k') => {
                        *cursor = (*cursor + n - 1) % n;
                        return Effects::redraw();
                    }
                    KeyCode::Down | KeyCode::Char('j') => {
                        *cursor = (*cursor + 1) % n;
                        return Effects::redraw();
                    }
                    KeyCode::Enter => Some(*cursor),
                    KeyCode::Char(c) => c.to_digit(10).and_then(|d| (d as usize).checked_sub(1)).filter(|d| *d < n),
                    _ => None,
                };
                match pick.and_then(|i| Role::ALL.get(i)) {
                    Some(role) => {
                        let item = item.clone();
                        let role = *role;
                        case.dialog = None;
                        Effects::journal(vec![JournalRequest::Step(Step::AssignItem { item, role })])
                    }
                    None => Effects::none(),
                }
            }
            Dialog::PickLevel { cursor } => {
                let pick = match key.code {
                    KeyCode::Esc => {
                        case.dialog = None;
                        return Effects::redraw();
                    }
                    KeyCode::Up | KeyCode::Char('k') => {
                        *cursor = Level::from_number(cursor.number().saturating_sub(1).max(1)).unwrap_or(*cursor);
                        return Effects::redraw();
                    }
                    KeyCode::Down | KeyCode::Char('j') => {
                        *cursor = Level::from_number((cursor.number() + 1).min(3)).unwrap_or(*cursor);
                        return Effects::redraw();
                    }
                    KeyCode::Enter => Some(*cursor),
                    KeyCode::Char(c) => c.to_digit(10).and_then(|d| Level::from_number(d as u8)),
                    _ => None,
                };
                let Some(level) = pick else { return Effects::none() };
                if level == case.state.level {
                    case.dialog = None;
                    return self.say(format!("The incident is already Level {}.", level.number()), false);
                }
                case.dialog = Some(Dialog::Text {
                    purpose: Purpose::LevelReason(level),
                    input: text_input("", "why: what changed"),
                    hint: None,
                });
                Effects::redraw()
            }
            Dialog::Classify { index, answers } => {
                if *index >= QUESTIONS.len() {
                    return match key.code {
                        KeyCode::Enter | KeyCode::Char('y') => {
                            let open = case.checklist.get("classify").is_some()
                                && case.state.item_state("classify") == &ItemState::Open;
                            let (_, steps) = classification_steps(case.state.level, answers, open);
                            case.dialog = None;
                            Effects::journal(steps.into_iter().map(JournalRequest::Step).collect())
                        }
                        KeyCode::Backspace => {
                            *index -= 1;
                            answers.pop();
                            Effects::redraw()
                        }
                        KeyCode::Esc | KeyCode::Char('n') => {
                            case.dialog = None;
                            self.say("Classification not applied.", false)
                        }
                        _ => Effects::none(),
                    };
                }
                let answer = match key.code {
                    KeyCode::Esc => {
                        case.dialog = None;
                        return self.say("Classification abandoned.", false);
                    }
                    KeyCode::Backspace if *index > 0 => {
                        *index -= 1;
                        answers.pop();
                        return Effects::redraw();
                    }
                    KeyCode::Char('y') | KeyCode::Char('Y') => Answer::Yes,
                    KeyCode::Char('n') | KeyCode::Char('N') => Answer::No,
                    KeyCode::Char('u') | KeyCode::Char('U') | KeyCode::Char('?') => Answer::Unsure,
                    _ => return Effects::none(),
                };
                if let Some(q) = QUESTIONS.get(*index) {
                    answers.push((q.id, answer));
                    *index += 1;
                }
                Effects::redraw()
            }
            Dialog::ConfirmPhase { to, .. } => match key.code {
                KeyCode::Enter | KeyCode::Char('y') | KeyCode::Char('Y') => {
                    let to = *to;
                    case.dialog = None;
                    Effects::journal(vec![JournalRequest::Step(Step::Advance { to })])
                }
                KeyCode::Esc | KeyCode::Char('n') | KeyCode::Char('N') => {
                    case.dialog = None;
                    Effects::redraw()
                }
                _ => Effects::none(),
            },
            Dialog::Editor { template, input } => match key.code {
                KeyCode::Esc => {
                    let name = template.clone();
                    let text = input.lines().join("\n");
                    case.dialog = None;
                    if let Some(slot) = case.messages.iter_mut().find(|s| s.name == name)
                        && let Ok(r) = &slot.rendered
                    {
                        slot.draft = (text != r.text).then(|| Draft { base: r.text.clone(), edited: text });
                    }
                    self.say("Edits kept; y copies.", false)
                }
                KeyCode::Char('r') if ctrl => {
                    let name = template.clone();
                    if let Some(r) =
                        case.messages.iter().find(|s| s.name == name).and_then(|s| s.rendered.as_ref().ok())
                    {
                        *input = editor_input(&r.text);
                    }
                    Effects::redraw()
                }
                _ => {
                    input.input(key);
                    Effects::redraw()
                }
            },
        }
    }

    /// A paste while a dialog is open; true when it took it.
    pub(super) fn dialog_paste(&mut self, text: &str) -> bool {
        let Some(dialog) = self.case.as_mut().and_then(|c| c.dialog.as_mut()) else { return false };
        match dialog {
            Dialog::Text { input, .. } => {
                let one_line: String = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
                input.insert_str(one_line);
                true
            }
            Dialog::Editor { input, .. } => {
                input.insert_str(text.replace("\r\n", "\n").replace('\r', "\n"));
                true
            }
            _ => true,
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
                    self.message = Some(super::Message { text: n, error: false });
                }
                Effects::with(vec![sync])
            }
            JournalEvent::Refused(why) => self.say(why, true),
        }
    }

    pub(super) fn on_maintenance_set(
        &mut self,
        id: RequestId,
        on: bool,
        reason: String,
        result: Result<MaintenanceProbe, String>,
    ) -> super::Effects {
        if self.maintenance_request == Some(id) {
            self.maintenance_request = None;
        }
        match result {
            Ok(p) => {
                let verified = p.new_orders_refused == on;
                let text = match (on, verified) {
                    (true, true) => {
                        "Maintenance mode ON, verified: a probe order was refused (and rolled back).".to_string()
                    }
                    (true, false) => format!(
                        "Maintenance mode ON but NOT verified: the probe order got {}.",
                        p.probe_code.as_deref().unwrap_or("through")
                    ),
                    (false, true) => "Maintenance mode off: new orders are accepted again (probe rolled back).".into(),
                    (false, false) => "Maintenance mode off, but a probe order is still refused.".into(),
                };
                self.message = Some(super::Message { text, error: !verified });
                self.maintenance = Some(p.state);
                let mut e = Effects::redraw();
                e.journal = self.observe(vec![Observation::Maintenance { on, reason, verified }]);
                e
            }
            Err(e) => self.say(format!("Maintenance mode not switched: {e}"), true),
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
                    Some(super::flow::FlowTarget::Single(o)) => {
                        seen.extend(crate::core::observed::rollback(r, o.id, o.user_id, false, &reason))
                    }
                    Some(super::flow::FlowTarget::Group(o)) => {
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
