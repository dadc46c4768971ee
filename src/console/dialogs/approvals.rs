//! The approvals overlay (four eyes): the requests filed in any console or CLI on this
//! database, live; the one under the cursor in full (its scope, the preview its requester
//! saw, why the policy asks for a second person); approve or deny it with a reason. The
//! database refuses a decision by the person who asked.

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};
use uuid::Uuid;

use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::keys::EventKeys;
use crate::console::protocol::{Command, ConnState, RequestId};
use crate::console::widgets::centered;
use crate::core::approval::{ApprovalRequest, RequestState};
use crate::core::keys::KeyAction;
use crate::core::sanitize;
use crate::core::workflow::incident::Observation;

/// The overlay's state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApprovalsView {
    /// The request under the cursor.
    pub selected: usize,
    /// Approving (true) or denying (false): the reason is being typed.
    pub deciding: Option<bool>,
    /// The reason typed.
    pub reason: String,
    /// The decision in flight.
    pub request: Option<RequestId>,
}

/// Requests waiting for a person other than this console's.
pub(crate) fn waiting_for_me(app: &App) -> usize {
    app.approvals
        .iter()
        .filter(|r| r.state(app.now) == RequestState::Pending && !app.my_requests.contains(&r.id))
        .count()
}

/// Opens it.
pub(crate) fn open(app: &mut App) -> Effects {
    if !matches!(app.conn, ConnState::Up { .. }) {
        return app.say("Approvals need the database: it is not connected.", true);
    }
    // The first request waiting for someone else comes first under the cursor.
    let selected = app
        .approvals
        .iter()
        .position(|r| r.state(app.now) == RequestState::Pending && !app.my_requests.contains(&r.id))
        .unwrap_or(0);
    app.approvals_view = Some(ApprovalsView { selected, ..ApprovalsView::default() });
    Effects::redraw()
}

/// The worker's list: kept, the cursor on the same request.
pub(crate) fn on_list(app: &mut App, list: Vec<ApprovalRequest>) -> Effects {
    let before: Option<Uuid> = app.approvals_view.as_ref().and_then(|v| app.approvals.get(v.selected)).map(|r| r.id);
    let changed = app.approvals != list;
    app.approvals = list;
    if let (Some(v), Some(id)) = (app.approvals_view.as_mut(), before) {
        v.selected = app.approvals.iter().position(|r| r.id == id).unwrap_or(0);
    }
    if changed { Effects::redraw() } else { Effects::none() }
}

/// A request of this console's moved: journaled, and said.
pub(crate) fn on_event(app: &mut App, r: ApprovalRequest, action: String, reason: String, by: String) -> Effects {
    if !app.my_requests.contains(&r.id) {
        app.my_requests.push(r.id);
    }
    let journal = app.observe(vec![Observation::Approval(r.event(&action, &reason, &by))]);
    // Its use follows the work's own outcome, which the footer keeps saying.
    if action == "used" {
        return Effects { journal, ..Effects::none() };
    }
    let short: String = r.id.to_string().chars().take(8).collect();
    let text = match action.as_str() {
        "requested" => format!(
            "Waiting for a second person: request {short} ({}). They approve it with {} in their console, or \
             `approvals approve {short} --reason ...`",
            r.scope(),
            Keys(&app.keymap).of(KeyAction::Approvals)
        ),
        "approved" => format!("Request {short} APPROVED by {}: {}", sanitize::line(&by), sanitize::line(&reason)),
        "denied" => format!("Request {short} DENIED by {}: {}", sanitize::line(&by), sanitize::line(&reason)),
        _ => format!("Request {short} withdrawn."),
    };
    let mut e = app.say(text, action == "denied");
    e.journal = journal;
    e
}

/// The answer to this console's decision.
pub(crate) fn on_decided(
    app: &mut App,
    id: RequestId,
    approve: bool,
    result: Result<Box<ApprovalRequest>, String>,
) -> Effects {
    if let Some(v) = app.approvals_view.as_mut().filter(|v| v.request == Some(id)) {
        v.request = None;
        v.deciding = None;
        v.reason.clear();
    }
    match result {
        Ok(r) => {
            let action = if approve { "approved" } else { "denied" };
            let reason = r.decision_reason.clone().unwrap_or_default();
            let by = r.decided_by.clone().unwrap_or_default();
            let mut e = app.say(format!("You {action} request {}: {}", &r.id.to_string()[..8], r.scope()), false);
            e.journal = app.observe(vec![Observation::Approval(r.event(action, &reason, &by))]);
            if let Some(slot) = app.approvals.iter_mut().find(|x| x.id == r.id) {
                *slot = *r;
            }
            e
        }
        Err(why) => app.say(format!("Not decided: {}", sanitize::line(&why)), true),
    }
}

/// A key while it is open.
pub(crate) fn key(app: &mut App, key: KeyEvent) -> Effects {
    let action = app.keymap.dialog_action(&key);
    let screen_action = app.keymap.action(&key);
    let now = app.now;
    let count = app.approvals.len();
    let Some(v) = app.approvals_view.as_mut() else { return Effects::none() };
    if v.request.is_some() {
        return app.say("The decision is on its way to the database.", false);
    }
    if let Some(approve) = v.deciding {
        return match (action, key.code) {
            (Some(KeyAction::Dismiss), _) => {
                v.deciding = None;
                v.reason.clear();
                Effects::redraw()
            }
            (Some(KeyAction::Accept), _) => {
                let Some(r) = app.approvals.get(v.selected) else { return Effects::none() };
                if let Err(e) = crate::core::workflow::incident::reason_ok(&v.reason, "A reason") {
                    return app.say(e.to_string(), true);
                }
                let (request, reason) = (r.id, v.reason.trim().to_string());
                let id = app.id();
                if let Some(v) = app.approvals_view.as_mut() {
                    v.request = Some(id);
                }
                Effects::with(vec![Command::DecideApproval { id, request, approve, reason }])
            }
            (_, KeyCode::Backspace) => {
                v.reason.pop();
                Effects::redraw()
            }
            (_, KeyCode::Char(c)) if !c.is_control() => {
                if v.reason.chars().count() < 1000 {
                    v.reason.push(c);
                }
                Effects::redraw()
            }
            _ => Effects::none(),
        };
    }
    match (action, screen_action, key.code) {
        (Some(KeyAction::Dismiss), ..) | (_, Some(KeyAction::Approvals), _) => {
            app.approvals_view = None;
            Effects::redraw()
        }
        (_, Some(KeyAction::Up), _) => {
            v.selected = v.selected.saturating_sub(1);
            Effects::redraw()
        }
        (_, Some(KeyAction::Down), _) => {
            v.selected = (v.selected + 1).min(count.saturating_sub(1));
            Effects::redraw()
        }
        (Some(KeyAction::Yes), ..) | (Some(KeyAction::No), ..) => {
            let approve = action == Some(KeyAction::Yes);
            let Some(r) = app.approvals.get(v.selected) else { return app.say("No request to decide.", true) };
            if r.state(now) != RequestState::Pending {
                return app.say("This request is not waiting for a decision.", true);
            }
            if app.my_requests.contains(&r.id) {
                return app.say("This request is yours: another person decides it.", true);
            }
            v.deciding = Some(approve);
            Effects::redraw()
        }
        _ => Effects::none(),
    }
}

/// The footer while it is open.
pub(crate) fn hint(app: &App, k: Keys) -> String {
    match app.approvals_view.as_ref() {
        Some(v) if v.request.is_some() => " deciding …".into(),
        Some(v) if v.deciding.is_some() => format!(
            " type why · {} {} · {} back, nothing decided",
            k.of(KeyAction::Accept),
            if v.deciding == Some(true) { "approves" } else { "denies" },
            k.of(KeyAction::Dismiss)
        ),
        _ => format!(
            " approvals · {} / {} pick · {} approve · {} deny · {} close",
            k.of(KeyAction::Up),
            k.of(KeyAction::Down),
            k.of(KeyAction::Yes),
            k.of(KeyAction::No),
            k.of(KeyAction::Dismiss)
        ),
    }
}

fn request_lines(r: &ApprovalRequest, now: DateTime<Utc>, mine: bool, lines: &mut Vec<Line<'static>>) {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    lines.push(Line::from(Span::styled(format!(" {}", r.scope()), bold)));
    lines.push(Line::from(format!(" Reason: {}", sanitize::line(&r.reason))));
    lines.push(Line::from(format!(
        " Asked by {} (login {}){} at {} UTC, Level {}{}",
        sanitize::line(&r.requested_by),
        sanitize::line(&r.requested_login),
        if mine { ", this console" } else { "" },
        r.requested_at.format("%H:%M:%S"),
        r.level,
        r.incident_id.as_deref().map(|i| format!(", incident {}", sanitize::line(i))).unwrap_or_default()
    )));
    for why in r.required_because() {
        lines.push(Line::from(format!(" Needs a second person: {why}")));
    }
    lines.extend(r.preview_items().into_iter().map(|item| Line::from(format!(" {item}"))));
    lines.push(Line::from(format!(" State: {}", r.state_text(now))));
    if let Some(why) = &r.decision_reason {
        lines.push(Line::from(format!(" Decision: {}", sanitize::line(why))));
    }
}

/// Draws it over the screen.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(v) = &app.approvals_view else { return };
    let k = Keys(&app.keymap);
    let rect = centered(area, area.width.min(110), area.height.saturating_sub(2).min(26));
    frame.render_widget(Clear, rect);
    let title = format!(" Approvals · four eyes · {} closes ", k.of(KeyAction::Dismiss));
    let block = Block::bordered().title(title).border_type(BorderType::Double);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let mut lines: Vec<Line<'static>> = Vec::new();
    if app.approvals.is_empty() {
        lines.push(Line::from(" No approval requests on this database."));
    }
    let waiting = Style::new().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD);
    for (i, r) in app.approvals.iter().enumerate().take(8) {
        let mine = app.my_requests.contains(&r.id);
        let state = r.state_text(app.now);
        let text = format!(
            " {} {} {:<22} {} — {}{}",
            if i == v.selected { "▶" } else { " " },
            &r.id.to_string()[..8],
            state,
            r.brief(),
            sanitize::line(&r.requested_by),
            if mine { " (yours)" } else { "" }
        );
        let style = match r.state(app.now) {
            RequestState::Pending if !mine => waiting,
            _ if i == v.selected => Style::new().add_modifier(Modifier::REVERSED),
            _ => Style::new(),
        };
        lines.push(Line::from(Span::styled(text, style)));
    }
    if let Some(r) = app.approvals.get(v.selected) {
        lines.push(Line::from(""));
        request_lines(r, app.now, app.my_requests.contains(&r.id), &mut lines);
    }
    if let Some(approve) = v.deciding {
        lines.push(Line::from(""));
        lines.push(Line::from(format!(
            " {} — why: {}█",
            if approve { "APPROVE" } else { "DENY" },
            sanitize::line(&v.reason)
        )));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
