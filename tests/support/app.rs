//! The console in process: a driver that feeds `App::update` what the running console feeds
//! it (terminal events, ticks, the worker's `DbEvent`s, the journal's answers) and keeps what
//! comes out, and the screen drawn on a `TestBackend` read back as text. No database, no
//! terminal, no wall clock.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use uuid::Uuid;

use incident_console::console::app::{Action, App, Effects};
use incident_console::console::dialogs::Dialog;
use incident_console::console::dialogs::text::{Purpose, TextDialog};
use incident_console::console::incident::{IncidentPanel, JournalEvent, JournalRequest};
use incident_console::console::panes::Pane;
use incident_console::console::panes::rollback::Stage;
use incident_console::console::protocol::{Command, ConnState, DbEvent, PageRequest, RequestId};
use incident_console::console::render;
use incident_console::console::session::Session;
use incident_console::core::comms::TemplateStore;
use incident_console::core::contacts::Contact;
use incident_console::core::contract::OrderRow;
use incident_console::core::keys::KeyMap;
use incident_console::core::workflow::checklist::Checklist;
use incident_console::core::workflow::incident::{Observation, Step};
use incident_console::core::workflow::{IncidentHeader, Level};
use incident_console::store::incidents::IncidentStore;

use super::fixtures::{INCIDENT_ID, OPERATOR, TITLE, maintenance_off, rows, t0};

/// The two sizes every screen is checked at: the smallest supported, and a roomy one.
pub const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

/// Who performs the journal requests that come out of `App::update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journaling {
    /// The test: `act` hands them back in the `Effects`, and the test passes them to
    /// `perform` or `append` (so it can check what was asked, and when).
    ByTest,
    /// The driver, as the console's loop does: `act` performs each at once, requires it
    /// appended, and feeds the answer back until quiet.
    Auto,
}

/// The incident's journal on disk, as the console's loop holds it.
pub struct Journal {
    /// Performs the journal requests.
    pub session: Session,
    /// Every clipboard sequence the session wrote (OSC 52).
    pub clipboard: Arc<Mutex<Vec<String>>>,
    /// The temporary directory holding `incidents/`.
    pub dir: tempfile::TempDir,
    /// `dir` as it appears in paths.
    pub root: String,
}

/// The app, the journal it writes (if it has an incident), and every command it sent.
pub struct Driver {
    /// The state machine under test.
    pub app: App,
    /// Every command sent to the (absent) worker by `act`, in order, so answers can carry
    /// the request ids the app is waiting for.
    pub sent: Vec<Command>,
    /// The incident's journal; `None` for an app without an incident.
    pub journal: Option<Journal>,
    journaling: Journaling,
}

impl Driver {
    /// An app without an incident journal, on the rollback screen, its clock at `now`
    /// (the incident header declared then), connected to nothing yet.
    pub fn new(title: &str, level: Level, now: DateTime<Utc>, size: (u16, u16)) -> Driver {
        let header = IncidentHeader::new(title.into(), level, now);
        let app = App::new(KeyMap::default(), header, "sandbox".into(), now, size);
        Driver { app, sent: Vec::new(), journal: None, journaling: Journaling::ByTest }
    }

    /// An incident `TITLE` opened at `t0()` by `OPERATOR` at `level` in `dir` (a real
    /// journal, created with `IncidentStore`), with the shipped checklist and templates and
    /// `contacts`; the app on the rollback screen, its clock at `t0()`.
    pub fn with_incident(
        dir: tempfile::TempDir,
        level: Level,
        contacts: Vec<Contact>,
        size: (u16, u16),
        journaling: Journaling,
    ) -> Driver {
        let root = dir.path().to_str().expect("a UTF-8 path").to_string();
        let store = IncidentStore::new(dir.path().join("incidents"));
        // A fixed id of the form `create` gives (its random part would change every screen).
        let incident = store
            .create_with_id(
                INCIDENT_ID,
                TITLE,
                level,
                "EU desk reports duplicate fills",
                OPERATOR,
                t0(),
                Checklist::shipped(),
            )
            .expect("the incident is created");
        let entries = incident.entries().expect("the journal reads back");
        let delivered = entries.last().map_or(0, |e| e.seq);
        let panel = IncidentPanel::new(
            entries,
            Checklist::shipped(),
            TemplateStore::shipped(),
            contacts,
            incident.journal.path().to_path_buf(),
            t0(),
        )
        .expect("the journal describes an incident");
        let clipboard = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&clipboard);
        let session = Session::new(
            incident,
            OPERATOR.into(),
            delivered,
            Box::new(move |s: &str| sink.lock().expect("the clipboard lock").push(s.to_string())),
        )
        // Whatever terminal the tests run in, copies go to the sink (tmux has its own test).
        .with_tmux(false);
        let header = IncidentHeader::new(TITLE.into(), level, t0());
        let app = App::new(KeyMap::default(), header, "sandbox".into(), t0(), size).with_incident(panel);
        let journal = Journal { session, clipboard, dir, root };
        Driver { app, sent: Vec::new(), journal: Some(journal), journaling }
    }

    // ------------------------------------------------------------------------------------
    // Input
    // ------------------------------------------------------------------------------------

    /// Applies an action and keeps the commands it sent. With `Journaling::Auto` the
    /// journal requests are performed here (and the returned `journal` is empty); the
    /// commands and redraw their answers bring are merged into the returned `Effects`.
    pub fn act(&mut self, action: Action) -> Effects {
        let mut effects = self.app.update(action);
        if self.journaling == Journaling::Auto {
            while !effects.journal.is_empty() {
                let request = effects.journal.remove(0);
                let now = self.app.now;
                let event = self.session().perform(request.clone(), now);
                assert!(matches!(event, JournalEvent::Appended { .. }), "{request:?} was not appended: {event:?}");
                let more = self.app.update(Action::Journal(event));
                effects.commands.extend(more.commands);
                effects.journal.extend(more.journal);
                effects.redraw |= more.redraw;
            }
        }
        self.sent.extend(effects.commands.iter().cloned());
        effects
    }

    /// The clock moves to `t` (a tick).
    pub fn tick(&mut self, t: DateTime<Utc>) -> Effects {
        self.act(Action::Tick(t))
    }

    /// An answer (or news) from the worker.
    pub fn db(&mut self, ev: DbEvent) -> Effects {
        self.act(Action::Db(Box::new(ev)))
    }

    /// A key with explicit modifiers (ctrl-c).
    pub fn key_mod(&mut self, code: KeyCode, modifiers: KeyModifiers) -> Effects {
        self.act(Action::Terminal(Event::Key(KeyEvent::new(code, modifiers))))
    }

    /// A key as a terminal reports it: capitals and back-tab come with shift.
    pub fn key(&mut self, code: KeyCode) -> Effects {
        let modifiers = match code {
            KeyCode::Char(c) if c.is_ascii_uppercase() => KeyModifiers::SHIFT,
            KeyCode::BackTab => KeyModifiers::SHIFT,
            _ => KeyModifiers::NONE,
        };
        self.key_mod(code, modifiers)
    }

    /// One character key.
    pub fn press(&mut self, c: char) -> Effects {
        self.key(KeyCode::Char(c))
    }

    /// Types `text` key by key into whatever has the keys; typing must ask nothing of the
    /// worker or the journal.
    pub fn typed(&mut self, text: &str) {
        for c in text.chars() {
            let e = self.press(c);
            assert!(e.commands.is_empty() && e.journal.is_empty(), "typing {c:?} asked for {e:?}");
        }
    }

    /// The Enter key.
    pub fn enter(&mut self) -> Effects {
        self.key(KeyCode::Enter)
    }

    /// The Esc key.
    pub fn esc(&mut self) -> Effects {
        self.key(KeyCode::Esc)
    }

    /// A bracketed paste.
    pub fn paste(&mut self, text: &str) -> Effects {
        self.act(Action::Terminal(Event::Paste(text.into())))
    }

    /// A mouse event at a cell.
    pub fn mouse(&mut self, kind: MouseEventKind, column: u16, row: u16) -> Effects {
        self.act(Action::Terminal(Event::Mouse(MouseEvent { kind, column, row, modifiers: KeyModifiers::NONE })))
    }

    /// Tab until `pane` has focus (at most once round the incident screen's four panes).
    pub fn focus(&mut self, pane: Pane) {
        for _ in 0..4 {
            if self.app.focus == pane {
                return;
            }
            self.key(KeyCode::Tab);
        }
        assert_eq!(self.app.focus, pane, "Tab reaches every incident pane");
    }

    // ------------------------------------------------------------------------------------
    // The journal
    // ------------------------------------------------------------------------------------

    /// Does what the loop does with journal requests: performs each at `app.now` and feeds
    /// the answer back, until quiet. Returns the events. (The commands the answers bring are
    /// not kept in `sent`.)
    pub fn perform(&mut self, requests: Vec<JournalRequest>) -> Vec<JournalEvent> {
        let mut queue = requests;
        let mut events = Vec::new();
        while !queue.is_empty() {
            let request = queue.remove(0);
            let now = self.app.now;
            let event = self.session().perform(request, now);
            events.push(event.clone());
            let more = self.app.update(Action::Journal(event));
            queue.extend(more.journal);
        }
        events
    }

    /// Performs the journal requests of `e` as the loop does (each must be appended) and
    /// returns `e` with the commands their answers released, kept in `sent` too: a rollback
    /// goes to the worker only once its intent is in the journal.
    pub fn through_journal(&mut self, e: Effects) -> Effects {
        let mut out = Effects { commands: e.commands, redraw: e.redraw, journal: Vec::new() };
        let mut queue = e.journal;
        while !queue.is_empty() {
            let request = queue.remove(0);
            let now = self.app.now;
            let event = self.session().perform(request.clone(), now);
            assert!(matches!(event, JournalEvent::Appended { .. }), "{request:?} was not appended: {event:?}");
            let more = self.app.update(Action::Journal(event));
            self.sent.extend(more.commands.iter().cloned());
            out.commands.extend(more.commands);
            queue.extend(more.journal);
            out.redraw |= more.redraw;
        }
        out
    }

    /// Enter on a rollback's confirmation, with an incident: its intent is asked of the
    /// journal (and nothing of the worker yet), performed, and the rollback or batch it
    /// released is returned.
    pub fn confirm_journaled(&mut self) -> Command {
        let e = self.enter();
        assert!(e.commands.is_empty(), "nothing goes to the worker before the intent: {:?}", e.commands);
        assert!(
            matches!(e.journal.as_slice(), [JournalRequest::Step(Step::Observe(Observation::RollbackIntended { .. }))]),
            "the confirmation asks the journal for the intent: {:?}",
            e.journal
        );
        let e = self.through_journal(e);
        e.commands
            .into_iter()
            .find(|c| matches!(c, Command::Rollback { .. } | Command::RunBatch { .. }))
            .expect("the intent appended releases the rollback")
    }

    /// Performs `requests` and requires every one to be appended.
    pub fn append(&mut self, requests: Vec<JournalRequest>) {
        assert!(!requests.is_empty(), "nothing was asked of the journal");
        for ev in self.perform(requests) {
            assert!(matches!(ev, JournalEvent::Appended { .. }), "not appended: {ev:?}");
        }
    }

    /// Asks the journal for one request directly, as the rollback screen's answers do, and
    /// feeds the answer back; it must be appended.
    pub fn record(&mut self, request: JournalRequest) {
        let now = self.app.now;
        let event = self.session().perform(request.clone(), now);
        assert!(matches!(event, JournalEvent::Appended { .. }), "{request:?} was not appended: {event:?}");
        self.app.update(Action::Journal(event));
    }

    /// Does what the loop does once a second: folds in what another process appended to
    /// the journal; whether there was any.
    pub fn look_at_journal(&mut self) -> bool {
        match self.session().others_appended() {
            Some(event) => {
                self.app.update(Action::Journal(event));
                true
            }
            None => false,
        }
    }

    /// The session that performs the journal requests.
    pub fn session(&mut self) -> &mut Session {
        &mut self.journal.as_mut().expect("a journal").session
    }

    /// Every clipboard sequence the journal's session wrote.
    pub fn clipboard(&self) -> Vec<String> {
        self.journal.as_ref().expect("a journal").clipboard.lock().expect("the clipboard lock").clone()
    }

    /// The temporary directory the incident lives in, as it appears in paths.
    pub fn root(&self) -> &str {
        &self.journal.as_ref().expect("a journal").root
    }

    // ------------------------------------------------------------------------------------
    // State
    // ------------------------------------------------------------------------------------

    /// The incident screen's state.
    pub fn case(&self) -> &IncidentPanel {
        self.app.case.as_ref().expect("an incident panel")
    }

    /// The open incident dialog, if any.
    pub fn dialog(&self) -> Option<&Dialog> {
        self.case().dialog.as_ref()
    }

    /// The open text dialog: its purpose, its text and its hint.
    pub fn text_dialog(&self) -> (Purpose, String, Option<String>) {
        match self.dialog() {
            Some(Dialog::Text(TextDialog { purpose, input, hint, .. })) => {
                (purpose.clone(), input.lines().join("\n"), hint.clone())
            }
            other => panic!("a text dialog is open: {other:?}"),
        }
    }

    /// The footer's message and whether it is an error.
    pub fn message(&self) -> (String, bool) {
        self.app.message.as_ref().map(|m| (m.text.clone(), m.error)).expect("a footer message")
    }

    /// How many journal entries the incident screen holds.
    pub fn entries(&self) -> usize {
        self.case().entries.len()
    }

    /// The kind of the newest journal entry.
    pub fn last_kind(&self) -> String {
        self.case().entries.last().map(|e| e.kind().to_string()).expect("an entry")
    }

    /// Moves the Messages pane's cursor to `template` (the pane focused).
    pub fn select_message(&mut self, template: &str) {
        self.focus(Pane::Messages);
        let index = self.case().messages.iter().position(|s| s.name == template).expect("the template exists");
        self.press('g');
        for _ in 0..index {
            self.press('j');
        }
        assert_eq!(self.case().current_message().map(|s| s.name.as_str()), Some(template));
    }

    /// The text of `template`'s message as it would be copied now.
    pub fn slot_text(&self, template: &str) -> String {
        self.case()
            .messages
            .iter()
            .find(|s| s.name == template)
            .and_then(|s| s.text())
            .expect("the template is filled")
            .to_string()
    }

    /// The required fields of `template` still empty.
    pub fn unfilled(&self, template: &str) -> Vec<String> {
        self.case().messages.iter().find(|s| s.name == template).map(|s| s.unfilled()).expect("the template")
    }

    /// The rollback flow's stage.
    pub fn stage(&self) -> Stage {
        self.app.flow.as_ref().map(|f| f.stage.clone()).expect("a rollback flow")
    }

    /// The order under the cursor.
    pub fn current(&self) -> OrderRow {
        self.app.current_order().cloned().expect("an order under the cursor")
    }

    /// The last command sent that `pick` recognises, as `pick` reads it.
    pub fn last_sent<T>(&self, what: &str, pick: impl Fn(&Command) -> Option<T>) -> T {
        self.sent.iter().rev().find_map(pick).unwrap_or_else(|| panic!("a {what} was sent: {:?}", self.sent))
    }

    /// The id of the last page request, and which page.
    pub fn last_page(&self) -> (RequestId, PageRequest) {
        self.last_sent("LoadOrders", |c| match c {
            Command::LoadOrders { id, page, .. } => Some((*id, page.clone())),
            _ => None,
        })
    }

    /// The id of the last count request.
    pub fn last_count(&self) -> RequestId {
        self.last_sent("CountOrders", |c| match c {
            Command::CountOrders { id, .. } => Some(*id),
            _ => None,
        })
    }

    /// The last pre-check asked for: its id, order and user.
    pub fn last_precheck(&self) -> (RequestId, Uuid, Uuid) {
        self.last_sent("Precheck", |c| match c {
            Command::Precheck { id, order, user } => Some((*id, *order, *user)),
            _ => None,
        })
    }

    /// The id of the last batch preview asked for.
    pub fn last_preview(&self) -> RequestId {
        self.last_sent("PreviewBatch", |c| match c {
            Command::PreviewBatch { id, .. } => Some(*id),
            _ => None,
        })
    }

    /// The id of the last rollback or batch run.
    pub fn last_run(&self) -> RequestId {
        self.last_sent("Rollback or RunBatch", |c| match c {
            Command::Rollback { id, .. } | Command::RunBatch { id, .. } => Some(*id),
            _ => None,
        })
    }

    /// The id of the last maintenance switch.
    pub fn last_maintenance_request(&self) -> RequestId {
        self.last_sent("SetMaintenance", |c| match c {
            Command::SetMaintenance { id, .. } => Some(*id),
            _ => None,
        })
    }

    /// Connected, with one page of `n` orders of the burst (`fixtures::row`) on the rollback
    /// screen (no count answered), maintenance off.
    pub fn connect_with_orders(&mut self, n: u32) {
        let e = self.db(DbEvent::Connection(ConnState::Up { latency_ms: 2 }));
        let page = e
            .commands
            .iter()
            .find_map(|c| match c {
                Command::LoadOrders { id, .. } => Some(*id),
                _ => None,
            })
            .expect("the first page is asked for");
        self.db(DbEvent::Orders { id: page, page: PageRequest::First, rows: rows(0..n), has_more: false });
        self.db(DbEvent::Maintenance(maintenance_off()));
    }

    /// Answers the last page and count requests with these rows (no more after them).
    pub fn answer_orders(&mut self, rows: Vec<OrderRow>) {
        let (page_id, page) = self.last_page();
        let count_id = self.last_count();
        let n = rows.len() as i64;
        self.db(DbEvent::Orders { id: page_id, page, rows, has_more: false });
        self.db(DbEvent::OrderCount { id: count_id, count: n, capped: false });
    }

    // ------------------------------------------------------------------------------------
    // The screen
    // ------------------------------------------------------------------------------------

    /// One frame at the app's size.
    pub fn draw(&self) -> Terminal<TestBackend> {
        draw(&self.app)
    }

    /// One frame at the app's size, as text.
    pub fn screen(&self) -> String {
        screen_text(&self.draw())
    }
}

/// One frame of `app` on a test terminal of the app's size.
pub fn draw(app: &App) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(app.size.0, app.size.1)).expect("a test terminal");
    terminal.draw(|f| render(app, f)).expect("a frame");
    terminal
}

/// The screen as plain text, one line per row.
pub fn screen_text(terminal: &Terminal<TestBackend>) -> String {
    let buf = terminal.backend().buffer();
    let w = buf.area.width as usize;
    buf.content.chunks(w).map(|row| row.iter().map(|c| c.symbol()).collect::<String>()).collect::<Vec<_>>().join("\n")
}

/// Each of `needles` is on the screen.
pub fn assert_has(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "the screen should show {n:?}:\n{text}");
    }
}

/// None of `needles` is on the screen.
pub fn assert_lacks(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(!text.contains(n), "the screen should not show {n:?}:\n{text}");
    }
}
