//! The panes, one module each: its state (or the part of the incident it shows), the keys
//! it answers, the keys its footer names, and its drawing. `Pane` lists them and routes a
//! key, a footer or a frame to the module of the pane.
//!
//! A pane's `key` answers `Some` when a key is its own (even if it then does nothing) and
//! `None` to let the screen ask the next pane; most keys act only while the pane has the
//! focus, a few (a rollback, a filter, cancel) wherever the focus is on its screen.

pub(crate) mod checklist;
pub(crate) mod dashboard;
pub(crate) mod messages;
pub mod orders;
pub(crate) mod postcheck;
pub(crate) mod precheck;
pub mod rollback;
pub(crate) mod team;
pub(crate) mod timeline;

use ratatui::Frame;
use ratatui::layout::Rect;

use crate::console::app::{App, Effects};
use crate::core::keys::KeyAction;

/// The panes that can have focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    /// Candidate orders.
    Orders,
    /// Pre-check of an order.
    Precheck,
    /// The rollback being prepared or run.
    Rollback,
    /// Post-check of the last rollback.
    Postcheck,
    /// Live metrics and alerts.
    Dashboard,
    /// The incident's phase, time box and checklist.
    Checklist,
    /// The journal, newest first.
    Timeline,
    /// The response team and the escalation contacts.
    Team,
    /// Message templates: fill, edit, copy.
    Messages,
}

impl Pane {
    /// Focus order for Tab.
    pub const ORDER: [Pane; 5] = [Pane::Orders, Pane::Precheck, Pane::Rollback, Pane::Postcheck, Pane::Dashboard];
    /// Focus order for Tab on the incident screen, and its tabs' order on a narrow screen:
    /// the panes as read where they are drawn side by side, the left column (checklist,
    /// team) then the right (messages, timeline).
    pub const INCIDENT: [Pane; 4] = [Pane::Checklist, Pane::Team, Pane::Messages, Pane::Timeline];
    /// The incident screen's panes in the order they are asked whether a key is theirs.
    pub(crate) const INCIDENT_KEY_ORDER: [Pane; 4] = [Pane::Checklist, Pane::Timeline, Pane::Team, Pane::Messages];
    /// The rollback screen's panes in the order they are asked whether a key is theirs.
    /// The flow comes first, so that cancel stops a rollback before a pre-check or a page
    /// of orders.
    pub(crate) const ROLLBACK_KEY_ORDER: [Pane; 5] =
        [Pane::Rollback, Pane::Precheck, Pane::Orders, Pane::Postcheck, Pane::Dashboard];

    /// Whether the pane is on the incident screen.
    pub fn on_incident_screen(self) -> bool {
        Pane::INCIDENT.contains(&self)
    }

    /// Title.
    pub fn title(self) -> &'static str {
        match self {
            Pane::Orders => "Orders",
            Pane::Precheck => "Pre-check",
            Pane::Rollback => "Rollback",
            Pane::Postcheck => "Post-check",
            Pane::Dashboard => "Dashboard",
            Pane::Checklist => "Checklist",
            Pane::Timeline => "Timeline",
            Pane::Team => "Team",
            Pane::Messages => "Messages",
        }
    }
}

impl Pane {
    /// The pane's answer to a key (None: not its key).
    pub(crate) fn key(self, app: &mut App, action: KeyAction) -> Option<Effects> {
        let focused = app.focus == self;
        match self {
            Pane::Orders => orders::key(app, action, focused),
            Pane::Precheck => precheck::key(app, action, focused),
            Pane::Rollback => rollback::key(app, action),
            Pane::Postcheck => postcheck::key(app, action, focused),
            Pane::Dashboard => None,
            Pane::Checklist => checklist::key(app, action, focused),
            Pane::Timeline => timeline::key(app, action, focused),
            Pane::Team => team::key(app, action, focused),
            Pane::Messages => messages::key(app, action, focused),
        }
    }

    /// The keys the footer names while the pane has the focus, in the order they matter.
    pub(crate) fn hints(self) -> &'static [(KeyAction, &'static str)] {
        match self {
            Pane::Orders => orders::HINTS,
            Pane::Precheck => precheck::HINTS,
            Pane::Rollback => rollback::HINTS,
            Pane::Postcheck => postcheck::HINTS,
            Pane::Dashboard => dashboard::HINTS,
            Pane::Checklist => checklist::HINTS,
            Pane::Timeline => timeline::HINTS,
            Pane::Team => team::HINTS,
            Pane::Messages => messages::HINTS,
        }
    }

    /// Draws the pane in its rectangle.
    pub(crate) fn render(self, app: &App, frame: &mut Frame, area: Rect) {
        match self {
            Pane::Orders => orders::render(app, frame, area),
            Pane::Precheck => precheck::render(app, frame, area),
            Pane::Rollback => rollback::render(app, frame, area),
            Pane::Postcheck => postcheck::render(app, frame, area),
            Pane::Dashboard => dashboard::render(app, frame, area),
            Pane::Checklist => checklist::render(app, frame, area),
            Pane::Timeline => timeline::render(app, frame, area),
            Pane::Team => team::render(app, frame, area),
            Pane::Messages => messages::render(app, frame, area),
        }
    }
}

/// Whether an action moves a cursor or scrolls.
pub(crate) fn is_movement(action: KeyAction) -> bool {
    matches!(
        action,
        KeyAction::Up | KeyAction::Down | KeyAction::PageUp | KeyAction::PageDown | KeyAction::Top | KeyAction::Bottom
    )
}

/// Where a cursor at `pos` of `len` rows goes for a movement key (a page is 10 rows).
pub(crate) fn step(action: KeyAction, pos: usize, len: usize) -> usize {
    let last = len.saturating_sub(1);
    let page = 10;
    match action {
        KeyAction::Up => pos.saturating_sub(1),
        KeyAction::Down => (pos + 1).min(last),
        KeyAction::PageUp => pos.saturating_sub(page),
        KeyAction::PageDown => (pos + page).min(last),
        KeyAction::Top => 0,
        _ => last,
    }
}

/// Scrolls the Pre-check or Post-check pane: their check lists can be longer than the pane
/// at 80x24.
pub(crate) fn scroll_detail(app: &mut App, action: KeyAction) -> Effects {
    let before = app.detail_scroll;
    app.detail_scroll = match action {
        KeyAction::Up => before.saturating_sub(1),
        KeyAction::Down => before.saturating_add(1).min(30),
        KeyAction::PageUp | KeyAction::Top => 0,
        _ => before.saturating_add(5).min(30),
    };
    if app.detail_scroll == before { Effects::none() } else { Effects::redraw() }
}
