//! The console's state and how it changes. `App::update` takes an `Action` (a key, a
//! mouse event, a paste, a tick, or an answer from the database worker or the journal),
//! changes the state and returns the `Command`s for the worker and the requests for the
//! journal. No I/O happens here, so every behaviour can be tested by feeding actions.
//!
//! The App holds each pane's state; what a pane does with a key or an answer is in its
//! module under `panes`, a dialog's under `dialogs`. Here is only the routing: `input`
//! sends keys, mouse and paste to the overlay, dialog, input or pane that takes them,
//! `answers` sends the worker's and the journal's answers to the pane that asked.

mod answers;
mod input;

use chrono::{DateTime, Utc};
use crossterm::event::{Event, KeyEventKind};

use crate::console::incident::{IncidentPanel, JournalEvent, JournalRequest};
use crate::console::layout::Areas;
use crate::console::panes::Pane;
use crate::console::panes::orders::OrdersView;
use crate::console::panes::postcheck::PostcheckView;
use crate::console::panes::precheck::PrecheckView;
use crate::console::panes::rollback::Flow;
use crate::console::protocol::{Command, ConnState, DashboardData, DbEvent, PageRequest, RequestId};
use crate::core::contract::{MaintenanceState, OrderRow};
use crate::core::keys::KeyMap;
use crate::core::workflow::IncidentHeader;

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
    /// A signal (SIGHUP from a closed SSH session, SIGTERM) ends the console: as quitting,
    /// what runs is cancelled and what is known of it journaled first.
    Signal(&'static str),
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
    /// Draw again; nothing else.
    pub(crate) fn redraw() -> Self {
        Effects { commands: Vec::new(), redraw: true, journal: Vec::new() }
    }

    /// Nothing changed.
    pub(crate) fn none() -> Self {
        Effects::default()
    }

    /// Draw again and send these to the worker.
    pub(crate) fn with(commands: Vec<Command>) -> Self {
        Effects { commands, redraw: true, journal: Vec::new() }
    }

    /// Draw again and ask these of the journal.
    pub(crate) fn journal(requests: Vec<JournalRequest>) -> Self {
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
    /// The standby the reads that decide nothing go to, as last measured (None: no
    /// replica URL).
    pub replica: Option<crate::core::replica::ReplicaStatus>,
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
    /// The detail overlay, when open: the whole of what was under the cursor.
    pub details: Option<crate::console::dialogs::detail::Detail>,
    /// The last batch: it stays on the Rollback pane after the flow is closed, with its proof.
    pub last_batch: Option<crate::console::panes::rollback::LastBatch>,
    /// The operations of the batches confirmed in this console, and when: the dashboard's
    /// burst alert sets their rollbacks aside (the commander's own batch is expected, not
    /// an alarm) for as long as they stay within its window.
    pub planned_batches: Vec<(uuid::Uuid, DateTime<Utc>)>,
    /// The blast radius overlay, when open.
    pub blast: Option<crate::console::dialogs::blast::BlastView>,
    /// The evidence bundle's database read in flight.
    pub evidence_request: Option<RequestId>,
    /// The release overlay (Level 3), when open.
    pub release: Option<crate::console::dialogs::release::ReleaseView>,
    /// The approval requests on the database, newest first (read with maintenance mode).
    pub approvals: Vec<crate::core::approval::ApprovalRequest>,
    /// The requests this console filed.
    pub my_requests: Vec<uuid::Uuid>,
    /// The approvals overlay, when open.
    pub approvals_view: Option<crate::console::dialogs::approvals::ApprovalsView>,
    /// "A rollback is running: quit anyway?" is open.
    pub quit_confirm: bool,
    /// The console should exit.
    pub quit: bool,
    /// Quitting (why) once the batch cancelled on the way out says what it did, or at the
    /// time given, whichever comes first.
    pub leaving: Option<(String, DateTime<Utc>)>,
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
    /// Started with `--no-journal`: no incident journal, and every rollback and batch asks
    /// the worker to record the waiver in the audit log before it runs.
    pub no_journal: bool,
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
            replica: None,
            maintenance: None,
            focus: Pane::Orders,
            detail: Pane::Precheck,
            orders: OrdersView::default(),
            precheck: Load::Idle,
            flow: None,
            postcheck: Load::Idle,
            dashboard: None,
            help: false,
            details: None,
            blast: None,
            release: None,
            approvals: Vec::new(),
            my_requests: Vec::new(),
            approvals_view: None,
            evidence_request: None,
            last_batch: None,
            planned_batches: Vec::new(),
            quit_confirm: false,
            quit: false,
            leaving: None,
            message: None,
            screen: Screen::Rollback,
            case: None,
            maintenance_request: None,
            detail_scroll: 0,
            no_journal: false,
            next_id: 1,
        }
    }

    /// The console with an incident's journal behind it.
    pub fn with_incident(mut self, panel: IncidentPanel) -> Self {
        self.incident = panel.state.header();
        self.case = Some(panel);
        self
    }

    /// Applies one action.
    pub fn update(&mut self, action: Action) -> Effects {
        let e = self.apply(action);
        // The list's height follows the focus and the rollback flow (`orders_first`): the
        // cursor stays on screen whichever changed.
        let rows = self.order_rows();
        self.orders.move_cursor(0, rows);
        e
    }

    fn apply(&mut self, action: Action) -> Effects {
        match action {
            Action::Tick(now) => {
                let minute_changed = now.timestamp() / 60 != self.now.timestamp() / 60;
                self.now = now;
                if let Some((why, until)) = self.leaving.take() {
                    if now >= until {
                        return self.quit_now(&why);
                    }
                    self.leaving = Some((why, until));
                }
                if minute_changed && let Some(case) = self.case.as_mut() {
                    // Messages say "posted at" and "next update at": keep them current.
                    case.refresh_messages(now);
                }
                if let Some(e) = crate::console::panes::orders::on_tick(self) {
                    return e;
                }
                if self.animating() || minute_changed { Effects::redraw() } else { Effects::none() }
            }
            Action::Terminal(Event::Resize(w, h)) => {
                self.size = (w, h);
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
            Action::Signal(name) => self.leave_because(&format!("{name} ended the console")),
        }
    }

    /// A new request id.
    pub(crate) fn id(&mut self) -> RequestId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The evidence bundle: the database's part is asked of the worker (the journal says
    /// which operations, orders and users); its answer goes to the loop, which writes the
    /// archive. Without the database the bundle is written without that part, and says so.
    pub(crate) fn gather_evidence(&mut self) -> Effects {
        let Some(case) = self.case.as_ref() else {
            return self.say("The evidence bundle needs the incident's journal: there is none.", true);
        };
        let incident = case.state.id.clone();
        let touched = crate::core::bundle::touched(case.state.records.iter().map(|r| &r.event));
        if !matches!(self.conn, crate::console::protocol::ConnState::Up { .. }) {
            let database = self.target.clone();
            let part = Err("the database is not connected".to_string());
            let said = self.say("Writing the evidence bundle without the database's part (not connected) …", false);
            let mut e = Effects::journal(vec![JournalRequest::Bundle { database, part }]);
            e.redraw |= said.redraw;
            return e;
        }
        let id = self.id();
        self.evidence_request = Some(id);
        let mut e = Effects::with(vec![crate::console::protocol::Command::GatherEvidence { id, incident, touched }]);
        e.redraw |= self.say("Gathering the evidence from the database …", false).redraw;
        e
    }

    /// The database's part of the evidence bundle: the loop writes the archive.
    pub(crate) fn on_evidence(
        &mut self,
        id: RequestId,
        result: Result<crate::ops::bundle::DatabasePart, String>,
    ) -> Effects {
        if self.evidence_request != Some(id) {
            return Effects::none();
        }
        self.evidence_request = None;
        Effects::journal(vec![JournalRequest::Bundle { database: self.target.clone(), part: result }])
    }

    /// Says something in the footer (an error in red).
    pub(crate) fn say(&mut self, text: impl Into<String>, error: bool) -> Effects {
        self.message = Some(Message { text: text.into(), error });
        Effects::redraw()
    }

    /// Asks the loop to record observations (when there is a journal).
    pub(crate) fn observe(
        &self,
        observations: Vec<crate::core::workflow::incident::Observation>,
    ) -> Vec<JournalRequest> {
        if self.case.is_none() {
            return Vec::new();
        }
        observations
            .into_iter()
            .map(|o| JournalRequest::Step(crate::core::workflow::incident::Step::Observe(o)))
            .collect()
    }

    /// Focuses a pane of the rollback screen; a detail pane is also the tab shown.
    pub(crate) fn focus_pane(&mut self, pane: Pane) {
        if pane != self.focus {
            self.detail_scroll = 0;
        }
        self.focus = pane;
        if pane != Pane::Orders && (pane != Pane::Dashboard || self.areas().is_some_and(|a| a.dashboard.is_none())) {
            self.detail = pane;
        }
    }

    /// The last rollback seen on the dashboard (anyone's), when it is newer than `since`:
    /// what was loaded before it may show orders as they no longer are.
    pub(crate) fn rollback_since(&self, since: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        let last = self.dashboard.as_ref()?.metrics.last_rollback?;
        since.is_some_and(|s| last > s).then_some(last)
    }

    fn areas(&self) -> Option<Areas> {
        Areas::of(self.size.0, self.size.1, self.orders_first())
    }

    /// Whether the orders list gets most of a small screen: it has the focus and no
    /// rollback is open (one that is open needs its plan and result read whole).
    pub(crate) fn orders_first(&self) -> bool {
        self.focus == Pane::Orders && self.flow.is_none()
    }

    /// Whether the terminal is below the smallest size: only a notice is drawn.
    pub fn too_small(&self) -> bool {
        crate::console::layout::frame_rows(self.size.0, self.size.1).is_none()
    }

    /// Rows of orders the Orders pane shows on this screen.
    pub(crate) fn order_rows(&self) -> usize {
        self.areas().map_or(10, |a| a.order_rows()).saturating_sub(self.orders.strip_rows())
    }

    /// Whether something moves on screen (spinners, elapsed times): the loop ticks only then.
    pub fn animating(&self) -> bool {
        self.flow.as_ref().is_some_and(Flow::is_running)
            || self.orders.loading.is_some()
            || self.orders.retry.is_some()
            || matches!(self.precheck, Load::Loading { .. })
            || matches!(self.conn, ConnState::Connecting { .. })
    }

    /// Whether quitting now would leave a rollback half-watched.
    pub fn rollback_running(&self) -> bool {
        self.flow.as_ref().is_some_and(Flow::is_changing_money)
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
