//! The console's state and how it changes. `App::update` takes an `Action` (a key, a
//! mouse event, a paste, a tick, or an answer from the database worker), changes the state
//! and returns the `Command`s for the worker. No I/O happens here, so every behaviour can
//! be tested by feeding actions.

pub mod flow;
pub mod incident;
mod incident_update;
pub mod orders;

use chrono::{DateTime, Utc};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui_textarea::TextArea;
use uuid::Uuid;

use crate::console::keys::EventKeys;
use crate::console::protocol::{BatchTarget, Command, ConnState, DashboardData, DbEvent, PageRequest, RequestId};
use crate::console::ui::layout::{Areas, Pane, contains};
use crate::core::contract::{MaintenanceState, OrderRow, Postcheck, Precheck, RollbackResult};
use crate::core::keys::{KeyAction, KeyMap};
use crate::core::workflow::{IncidentHeader, Level};

use flow::{Flow, FlowTarget, Stage};
use incident::{IncidentPanel, JournalEvent, JournalRequest};
use orders::OrdersView;

/// A pane's load state.
#[derive(Debug, Clone, PartialEq)]
pub enum Load<T> {
    /// Nothing asked.
    Idle,
    /// Asked; waiting.
    Loading { id: RequestId, since: DateTime<Utc> },
    /// Here it is.
    Loaded(T),
    /// It failed; the message says what to do next.
    Failed(String),
    /// Cancelled by the operator.
    Cancelled,
}

/// A pre-check and what it was for.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecheckView {
    /// The order.
    pub order: Uuid,
    /// Its user.
    pub user: Uuid,
    /// The result.
    pub result: Precheck,
    /// When it came back.
    pub at: DateTime<Utc>,
}

/// The last rollback and its post-check.
#[derive(Debug, Clone, PartialEq)]
pub struct PostcheckView {
    /// The rollback.
    pub rollback: RollbackResult,
    /// Its post-check (none when refused).
    pub postcheck: Option<Postcheck>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Something that happened to the console.
#[derive(Debug, Clone)]
pub enum Action {
    /// A terminal event (key, mouse, paste, resize).
    Terminal(Event),
    /// The clock moved (only sent while something animates, and once a minute).
    Tick(DateTime<Utc>),
    /// The database worker answered.
    Db(Box<DbEvent>),
    /// The loop did what was asked of the incident's journal.
    Journal(JournalEvent),
}

/// Which screen is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Orders, pre-check, rollback, post-check, dashboard.
    Rollback,
    /// Checklist, timeline, team, messages.
    Incident,
}

/// What an update asks of the loop.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// Requests for the worker.
    pub commands: Vec<Command>,
    /// The screen must be drawn again.
    pub redraw: bool,
    /// Requests for the incident's journal.
    pub journal: Vec<JournalRequest>,
}

impl Effects {
    fn redraw() -> Self {
        Effects { commands: Vec::new(), redraw: true, journal: Vec::new() }
    }
    fn none() -> Self {
        Effects::default()
    }
    fn with(commands: Vec<Command>) -> Self {
        Effects { commands, redraw: true, journal: Vec::new() }
    }
    fn journal(requests: Vec<JournalRequest>) -> Self {
        Effects { commands: Vec::new(), redraw: true, journal: requests }
    }
}

/// A line for the footer: an answer to the last key.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The text.
    pub text: String,
    /// An error (red) or information.
    pub error: bool,
}

/// The whole console.
pub struct App {
    /// The clock, as of the last action (rendering never reads the system clock).
    pub now: DateTime<Utc>,
    /// Terminal size.
    pub size: (u16, u16),
    /// Key bindings.
    pub keymap: KeyMap,
    /// The incident.
    pub incident: IncidentHeader,
    /// Where the console is connected.
    pub target: String,
    /// The connection.
    pub conn: ConnState,
    /// Maintenance mode.
    pub maintenance: Option<MaintenanceState>,
    /// The focused pane.
    pub focus: Pane,
    /// The detail tab shown (Pre-check, Rollback, Post-check; Dashboard on narrow screens).
    pub detail: Pane,
    /// The Orders pane.
    pub orders: OrdersView,
    /// The Pre-check pane.
    pub precheck: Load<PrecheckView>,
    /// The rollback in preparation or running.
    pub flow: Option<Flow>,
    /// The Post-check pane.
    pub postcheck: Load<PostcheckView>,
    /// The Dashboard's figures.
    pub dashboard: Option<DashboardData>,
    /// The help overlay is open.
    pub help: bool,
    /// "A rollback is running: quit anyway?" is open.
    pub quit_confirm: bool,
    /// The console should exit.
    pub quit: bool,
    /// The footer's message.
    pub message: Option<Message>,
    /// The screen shown.
    pub screen: Screen,
    /// The incident's journal, checklist, team and messages (none: no journal, as in
    /// tests of the rollback screen alone).
    pub case: Option<IncidentPanel>,
    /// The maintenance switch waiting for the worker: its request id.
    pub maintenance_request: Option<RequestId>,
    /// Rows of the Pre-check / Post-check pane scrolled off the top (up/down there).
    pub detail_scroll: u16,
    next_id: RequestId,
}

impl App {
    /// A console for an incident, before the database has answered anything.
    pub fn new(keymap: KeyMap, incident: IncidentHeader, target: String, now: DateTime<Utc>, size: (u16, u16)) -> Self {
        App {
            now,
            size,
            keymap,
            incident,
            target,
            conn: ConnState::Connecting { detail: "connecting".into() },
            maintenance: None,
            focus: Pane::Orders,
            detail: Pane::Precheck,
            orders: OrdersView::default(),
            precheck: Load::Idle,
            flow: None,
            postcheck: Load::Idle,
            dashboard: None,
            help: false,
            quit_confirm: false,
            quit: false,
            message: None,
            screen: Screen::Rollback,
            case: None,
            maintenance_request: None,
            detail_scroll: 0,
            next_id: 1,
        }
    }

    /// The console with an incident's journal behind it.
    pub fn with_incident(mut self, panel: IncidentPanel) -> Self {
        self.incident = panel.state.header();
        self.case = Some(panel);
        self
    }

    /// Asks the loop to record an observation (when there is a journal).
    fn observe(&self, observations: Vec<crate::core::workflow::incident::Observation>) -> Vec<JournalRequest> {
        if self.case.is_none() {
            return Vec::new();
        }
        observations
            .into_iter()
            .map(|o| JournalRequest::Step(crate::core::workflow::incident::Step::Observe(o)))
            .collect()
    }

    fn id(&mut self) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The last rollback seen on the dashboard (anyone's), when it is newer than `since`:
    /// what was loaded before it may show orders as they no longer are.
    pub fn rollback_since(&self, since: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let last = self.dashboard.as_ref()?.metrics.last_rollback?;
        since.is_some_and(|s| last > s).then_some(last)
    }

    fn areas(&self) -> Option<Areas> {
        Areas::of(self.size.0, self.size.1)
    }

    /// Whether the terminal is below the smallest size: only a notice is drawn.
    pub fn too_small(&self) -> bool {
        crate::console::ui::layout::frame_rows(self.size.0, self.size.1).is_none()
    }

    fn order_rows(&self) -> usize {
        self.areas().map_or(10, |a| a.order_rows())
    }

    /// Whether something moves on screen (spinners, elapsed times): the loop ticks only then.
    pub fn animating(&self) -> bool {
        self.flow.as_ref().is_some_and(Flow::is_running)
            || self.orders.loading.is_some()
            || matches!(self.precheck, Load::Loading { .. })
            || matches!(self.conn, ConnState::Connecting { .. })
    }

    /// Whether quitting now would leave a rollback half-watched.
    pub fn rollback_running(&self) -> bool {
        self.flow.as_ref().is_some_and(Flow::is_changing_money)
    }

    /// Applies one action.
    pub fn update(&mut self, action: Action) -> Effects {
        match action {
            Action::Tick(now) => {
                let minute_changed = now.timestamp() / 60 != self.now.timestamp() / 60;
                self.now = now;
                if minute_changed && let Some(case) = self.case.as_mut() {
                    // Messages say "posted at" and "next update at": keep them current.
                    case.refresh_messages(now);
                }
                if self.animating() || minute_changed { Effects::redraw() } else { Effects::none() }
            }
            Action::Terminal(Event::Resize(w, h)) => {
                self.size = (w, h);
                let rows = self.order_rows();
                self.orders.move_cursor(0, rows);
                Effects::redraw()
            }
            Action::Terminal(Event::Key(key)) if key.kind != KeyEventKind::Release => self.on_key(key),
            Action::Terminal(Event::Mouse(m)) => self.on_mouse(m),
            Action::Terminal(Event::Paste(text)) => self.on_paste(&text),
            Action::Terminal(_) => Effects::none(),
            Action::Db(ev) => {
                // What the answer shows is recorded in the journal; decided before the
                // answer changes the state that says whose request it was.
                let journal = self.journal_for(&ev);
                let mut e = self.on_db(*ev);
                if !journal.is_empty() {
                    e.journal.extend(journal);
                    e.redraw = true;
                }
                e
            }
            Action::Journal(ev) => self.on_journal(ev),
        }
    }

    // ------------------------------------------------------------------------------------
    // Keys
    // ------------------------------------------------------------------------------------

    fn on_key(&mut self, key: KeyEvent) -> Effects {
        let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
        if self.quit_confirm {
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => self.leave(),
                _ if ctrl_c => self.leave(),
                _ => {
                    self.quit_confirm = false;
                    Effects::redraw()
                }
            };
        }
        // Ctrl-C always means quit, even inside a text input.
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
            self.help = false;
            return Effects::redraw();
        }
        if self.case.as_ref().is_some_and(|c| c.dialog.is_some()) {
            return self.dialog_key(key);
        }
        if self.orders.editing.is_some() {
            return self.filter_key(key);
        }
        // The rollback flow's inputs take keys only where the flow is on screen: Enter or
        // Esc on the incident screen must never confirm or abandon a rollback unseen.
        if self.screen == Screen::Rollback
            && let Some(effects) = self.flow_text_key(key)
        {
            return effects;
        }
        match self.keymap.action(&key) {
            Some(a) => self.on_action(a),
            None => Effects::none(),
        }
    }

    fn request_quit(&mut self) -> Effects {
        if self.rollback_running() {
            self.quit_confirm = true;
            Effects::redraw()
        } else {
            self.leave()
        }
    }

    fn leave(&mut self) -> Effects {
        self.quit = true;
        let mut commands = Vec::new();
        if let Some(id) = self.flow.as_ref().and_then(Flow::request) {
            commands.push(Command::Cancel { id });
        }
        commands.push(Command::Shutdown);
        // A batch cut short by quitting: its answer will not come, so what is known of it
        // goes in the journal now (each order was its own transaction; the rest is untouched).
        let interrupted = self
            .flow
            .as_ref()
            .filter(|f| f.is_running() && f.is_batch())
            .map(|f| crate::core::observed::interrupted_batch(&f.run, &f.reason_text()));
        let mut e = Effects::with(commands);
        e.journal = self.observe(interrupted.into_iter().collect());
        e
    }

    fn say(&mut self, text: impl Into<String>, error: bool) -> Effects {
        self.message = Some(Message { text: text.into(), error });
        Effects::redraw()
    }

    fn on_action(&mut self, action: KeyAction) -> Effects {
        if let Some(e) = self.incident_action(action) {
            return e;
        }
        let rows = self.order_rows();
        match action {
            KeyAction::Quit => self.request_quit(),
            KeyAction::Help => {
                self.help = true;
                Effects::redraw()
            }
            KeyAction::NextPane | KeyAction::PrevPane => {
                let i = Pane::ORDER.iter().position(|p| *p == self.focus).unwrap_or(0);
                let n = Pane::ORDER.len();
                let next = if action == KeyAction::NextPane { (i + 1) % n } else { (i + n - 1) % n };
                self.focus_pane(Pane::ORDER[next]);
                Effects::redraw()
            }
            KeyAction::Up
            | KeyAction::Down
            | KeyAction::PageUp
            | KeyAction::PageDown
            | KeyAction::Top
            | KeyAction::Bottom => {
                // The check lists can be longer than their pane at 80x24: they scroll.
                if matches!(self.focus, Pane::Precheck | Pane::Postcheck) {
                    let before = self.detail_scroll;
                    self.detail_scroll = match action {
                        KeyAction::Up => before.saturating_sub(1),
                        KeyAction::Down => before.saturating_add(1).min(30),
                        KeyAction::PageUp | KeyAction::Top => 0,
                        _ => before.saturating_add(5).min(30),
                    };
                    return if self.detail_scroll == before { Effects::none() } else { Effects::redraw() };
                }
                if self.focus != Pane::Orders {
                    return Effects::none();
                }
                let page = rows.max(1) as isize;
                match action {
                    KeyAction::Up => self.orders.move_cursor(-1, rows),
                    KeyAction::Down => self.orders.move_cursor(1, rows),
                    KeyAction::PageUp => self.orders.move_cursor(-page, rows),
                    KeyAction::PageDown => self.orders.move_cursor(page, rows),
                    KeyAction::Top => {
                        if self.orders.has_newer {
                            // The window does not start at the newest order: load the top again.
                            let e = self.reload_orders();
                            self.orders.keep = None;
                            return e;
                        }
                        self.orders.set_cursor(0, rows)
                    }
                    _ => self.orders.set_cursor(usize::MAX, rows),
                }
                Effects::with(self.more_orders())
            }
            KeyAction::Filter => {
                self.focus_pane(Pane::Orders);
                self.orders.editing = Some(orders::filter_input(&self.orders.filter_text));
                Effects::redraw()
            }
            KeyAction::ToggleSelect => {
                self.orders.toggle_current();
                let rows = self.order_rows();
                self.orders.move_cursor(1, rows);
                Effects::with(self.more_orders())
            }
            KeyAction::SelectAllMatching => {
                self.orders.selected.clear();
                self.orders.all_matching = true;
                self.say("Batch: every executed order matching the filter (b to roll back)", false)
            }
            KeyAction::ClearSelection => {
                self.orders.selected.clear();
                self.orders.all_matching = false;
                Effects::redraw()
            }
            KeyAction::Precheck => self.start_precheck(),
            KeyAction::Rollback => self.start_flow(false),
            KeyAction::RollbackGroup => self.start_flow(true),
            KeyAction::RollbackBatch => self.start_batch(),
            KeyAction::Cancel => self.cancel(),
            KeyAction::Refresh => {
                let mut e = self.reload_orders();
                e.commands.push(Command::RefreshDashboard);
                e
            }
            // Handled by `incident_action`.
            KeyAction::Screen
            | KeyAction::Tick
            | KeyAction::Skip
            | KeyAction::Assign
            | KeyAction::NextPhase
            | KeyAction::Level
            | KeyAction::Classify
            | KeyAction::Note
            | KeyAction::Maintenance
            | KeyAction::Edit
            | KeyAction::Fill
            | KeyAction::Waive
            | KeyAction::Copy
            | KeyAction::Report => Effects::none(),
            // Dialog and input keys: never looked up in the screen table.
            KeyAction::Accept
            | KeyAction::Dismiss
            | KeyAction::Yes
            | KeyAction::No
            | KeyAction::Unsure
            | KeyAction::Back
            | KeyAction::Refill => Effects::none(),
        }
    }

    fn focus_pane(&mut self, pane: Pane) {
        if pane != self.focus {
            self.detail_scroll = 0;
        }
        self.focus = pane;
        if pane != Pane::Orders && (pane != Pane::Dashboard || self.areas().is_some_and(|a| a.dashboard.is_none())) {
            self.detail = pane;
        }
    }

    fn more_orders(&mut self) -> Vec<Command> {
        match self.orders.page_needed() {
            Some(page) => {
                let id = self.id();
                self.orders.loading = Some((id, page));
                vec![Command::LoadOrders { id, query: self.orders.query.clone(), page, limit: orders::PAGE }]
            }
            None => Vec::new(),
        }
    }

    fn reload_orders(&mut self) -> Effects {
        let (a, b) = (self.id(), self.id());
        Effects::with(self.orders.restart(a, b).to_vec())
    }

    fn filter_key(&mut self, key: KeyEvent) -> Effects {
        let Some(editor) = self.orders.editing.as_mut() else { return Effects::none() };
        match key.code {
            KeyCode::Esc => {
                self.orders.editing = None;
                Effects::redraw()
            }
            KeyCode::Enter => {
                let text = editor.lines().join(" ");
                match orders::parse_filter(&text) {
                    Ok(query) => {
                        self.orders.editing = None;
                        self.orders.filter_text = text.trim().to_string();
                        self.orders.query = query;
                        self.orders.selected.clear();
                        self.orders.all_matching = false;
                        let e = self.reload_orders();
                        self.orders.keep = None;
                        e
                    }
                    Err(e) => self.say(format!("filter: {e}"), true),
                }
            }
            _ => {
                editor.input(key);
                Effects::redraw()
            }
        }
    }

    /// Keys typed into the reason or confirmation input of the rollback flow.
    fn flow_text_key(&mut self, key: KeyEvent) -> Option<Effects> {
        let flow = self.flow.as_mut()?;
        let typing = match flow.stage {
            Stage::Reason => true,
            Stage::Confirm => flow.confirm_word.is_some(),
            _ => false,
        };
        if !typing && flow.stage != Stage::Confirm {
            return None;
        }
        match key.code {
            // Moving between panes still works while typing.
            KeyCode::Tab | KeyCode::BackTab => None,
            KeyCode::Esc => {
                self.flow = None;
                Some(self.say("Rollback abandoned: nothing was changed.", false))
            }
            KeyCode::Enter => Some(self.flow_enter()),
            _ if typing => {
                let target = if flow.stage == Stage::Reason { &mut flow.reason } else { &mut flow.confirm };
                target.input(key);
                flow.hint = None;
                Some(Effects::redraw())
            }
            _ => None,
        }
    }

    fn flow_enter(&mut self) -> Effects {
        let level = self.incident.level;
        let now = self.now;
        let id = self.id();
        let Some(flow) = self.flow.as_mut() else { return Effects::none() };
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
            Stage::Confirm => {
                if let Some(word) = &flow.confirm_word {
                    let typed = flow.confirm.lines().join("");
                    if typed.trim() != word {
                        flow.hint = Some(format!("Type {word} exactly to confirm, or Esc to abandon."));
                        return Effects::redraw();
                    }
                }
                let reason = flow.reason_text();
                let command = match (&flow.target, &flow.baseline, &flow.preview) {
                    (FlowTarget::Single(_) | FlowTarget::Group(_), Some((order, user, baseline)), _) => {
                        Command::Rollback {
                            id,
                            order: *order,
                            user: *user,
                            reason,
                            baseline: baseline.clone(),
                            group: matches!(flow.target, FlowTarget::Group(_)),
                        }
                    }
                    (FlowTarget::Batch(_), _, Some((_, items))) => {
                        flow.run.total = items.len() as u64;
                        Command::RunBatch { id, items: items.clone(), reason }
                    }
                    _ => {
                        flow.stage =
                            Stage::Failed { error: "nothing to roll back: the pre-check gave no baseline".into() };
                        return Effects::redraw();
                    }
                };
                flow.stage = Stage::Running { id, since: now };
                Effects::with(vec![command])
            }
            _ => Effects::none(),
        }
    }

    fn start_precheck(&mut self) -> Effects {
        let Some(o) = self.orders.current().cloned() else {
            return self.say("No order under the cursor.", true);
        };
        let id = self.id();
        self.precheck = Load::Loading { id, since: self.now };
        self.detail = Pane::Precheck;
        Effects::with(vec![Command::Precheck { id, order: o.id, user: o.user_id }])
    }

    fn start_flow(&mut self, group: bool) -> Effects {
        if self.flow.as_ref().is_some_and(|f| !f.is_finished()) {
            return self.say("A rollback is already being prepared or running (Esc to abandon it).", true);
        }
        let Some(o) = self.orders.current().cloned() else {
            return self.say("No order under the cursor.", true);
        };
        if group && o.transaction_id.is_none() {
            return self.say("This order has no transaction id, so no group: roll it back on its own.", true);
        }
        let id = self.id();
        let target = if group { FlowTarget::Group(o.clone()) } else { FlowTarget::Single(o.clone()) };
        self.flow = Some(Flow::new(target, Stage::Prechecking { id }));
        self.precheck = Load::Loading { id, since: self.now };
        self.focus_pane(Pane::Rollback);
        Effects::with(vec![Command::Precheck { id, order: o.id, user: o.user_id }])
    }

    fn start_batch(&mut self) -> Effects {
        if self.flow.as_ref().is_some_and(|f| !f.is_finished()) {
            return self.say("A rollback is already being prepared or running (Esc to abandon it).", true);
        }
        let target = if self.orders.all_matching {
            BatchTarget::Matching(self.orders.query.clone())
        } else if !self.orders.selected.is_empty() {
            BatchTarget::Orders(self.orders.selection())
        } else {
            return self.say("Select orders first (space), or every order matching the filter (A).", true);
        };
        let id = self.id();
        self.flow = Some(Flow::new(FlowTarget::Batch(target.clone()), Stage::Previewing { id }));
        self.focus_pane(Pane::Rollback);
        Effects::with(vec![Command::PreviewBatch { id, target }])
    }

    fn cancel(&mut self) -> Effects {
        let now = self.now;
        if let Some(flow) = self.flow.as_mut() {
            match flow.stage {
                Stage::Running { id, .. } | Stage::Prechecking { id } | Stage::Previewing { id } => {
                    flow.stage = Stage::Cancelling { id, since: now };
                    return Effects::with(vec![Command::Cancel { id }]);
                }
                Stage::Cancelling { .. } => return Effects::none(),
                _ if flow.is_finished() => {
                    self.flow = None;
                    return Effects::redraw();
                }
                _ => {}
            }
        }
        if let Load::Loading { id, .. } = self.precheck {
            self.precheck = Load::Cancelled;
            return Effects::with(vec![Command::Cancel { id }]);
        }
        if let Some((id, _)) = self.orders.loading.take() {
            return Effects::with(vec![Command::Cancel { id }]);
        }
        if !self.orders.selected.is_empty() || self.orders.all_matching {
            self.orders.selected.clear();
            self.orders.all_matching = false;
            return Effects::redraw();
        }
        Effects::none()
    }

    // ------------------------------------------------------------------------------------
    // Mouse and paste
    // ------------------------------------------------------------------------------------

    fn on_mouse(&mut self, m: MouseEvent) -> Effects {
        let Some(a) = self.areas() else { return Effects::none() };
        let rows = a.order_rows();
        match m.kind {
            MouseEventKind::ScrollDown if contains(a.orders, m.column, m.row) => {
                self.orders.move_cursor(3, rows);
                Effects::with(self.more_orders())
            }
            MouseEventKind::ScrollUp if contains(a.orders, m.column, m.row) => {
                self.orders.move_cursor(-3, rows);
                Effects::with(self.more_orders())
            }
            MouseEventKind::Down(MouseButton::Left) => {
                if contains(a.orders, m.column, m.row) {
                    self.focus = Pane::Orders;
                    if m.row >= a.first_order_row() {
                        let index = self.orders.offset + (m.row - a.first_order_row()) as usize;
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

    fn on_paste(&mut self, text: &str) -> Effects {
        if self.too_small() {
            return Effects::none();
        }
        if self.dialog_paste(text) {
            return Effects::redraw();
        }
        // Single-line inputs: a pasted newline becomes a space.
        let text: String = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
        let input: Option<&mut TextArea<'static>> = if let Some(e) = self.orders.editing.as_mut() {
            Some(e)
        } else if let Some(f) = self.flow.as_mut() {
            match f.stage {
                Stage::Reason => Some(&mut f.reason),
                Stage::Confirm if f.confirm_word.is_some() => Some(&mut f.confirm),
                _ => None,
            }
        } else {
            None
        };
        match input {
            Some(t) => {
                t.insert_str(text);
                Effects::redraw()
            }
            None => Effects::none(),
        }
    }

    // ------------------------------------------------------------------------------------
    // Answers from the database
    // ------------------------------------------------------------------------------------

    fn on_db(&mut self, ev: DbEvent) -> Effects {
        let rows = self.order_rows();
        match ev {
            DbEvent::Connection(state) => {
                let came_up = matches!(state, ConnState::Up { .. }) && !matches!(self.conn, ConnState::Up { .. });
                if state == self.conn {
                    return Effects::none();
                }
                self.conn = state;
                if came_up && !self.orders.started {
                    let mut e = self.reload_orders();
                    e.commands.push(Command::RefreshDashboard);
                    return e;
                }
                Effects::redraw()
            }
            DbEvent::Target(t) => {
                self.target = t;
                Effects::redraw()
            }
            DbEvent::Orders { id, page, rows: r, has_more } => {
                let first = page == PageRequest::First;
                if !self.orders.receive(id, page, r, has_more, rows) {
                    return Effects::none();
                }
                if first {
                    self.orders.loaded_at = Some(self.now);
                }
                Effects::with(self.more_orders())
            }
            DbEvent::OrderCount { id, count, capped } => {
                if self.orders.count_request != Some(id) {
                    return Effects::none();
                }
                self.orders.count_request = None;
                self.orders.count = Some((count, capped));
                Effects::redraw()
            }
            DbEvent::Precheck { id, order, user, result } => self.on_precheck(id, order, user, result),
            DbEvent::Rollback { id, result } => self.on_rollback(id, result),
            DbEvent::BatchPreview { id, result } => {
                let Some(flow) = self.flow.as_mut().filter(|f| f.request() == Some(id)) else {
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
            DbEvent::BatchProgress { id, done, total, rolled_back, problems, recent } => {
                let Some(flow) = self.flow.as_mut().filter(|f| f.request() == Some(id)) else {
                    return Effects::none();
                };
                flow.run.done = done;
                flow.run.total = total;
                flow.run.rolled_back = rolled_back;
                flow.run.problems = problems;
                for r in recent {
                    if let crate::core::batch::Outcome::RolledBack { refunded, .. } = &r.1 {
                        flow.run.refunded += *refunded;
                    }
                    flow.run.recent.push_front(r);
                }
                flow.run.recent.truncate(50);
                Effects::redraw()
            }
            DbEvent::BatchDone { id, result } => {
                let now = self.now;
                let Some(flow) = self.flow.as_mut().filter(|f| f.request() == Some(id)) else {
                    return Effects::none();
                };
                let elapsed_ms = match flow.stage {
                    Stage::Running { since, .. } | Stage::Cancelling { since, .. } => (now - since).num_milliseconds(),
                    _ => 0,
                };
                flow.stage = match &result {
                    Ok(s) if s.cancelled => Stage::Cancelled {
                        message: format!(
                            "Batch stopped: {} rolled back, {} not attempted. Run it again to finish.",
                            s.rolled_back, s.not_attempted
                        ),
                    },
                    Ok(s) => {
                        Stage::Done { ok: s.complete(), message: format!("{}.", s.outcome_sentence()), elapsed_ms }
                    }
                    Err(e) => Stage::Failed { error: e.clone() },
                };
                flow.summary = result.ok();
                // The batch is done: its selection is spent.
                self.orders.selected.clear();
                self.orders.all_matching = false;
                let mut e = self.reload_orders();
                // The proof: the ledger audited again now, not at its next minute.
                e.commands.extend([Command::RefreshDashboard, Command::AuditNow]);
                e
            }
            DbEvent::Dashboard(d) => {
                if self.dashboard.as_ref() == Some(&d) {
                    return Effects::none();
                }
                self.dashboard = Some(d);
                Effects::redraw()
            }
            DbEvent::Maintenance(m) => {
                if self.maintenance.as_ref() == Some(&m) {
                    return Effects::none();
                }
                self.maintenance = Some(m);
                Effects::redraw()
            }
            DbEvent::Cancelled { id } => self.on_cancelled(id),
            DbEvent::MaintenanceSet { id, on, reason, result } => self.on_maintenance_set(id, on, reason, result),
            DbEvent::JournalSynced(r) => {
                let Some(case) = self.case.as_mut() else { return Effects::none() };
                let changed = case.db_copy.as_ref().map(|c| c.is_ok()) != Some(r.is_ok());
                case.db_copy = Some(r);
                if changed { Effects::redraw() } else { Effects::none() }
            }
            DbEvent::Failed { id, error } => {
                if self.orders.loading.map(|l| l.0) == Some(id) {
                    self.orders.loading = None;
                    self.orders.error = Some(error);
                    return Effects::redraw();
                }
                if self.orders.count_request == Some(id) {
                    self.orders.count_request = None;
                    return Effects::none();
                }
                if let Some(flow) = self.flow.as_mut().filter(|f| f.request() == Some(id)) {
                    flow.stage = Stage::Failed { error };
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

    fn on_precheck(&mut self, id: RequestId, order: Uuid, user: Uuid, result: Result<Precheck, String>) -> Effects {
        let for_pane = matches!(self.precheck, Load::Loading { id: i, .. } if i == id);
        let for_flow = self.flow.as_ref().is_some_and(|f| f.request() == Some(id));
        if !for_pane && !for_flow {
            return Effects::none();
        }
        if for_pane {
            self.detail_scroll = 0;
            self.precheck = match &result {
                Ok(p) => Load::Loaded(PrecheckView { order, user, result: p.clone(), at: self.now }),
                Err(e) => Load::Failed(e.clone()),
            };
        }
        if let Some(flow) = self.flow.as_mut().filter(|_| for_flow) {
            if matches!(flow.stage, Stage::Cancelling { .. }) {
                // It finished before the cancel reached it: the operator still said stop.
                flow.stage = Stage::Cancelled { message: "Cancelled: nothing was changed.".into() };
                return Effects::redraw();
            }
            match result {
                Ok(p) if p.ready => {
                    flow.baseline = p.baseline.clone().map(|b| (order, user, b));
                    flow.stage = Stage::Reason;
                }
                Ok(_) => flow.stage = Stage::PrecheckFailed,
                Err(e) => flow.stage = Stage::Failed { error: e },
            }
        }
        Effects::redraw()
    }

    fn on_rollback(
        &mut self,
        id: RequestId,
        result: Result<crate::core::contract::RollbackAndPostcheck, String>,
    ) -> Effects {
        let now = self.now;
        let Some(flow) = self.flow.as_mut().filter(|f| f.request() == Some(id)) else {
            return Effects::none();
        };
        let elapsed_ms = match flow.stage {
            Stage::Running { since, .. } | Stage::Cancelling { since, .. } => (now - since).num_milliseconds(),
            _ => 0,
        };
        match result {
            Ok(r) => {
                let passed = r.postcheck.as_ref().is_some_and(|p| p.successful);
                flow.stage = if r.rollback.success {
                    Stage::Done {
                        ok: passed,
                        message: format!(
                            "Rolled back {} order(s): refunded {}, margin released {}. Post-check {}.",
                            r.rollback.order_ids.as_ref().map_or(0, Vec::len),
                            crate::core::format::money(r.rollback.refunded.unwrap_or_default()),
                            crate::core::format::money(r.rollback.margin_released.unwrap_or_default()),
                            if passed { "passed" } else { "FAILED" }
                        ),
                        elapsed_ms,
                    }
                } else {
                    Stage::Done {
                        ok: false,
                        message: format!(
                            "Refused ({}): {}. Nothing was changed.",
                            r.rollback.error_code.as_deref().unwrap_or("unknown"),
                            r.rollback.message.as_deref().unwrap_or("")
                        ),
                        elapsed_ms,
                    }
                };
                self.detail_scroll = 0;
                self.postcheck = Load::Loaded(PostcheckView {
                    rollback: r.rollback.clone(),
                    postcheck: r.postcheck.clone(),
                    at: now,
                });
                flow.result = Some(r);
                self.focus_pane(Pane::Postcheck);
                let mut e = self.reload_orders();
                e.commands.extend([Command::RefreshDashboard, Command::AuditNow]);
                e
            }
            Err(e) => {
                flow.stage = Stage::Failed { error: e };
                Effects::redraw()
            }
        }
    }

    fn on_cancelled(&mut self, id: RequestId) -> Effects {
        let mut changed = false;
        // A flow's pre-check is also the Pre-check pane's request: both end.
        if let Some(flow) = self.flow.as_mut().filter(|f| f.request() == Some(id)) {
            flow.stage = Stage::Cancelled { message: "Cancelled on the server: nothing was changed.".into() };
            changed = true;
        }
        if matches!(self.precheck, Load::Loading { id: i, .. } if i == id) {
            self.precheck = Load::Cancelled;
            changed = true;
        }
        if changed { Effects::redraw() } else { Effects::none() }
    }

    /// The order under the cursor (for rendering).
    pub fn current_order(&self) -> Option<&OrderRow> {
        self.orders.current()
    }

    /// Whether the first page is on its way (for the Orders pane's "loading").
    pub fn orders_loading_first(&self) -> bool {
        matches!(self.orders.loading, Some((_, PageRequest::First)))
    }
}
