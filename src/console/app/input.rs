//! Where a key, a click or a paste goes: the quit question, the help, the open dialog, the
//! input being typed, then the keymap's action, which the console answers itself (quit,
//! help, screens, panes, the incident-wide keys) or hands to the panes of the screen.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

use super::{App, Effects, Screen};
use crate::console::dialogs::classify::Classify;
use crate::console::dialogs::level::LevelPicker;
use crate::console::dialogs::phase::ConfirmPhase;
use crate::console::dialogs::text::{Purpose, TextDialog};
use crate::console::dialogs::times::TimePicker;
use crate::console::dialogs::{self, Dialog};
use crate::console::incident::JournalRequest;
use crate::console::keys::EventKeys;
use crate::console::layout::contains;
use crate::console::maintenance;
use crate::console::panes::rollback::Stage;
use crate::console::panes::{Pane, orders, rollback};
use crate::console::protocol::Command;
use crate::core::keys::KeyAction;

/// How long quitting waits for a batch cancelled on the way out to say what it did (the
/// signal handler's fallback ends the process 5 s after a signal).
const LEAVE_WAIT_MS: i64 = 3000;

/// Keys that need an incident journal.
const NEED_A_JOURNAL: [KeyAction; 15] = [
    KeyAction::Screen,
    KeyAction::Tick,
    KeyAction::Skip,
    KeyAction::Assign,
    KeyAction::NextPhase,
    KeyAction::Level,
    KeyAction::Classify,
    KeyAction::Note,
    KeyAction::Edit,
    KeyAction::Fill,
    KeyAction::Waive,
    KeyAction::Copy,
    KeyAction::Report,
    KeyAction::Close,
    KeyAction::Times,
];

/// Keys of the incident screen's panes (the others work from either screen).
const INCIDENT_PANE_KEYS: [KeyAction; 7] = [
    KeyAction::Tick,
    KeyAction::Skip,
    KeyAction::Assign,
    KeyAction::Edit,
    KeyAction::Fill,
    KeyAction::Waive,
    KeyAction::Copy,
];

impl App {
    pub(super) fn on_key(&mut self, key: KeyEvent) -> Effects {
        let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if self.quit_confirm {
            return dialogs::quit::key(self, key, ctrl_c);
        }
        // Ctrl-C always means quit, even inside a text input, whatever the keymap says: in
        // raw mode it is the one key every terminal user expects to get them out.
        if ctrl_c {
            return self.request_quit();
        }
        // Nothing is drawn but the "too small" notice: no key may act unseen (a rollback
        // confirmed blind), only quitting.
        if self.too_small() {
            return match self.keymap.action(&key) {
                Some(KeyAction::Quit) => self.request_quit(),
                _ => Effects::none(),
            };
        }
        self.message = None;
        if self.help {
            return dialogs::help::key(self);
        }
        if self.details.is_some() {
            return dialogs::detail::key(self, key);
        }
        if self.blast.is_some() {
            return dialogs::blast::key(self, key);
        }
        if self.release.is_some() {
            return dialogs::release::key(self, key);
        }
        if self.approvals_view.is_some() {
            return dialogs::approvals::key(self, key);
        }
        if dialogs::is_open(self) {
            return dialogs::key(self, key);
        }
        if self.orders.editing.is_some() {
            return orders::filter_key(self, key);
        }
        if self.orders.choosing_sort {
            return orders::sort_key(self, key);
        }
        // The rollback flow's inputs take keys only where the flow is on screen: Enter or
        // Esc on the incident screen must never confirm or abandon a rollback unseen.
        if self.screen == Screen::Rollback
            && let Some(effects) = rollback::text_key(self, key)
        {
            return effects;
        }
        match self.keymap.action(&key) {
            Some(a) => self.on_action(a),
            None => Effects::none(),
        }
    }

    /// A screen action: the console's own, else the first pane of the screen that takes it,
    /// else where it works.
    fn on_action(&mut self, action: KeyAction) -> Effects {
        if let Some(e) = self.console_action(action) {
            return e;
        }
        let panes: &[Pane] = match self.screen {
            Screen::Rollback => &Pane::ROLLBACK_KEY_ORDER,
            Screen::Incident => &Pane::INCIDENT_KEY_ORDER,
        };
        for pane in panes {
            if let Some(e) = pane.key(self, action) {
                return e;
            }
        }
        self.misplaced(action)
    }

    /// Quit, help, screens, panes, refresh and the keys that act on the incident from
    /// anywhere (phase, level, classification, note, maintenance, report).
    fn console_action(&mut self, action: KeyAction) -> Option<Effects> {
        let on_incident = self.screen == Screen::Incident;
        if NEED_A_JOURNAL.contains(&action) && self.case.is_none() {
            return Some(self.say("No incident journal is open in this console.", true));
        }
        if INCIDENT_PANE_KEYS.contains(&action) && !on_incident {
            let text = format!("That is for the incident screen ({} switches).", self.key_of(KeyAction::Screen));
            return Some(self.say(text, true));
        }
        Some(match action {
            KeyAction::Quit => self.request_quit(),
            KeyAction::Help => {
                self.help = true;
                Effects::redraw()
            }
            KeyAction::Screen => {
                (self.screen, self.focus) =
                    if on_incident { (Screen::Rollback, Pane::Orders) } else { (Screen::Incident, Pane::Checklist) };
                Effects::redraw()
            }
            KeyAction::NextPane | KeyAction::PrevPane => {
                let order: &[Pane] = if on_incident { &Pane::INCIDENT } else { &Pane::ORDER };
                let i = order.iter().position(|p| *p == self.focus).unwrap_or(0);
                let n = order.len();
                let next = order[if action == KeyAction::NextPane { (i + 1) % n } else { (i + n - 1) % n }];
                if on_incident {
                    self.focus = next;
                } else {
                    self.focus_pane(next);
                }
                Effects::redraw()
            }
            KeyAction::Refresh => {
                let mut e = orders::refresh(self);
                e.commands.push(Command::RefreshDashboard);
                e
            }
            KeyAction::NextPhase => {
                let opened = ConfirmPhase::open(self.case.as_ref()?);
                self.open_dialog(opened)
            }
            KeyAction::Level => {
                let level = self.case.as_ref()?.state.level;
                self.open_dialog(Ok(LevelPicker::open(level)))
            }
            KeyAction::Classify => self.open_dialog(Ok(Classify::open())),
            KeyAction::Note => {
                self.open_dialog(Ok(TextDialog::open(Purpose::Note, "", "what happened, what was decided")))
            }
            KeyAction::Maintenance => maintenance::key(self),
            KeyAction::Report => Effects::journal(vec![JournalRequest::Report]),
            KeyAction::Bundle => self.gather_evidence(),
            KeyAction::Breaker => crate::console::breaker::key(self),
            KeyAction::BlastRadius => dialogs::blast::open(self),
            KeyAction::Releases => dialogs::release::open(self),
            KeyAction::Approvals => dialogs::approvals::open(self),
            KeyAction::Detail => match dialogs::detail::of_focus(self) {
                Ok(d) => {
                    self.details = Some(d);
                    Effects::redraw()
                }
                Err(why) => self.say(why, false),
            },
            KeyAction::Times => self.open_dialog(Ok(TimePicker::open())),
            KeyAction::Close => match &self.case.as_ref()?.state.closed {
                Some(c) => {
                    let text = format!("The incident was closed at {} UTC.", c.at.format("%H:%M"));
                    self.say(text, true)
                }
                None => self.open_dialog(Ok(TextDialog::open_with_context(
                    Purpose::Close,
                    "",
                    "why it is over",
                    vec![
                        "Records resolved now (unless set); the update reminder stops.".into(),
                        "Rollbacks stay possible after it.".into(),
                    ],
                ))),
            },
            _ => return None,
        })
    }

    fn open_dialog(&mut self, dialog: Result<Dialog, String>) -> Effects {
        match (dialog, self.case.as_mut()) {
            (Ok(d), Some(case)) => {
                case.dialog = Some(d);
                Effects::redraw()
            }
            (Err(why), _) => self.say(why, true),
            (Ok(_), None) => Effects::none(),
        }
    }

    /// A key no pane of the screen took: where it works, if it works elsewhere.
    fn misplaced(&mut self, action: KeyAction) -> Effects {
        if self.screen != Screen::Incident {
            return Effects::none();
        }
        match action {
            KeyAction::Rollback
            | KeyAction::RollbackGroup
            | KeyAction::RollbackBatch
            | KeyAction::ToggleSelect
            | KeyAction::SelectAllMatching
            | KeyAction::ClearSelection
            | KeyAction::Sort
            | KeyAction::PerMinute => {
                let text = format!("Orders are on the rollback screen ({} switches).", self.key_of(KeyAction::Screen));
                self.say(text, true)
            }
            KeyAction::Assign => {
                self.say("Assign in the Checklist (item to role) or Team (person to role) pane.", true)
            }
            _ => Effects::none(),
        }
    }

    fn key_of(&self, a: KeyAction) -> String {
        self.keymap.hint_key(a)
    }

    fn request_quit(&mut self) -> Effects {
        if self.rollback_running() {
            self.quit_confirm = true;
            Effects::redraw()
        } else {
            self.leave()
        }
    }

    /// Quits: cancels what runs (on the server too) and stops the worker.
    pub(crate) fn leave(&mut self) -> Effects {
        self.leave_because("the console quit")
    }

    /// Quits for `why` (said in the journal of a batch it cuts short). A batch moving money
    /// is cancelled on the server first and its answer awaited, briefly: the summary it ends
    /// with is each order as the database has it, and that is what the journal gets (what
    /// its progress said may lag the commits by a quarter of a second). Quitting again, or
    /// no answer within `LEAVE_WAIT_MS`, quits at once.
    pub(crate) fn leave_because(&mut self, why: &str) -> Effects {
        if self.leaving.is_none()
            && let Some(flow) = self.flow.as_mut().filter(|f| f.is_batch())
            && let Stage::Running { id, since } | Stage::Cancelling { id, since } = flow.stage
        {
            flow.stage = Stage::Cancelling { id, since };
            self.quit_confirm = false;
            self.leaving = Some((why.to_string(), self.now + chrono::Duration::milliseconds(LEAVE_WAIT_MS)));
            let text = format!("{why}: cancelling the batch on the server; the console ends once it says what it did.");
            self.message = Some(super::Message { text, error: false });
            return Effects::with(vec![Command::Cancel { id }]);
        }
        self.quit_now(why)
    }

    /// Quits now: cancels what runs (on the server too) and stops the worker.
    pub(crate) fn quit_now(&mut self, why: &str) -> Effects {
        self.quit = true;
        self.leaving = None;
        let mut commands = Vec::new();
        if let Some(id) = self.flow.as_ref().and_then(|f| f.request()) {
            commands.push(Command::Cancel { id });
        }
        commands.push(Command::Shutdown);
        // A batch cut short without its answer (it did not stop in time, or quitting was
        // asked again): what was heard of it goes in the journal, said to be no more than
        // that. Only one that was sent to run: a batch still being previewed has no intent,
        // and nothing of it ran.
        let interrupted = self
            .flow
            .as_ref()
            .filter(|f| f.is_changing_money() && f.is_batch())
            .map(|f| crate::core::observed::interrupted_batch_heard(&f.run, &f.reason_text(), why, f.operation));
        let mut e = Effects::with(commands);
        e.journal = self.observe(interrupted.into_iter().collect());
        e
    }

    pub(super) fn on_mouse(&mut self, m: MouseEvent) -> Effects {
        let Some(a) = self.areas() else { return Effects::none() };
        let rows = a.order_rows();
        match m.kind {
            MouseEventKind::ScrollDown if contains(a.orders, m.column, m.row) => {
                self.orders.move_cursor(3, rows);
                Effects::with(orders::more(self))
            }
            MouseEventKind::ScrollUp if contains(a.orders, m.column, m.row) => {
                self.orders.move_cursor(-3, rows);
                Effects::with(orders::more(self))
            }
            MouseEventKind::Down(MouseButton::Left) => {
                if contains(a.orders, m.column, m.row) {
                    self.focus = Pane::Orders;
                    let first = a.first_order_row() + self.orders.strip_rows() as u16;
                    if m.row >= first {
                        let index = self.orders.offset + (m.row - first) as usize;
                        if index < self.orders.rows.len() {
                            self.orders.set_cursor(index, rows);
                        }
                    }
                } else if let Some(t) = a.tabs.filter(|t| contains(*t, m.column, m.row)) {
                    // Tabs are drawn as equal slots, in pane order after Orders.
                    let slot = (m.column - t.x) as usize * 4 / t.width.max(1) as usize;
                    self.focus_pane(Pane::ORDER[1 + slot.min(3)]);
                } else if contains(a.detail, m.column, m.row) {
                    self.focus = self.detail;
                } else if a.dashboard.is_some_and(|d| contains(d, m.column, m.row)) {
                    self.focus = Pane::Dashboard;
                } else {
                    return Effects::none();
                }
                Effects::redraw()
            }
            _ => Effects::none(),
        }
    }

    pub(super) fn on_paste(&mut self, text: &str) -> Effects {
        if self.too_small() {
            return Effects::none();
        }
        if dialogs::paste(self, text) {
            return Effects::redraw();
        }
        // Single-line inputs: a pasted newline becomes a space.
        let text: String = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
        if let Some(e) = self.orders.editing.as_mut() {
            e.insert_str(text);
            return Effects::redraw();
        }
        if rollback::paste(self, &text) { Effects::redraw() } else { Effects::none() }
    }
}
