//! The frame around the panes and the whole screen: `render` draws either screen (header,
//! the panes where the layout puts them, footer) and the overlays over it. It reads the
//! state and draws; it does no I/O, changes nothing and never reads the clock. Everything
//! from the database passes through `sanitize` before it reaches the screen.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Paragraph, Wrap};

use crate::console::app::{App, Screen};
use crate::console::dialogs;
use crate::console::hints::Keys;
use crate::console::layout::{Areas, IncidentAreas, MIN_HEIGHT, MIN_WIDTH};
use crate::console::panes::{self, Pane};
use crate::console::protocol::ConnState;
use crate::console::widgets::{level_style, tabs};
use crate::core::keys::KeyAction;
use crate::core::replica::{Fallback, ReplicaStatus};
use crate::core::sanitize;

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    let footer_area = match app.screen {
        Screen::Incident => {
            let Some(areas) = IncidentAreas::of(area.width, area.height) else {
                too_small(app, frame, area);
                return;
            };
            header(app, frame, areas.header);
            incident_screen(app, frame, &areas);
            areas.footer
        }
        Screen::Rollback => {
            let Some(areas) = Areas::of(area.width, area.height, app.orders_first()) else {
                too_small(app, frame, area);
                return;
            };
            header(app, frame, areas.header);
            rollback_screen(app, frame, &areas);
            areas.footer
        }
    };
    footer(app, frame, footer_area);
    dialogs::render(app, frame, area);
    dialogs::detail::render(app, frame, area);
    dialogs::blast::render(app, frame, area);
    dialogs::release::render(app, frame, area);
    dialogs::approvals::render(app, frame, area);
    if app.help {
        dialogs::help::render(app, frame, area);
    }
    if app.quit_confirm {
        dialogs::quit::render(app, frame, area);
    }
}

/// Orders, the detail tabs (or the detail beside the dashboard on a wide screen).
fn rollback_screen(app: &App, frame: &mut Frame, areas: &Areas) {
    Pane::Orders.render(app, frame, areas.orders);
    if let Some(t) = areas.tabs {
        tabs(frame, t, &Pane::ORDER[1..], app.detail);
    }
    let detail = match app.detail {
        Pane::Dashboard if areas.dashboard.is_none() => Pane::Dashboard,
        Pane::Postcheck | Pane::Rollback => app.detail,
        _ => Pane::Precheck,
    };
    detail.render(app, frame, areas.detail);
    if let Some(d) = areas.dashboard {
        Pane::Dashboard.render(app, frame, d);
    }
}

/// The four incident panes; on a narrow screen, tabs and the focused pane only.
fn incident_screen(app: &App, frame: &mut Frame, areas: &IncidentAreas) {
    if app.case.is_none() {
        frame.render_widget(Paragraph::new(" No incident journal is open."), areas.checklist);
        return;
    }
    if let Some(t) = areas.tabs {
        tabs(frame, t, &Pane::INCIDENT, app.focus);
        let (pane, area) = match app.focus {
            Pane::Timeline => (Pane::Timeline, areas.timeline),
            Pane::Team => (Pane::Team, areas.team),
            Pane::Messages => (Pane::Messages, areas.messages),
            _ => (Pane::Checklist, areas.checklist),
        };
        pane.render(app, frame, area);
    } else {
        Pane::Checklist.render(app, frame, areas.checklist);
        Pane::Team.render(app, frame, areas.team);
        Pane::Messages.render(app, frame, areas.messages);
        Pane::Timeline.render(app, frame, areas.timeline);
    }
}

/// The incident (level, id, phase and its time box, title) and, below, where things stand.
fn header(app: &App, frame: &mut Frame, area: Rect) {
    let inc = &app.incident;
    let in_phase = app.now - inc.phase_since;
    let minutes = in_phase.num_minutes().max(0);
    // Closed: the phase's clock no longer counts, and the header says so first.
    let closed = app.case.as_ref().and_then(|c| c.state.closed.as_ref());
    let phase = match inc.phase.time_box() {
        _ if let Some(c) = closed => Span::styled(
            format!(" CLOSED {} · {} ", c.at.format("%H:%M"), inc.phase.label()),
            Style::new().fg(Color::Black).bg(Color::Green).add_modifier(Modifier::BOLD),
        ),
        Some(b) if in_phase > b => Span::styled(
            format!(" {} {}m / {}m OVERDUE ", inc.phase.label(), minutes, b.num_minutes()),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Some(b) => Span::raw(format!(" {} {}m / {}m ", inc.phase.label(), minutes, b.num_minutes())),
        None => Span::raw(format!(" {} {}m ", inc.phase.label(), minutes)),
    };
    // The level and the phase come first: a long title may be cut, they may not.
    let line1 = Line::from(vec![
        Span::styled(format!(" L{} {} ", inc.level.number(), inc.level.label()), level_style(inc.level)),
        Span::styled(format!(" {} ", sanitize::line(&inc.id)), Style::new().add_modifier(Modifier::BOLD)),
        phase,
        Span::raw(format!("│ {}", sanitize::line(&inc.title))),
    ]);
    frame.render_widget(Paragraph::new(Text::from(vec![line1, status_line(app, area.width)])), area);
}

/// The database, maintenance mode, the next update and the batch selection.
fn status_line(app: &App, width: u16) -> Line<'static> {
    let db = match &app.conn {
        ConnState::Up { latency_ms } => Span::styled(
            format!(
                " DB {} · {}{} ms ",
                sanitize::line(&app.target),
                if *latency_ms <= 1 { "<" } else { "≤" },
                latency_ms
            ),
            Style::new().fg(Color::Green),
        ),
        ConnState::Connecting { detail } => Span::styled(
            format!(" DB {}: {} … ", sanitize::line(&app.target), sanitize::line(detail)),
            Style::new().fg(Color::Yellow),
        ),
        // Since when, to the second where there is room; at 80 columns the minute, so
        // that maintenance mode and an overdue update still fit beside it.
        ConnState::Down { retry_in, since, .. } if width >= 120 => Span::styled(
            format!(
                " DB UNREACHABLE since {} · {} ",
                since.format("%H:%M:%S"),
                if *retry_in > 0 { format!("retry {retry_in}s") } else { "retrying".into() },
            ),
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        ConnState::Down { since, .. } => Span::styled(
            format!(" DB UNREACHABLE since {} ", since.format("%H:%M")),
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
        ),
    };
    // Which database and why, after the short facts: the line may be cut there.
    let db_detail = match &app.conn {
        ConnState::Down { error, .. } => Some(Span::styled(
            format!(" {}: {} ", sanitize::line(&app.target), sanitize::line(error)),
            Style::new().fg(Color::Red),
        )),
        _ => None,
    };
    let verified = app
        .case
        .as_ref()
        .and_then(|c| c.state.maintenance_on())
        .map_or("", |p| if p.verified { " ✓" } else { " UNVERIFIED" });
    let maintenance = match &app.maintenance {
        Some(m) if m.maintenance_mode => Span::styled(
            format!(
                " MAINTENANCE ON since {}{verified} ",
                m.maintenance_since.map_or("?".into(), |t| t.format("%H:%M").to_string())
            ),
            Style::new().fg(Color::Black).bg(Color::Magenta).add_modifier(Modifier::BOLD),
        ),
        // One symbol's (or a few): named, so nobody reads the book as stopped or trading.
        Some(m) if !m.symbols.is_empty() => {
            let journal = app.case.as_ref().map(|c| c.state.symbols_stopped());
            let mark = match journal {
                Some(j) if m.symbols.iter().all(|s| j.iter().any(|(js, p)| js == s && p.verified)) => " ✓",
                Some(_) => " UNVERIFIED",
                None => "",
            };
            Span::styled(
                format!(" MAINTENANCE {} only{mark} ", sanitize::line(&m.symbols.join(","))),
                Style::new().fg(Color::Black).bg(Color::Magenta).add_modifier(Modifier::BOLD),
            )
        }
        Some(_) => Span::raw(" maintenance off "),
        None => Span::raw(" maintenance ? "),
    };
    // Every rollback is refused while it is open: said before anything else.
    let breaker = app.maintenance.as_ref().and_then(|m| m.breaker.as_ref()).map(|b| {
        Span::styled(
            format!(" BREAKER OPEN since {}: {} ", b.since.format("%H:%M"), sanitize::line(&b.reason)),
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
        )
    });
    // Someone is waiting for a second person: said next to the breaker.
    let waiting = dialogs::approvals::waiting_for_me(app);
    let approvals = (waiting > 0).then(|| {
        Span::styled(
            format!(
                " {waiting} APPROVAL{} WAITING ({}) ",
                if waiting == 1 { "" } else { "S" },
                Keys(&app.keymap).of(KeyAction::Approvals)
            ),
            Style::new().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD),
        )
    });
    let selection = if app.orders.all_matching {
        Span::styled(" batch: all matching the filter ", Style::new().fg(Color::Cyan))
    } else if !app.orders.selected.is_empty() {
        Span::styled(format!(" batch: {} selected ", app.orders.selected.len()), Style::new().fg(Color::Cyan))
    } else {
        Span::raw("")
    };
    let due = app.case.as_ref().and_then(|c| c.next_update_due(app.now)).map(|d| {
        if app.now > d {
            Span::styled(
                format!(" UPDATE OVERDUE {} ", crate::core::format::short_duration(app.now - d)),
                Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
            )
        } else {
            Span::raw(format!(" next update {} ", d.format("%H:%M")))
        }
    });
    // The standby: its lag at the end beside the database; reads sent back to the primary
    // early, since the lists then cost the primary what the standby was there to take.
    let (standby_early, standby_late, standby_detail) = match &app.replica {
        None => (None, None, None),
        Some(r @ ReplicaStatus::InUse { paused, .. }) => {
            let colour = if *paused { Color::Yellow } else { Color::Green };
            (None, Some(Span::styled(format!(" {} ", r.header_text()), Style::new().fg(colour))), None)
        }
        Some(r @ ReplicaStatus::Checking) => (None, Some(Span::raw(format!(" {} ", r.header_text()))), None),
        Some(r @ ReplicaStatus::Fallback(f)) => {
            let detail = match f {
                Fallback::Unreachable(e) => {
                    Some(Span::styled(format!(" standby: {} ", sanitize::line(e)), Style::new().fg(Color::Yellow)))
                }
                _ => None,
            };
            let span = Span::styled(
                format!(" {} ", r.header_text()),
                Style::new().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD),
            );
            (Some(span), None, detail)
        }
    };
    // Maintenance, the update timer and the selection are short and come first; a
    // database error is long, but an unreachable database is the first thing to know.
    let db_down = matches!(app.conn, ConnState::Down { .. });
    let (lead, tail) = if db_down { (Some(db), None) } else { (None, Some(db)) };
    let mut spans: Vec<Span> = lead.into_iter().flat_map(|d| [d, Span::raw("│")]).collect();
    spans.extend(breaker.into_iter().flat_map(|b| [b, Span::raw("│")]));
    spans.extend(approvals.into_iter().flat_map(|a| [a, Span::raw("│")]));
    spans.push(maintenance);
    spans.extend(standby_early.into_iter().flat_map(|s| [Span::raw("│"), s]));
    spans.extend(due.map(|d| vec![Span::raw("│"), d]).unwrap_or_default());
    spans.push(selection);
    spans.extend(tail.into_iter().flat_map(|d| [Span::raw("│"), d]));
    spans.extend(standby_late.into_iter().flat_map(|s| [Span::raw("│"), s]));
    spans.extend(db_detail.into_iter().flat_map(|d| [Span::raw("│"), d]));
    spans.extend(standby_detail.into_iter().flat_map(|d| [Span::raw("│"), d]));
    Line::from(spans)
}

/// The footer: the answer to the last key, else the open dialog's or input's keys, else
/// the focused pane's keys that fit, with help and quit always.
fn footer(app: &App, frame: &mut Frame, area: Rect) {
    let k = Keys(&app.keymap);
    let line = if let Some(m) = &app.message {
        let style = if m.error {
            Style::new().fg(Color::White).bg(Color::Red)
        } else {
            Style::new().fg(Color::Black).bg(Color::Cyan)
        };
        Line::from(Span::styled(format!(" {} ", sanitize::line(&m.text)), style))
    } else if app.approvals_view.is_some() {
        Line::from(dialogs::approvals::hint(app, k))
    } else if app.release.is_some() {
        Line::from(dialogs::release::hint(app, k))
    } else if app.blast.is_some() {
        Line::from(format!(
            " blast radius · {} / {} pick a suspicion · {} filter and select its orders · {} close",
            k.of(KeyAction::Up),
            k.of(KeyAction::Down),
            k.of(KeyAction::Accept),
            k.of(KeyAction::Dismiss)
        ))
    } else if app.details.is_some() {
        Line::from(format!(
            " details · {} copies · {} / {} scroll · any other key closes",
            k.of(KeyAction::Copy),
            k.of(KeyAction::Down),
            k.of(KeyAction::Up)
        ))
    } else if let Some(d) = app.case.as_ref().and_then(|c| c.dialog.as_ref()) {
        Line::from(dialogs::hint(d, k))
    } else if app.orders.choosing_sort {
        Line::from(format!(
            " sort the orders · a digit picks the column, its digit again reverses it · {} keeps the order",
            k.of(KeyAction::Dismiss)
        ))
    } else if app.orders.editing.is_some() {
        Line::from(format!(
            " typing the filter · {} apply · {} cancel · e.g. GBPUSD executed from:13:02 to:13:06",
            k.of(KeyAction::Accept),
            k.of(KeyAction::Dismiss)
        ))
    } else if let Some(text) = app.flow.as_ref().and_then(|f| panes::rollback::hint(f, k)) {
        Line::from(text)
    } else {
        let keys = app.focus.hints();
        // Help and quit always show; then as many of the pane's keys as fit whole, then the
        // other screen and the next pane. Every key is in the help too.
        let always = [(KeyAction::Help, "help"), (KeyAction::Quit, "quit")];
        let other_screen = if app.screen == Screen::Incident { "rollback" } else { "incident" };
        let extra = [(KeyAction::Screen, other_screen), (KeyAction::NextPane, "pane")];
        let item = |(a, label): (KeyAction, &str)| (format!(" {} ", k.of(a)), format!(" {label} "));
        let width = |(k, l): &(String, String)| k.chars().count() + l.chars().count();
        let mut room = usize::from(area.width).saturating_sub(always.iter().map(|&a| width(&item(a))).sum());
        let mut shown = Vec::new();
        for (i, a) in keys.iter().copied().chain(extra).enumerate() {
            let w = width(&item(a));
            if w <= room {
                room -= w;
                shown.push(a);
            } else if i < keys.len() {
                // The pane's keys stay in their order: none after one that did not fit.
                room = 0;
            }
        }
        let mut spans = Vec::new();
        for a in shown.into_iter().chain(always) {
            let (k, l) = item(a);
            spans.push(Span::styled(k, Style::new().fg(Color::Black).bg(Color::Gray)));
            spans.push(Span::raw(l));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn too_small(app: &App, frame: &mut Frame, area: Rect) {
    let k = Keys(&app.keymap);
    let mut text = vec![
        Line::from("Terminal too small").bold(),
        Line::from(format!(
            "incident-console needs {MIN_WIDTH}×{MIN_HEIGHT}; this one is {}×{}.",
            area.width, area.height
        )),
        Line::from(format!("Keys do nothing until it is larger ({} quits).", k.of(KeyAction::Quit))),
    ];
    if app.rollback_running() {
        text.push(Line::from("A rollback is running; it goes on.").fg(Color::Yellow));
    }
    if app.quit_confirm {
        text.push(
            Line::from(format!("Quit while a rollback runs? {} quits, any other key stays.", k.of(KeyAction::Yes)))
                .fg(Color::Red)
                .bold(),
        );
    }
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}
