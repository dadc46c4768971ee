//! Drawing the console. `render` reads the state and draws; it does no I/O, changes
//! nothing and never reads the clock. Everything from the database passes through
//! `sanitize` before it reaches the screen.

pub mod dashboard;
pub mod detail;
pub mod incident;
pub mod layout;
pub mod orders;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph, Wrap};

use crate::console::app::App;
use crate::console::protocol::ConnState;
use crate::core::keys::KeyAction;
use crate::core::sanitize;
use crate::core::workflow::Level;
use layout::{Areas, MIN_HEIGHT, MIN_WIDTH, Pane};

/// Draws the whole screen.
pub fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if app.screen == crate::console::app::Screen::Incident {
        let Some(areas) = layout::IncidentAreas::of(area.width, area.height) else {
            too_small(app, frame, area);
            return;
        };
        header(app, frame, areas.header);
        incident::render(app, frame, &areas);
        footer(app, frame, areas.footer);
        overlays(app, frame, area);
        return;
    }
    let Some(areas) = Areas::of(area.width, area.height) else {
        too_small(app, frame, area);
        return;
    };
    header(app, frame, areas.header);
    orders::render(app, frame, areas.orders);
    if let Some(tabs) = areas.tabs {
        detail_tabs(app, frame, tabs);
    }
    match app.detail {
        Pane::Dashboard if areas.dashboard.is_none() => dashboard::render(app, frame, areas.detail),
        Pane::Postcheck => detail::postcheck(app, frame, areas.detail),
        Pane::Rollback => detail::rollback(app, frame, areas.detail),
        _ => detail::precheck(app, frame, areas.detail),
    }
    if let Some(d) = areas.dashboard {
        dashboard::render(app, frame, d);
    }
    footer(app, frame, areas.footer);
    overlays(app, frame, area);
}

fn overlays(app: &App, frame: &mut Frame, area: Rect) {
    incident::dialog(app, frame, area);
    if app.help {
        help(app, frame, area);
    }
    if app.quit_confirm {
        quit_confirm(frame, area);
    }
}

/// A pane's frame: bold and coloured when focused, with its title.
pub fn pane_block(app: &App, pane: Pane, title: String) -> Block<'static> {
    let focused = app.focus == pane;
    let style = if focused {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    let marker = if focused { "▶ " } else { "" };
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(style)
        .title(Span::styled(format!(" {marker}{title} "), style))
}

/// The level's colour; the label carries the meaning without it.
pub fn level_style(level: Level) -> Style {
    match level {
        Level::Minor => Style::new().fg(Color::Black).bg(Color::Green),
        Level::Moderate => Style::new().fg(Color::Black).bg(Color::Yellow),
        Level::Critical => Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

/// "3m 05s" / "1h 02m".
pub fn duration_text(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if s >= 1 {
        format!("{}.{}s", s, (d.num_milliseconds().max(0) % 1000) / 100)
    } else {
        format!("{} ms", d.num_milliseconds().max(0))
    }
}

fn header(app: &App, frame: &mut Frame, area: Rect) {
    let inc = &app.incident;
    let in_phase = app.now - inc.phase_since;
    let minutes = in_phase.num_minutes().max(0);
    let phase = match inc.phase.time_box() {
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
        ConnState::Down { retry_in, .. } => Span::styled(
            format!(
                " DB UNREACHABLE · {} ",
                if *retry_in > 0 { format!("retry {retry_in}s") } else { "retrying".into() },
            ),
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
        Some(_) => Span::raw(" maintenance off "),
        None => Span::raw(" maintenance ? "),
    };
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
    // Maintenance, the update timer and the selection are short and come first; a
    // database error is long, but an unreachable database is the first thing to know.
    let db_down = matches!(app.conn, ConnState::Down { .. });
    let (lead, tail) = if db_down { (Some(db), None) } else { (None, Some(db)) };
    let mut spans: Vec<Span> = lead.into_iter().flat_map(|d| [d, Span::raw("│")]).collect();
    spans.push(maintenance);
    spans.extend(due.map(|d| vec![Span::raw("│"), d]).unwrap_or_default());
    spans.push(selection);
    spans.extend(tail.into_iter().flat_map(|d| [Span::raw("│"), d]));
    spans.extend(db_detail.into_iter().flat_map(|d| [Span::raw("│"), d]));
    let line2 = Line::from(spans);
    frame.render_widget(Paragraph::new(Text::from(vec![line1, line2])), area);
}

fn detail_tabs(app: &App, frame: &mut Frame, area: Rect) {
    let tabs = [Pane::Precheck, Pane::Rollback, Pane::Postcheck, Pane::Dashboard];
    let slots = Layout::horizontal([Constraint::Ratio(1, 4); 4]).split(area);
    for (pane, slot) in tabs.iter().zip(slots.iter()) {
        let shown = app.detail == *pane;
        let style = if shown {
            Style::new().fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Gray)
        };
        frame.render_widget(
            Paragraph::new(Span::styled(format!(" {} ", pane.title()), style)).alignment(Alignment::Center),
            *slot,
        );
    }
}

fn key(app: &App, a: KeyAction) -> String {
    app.keymap.keys_for(a)
}

fn footer(app: &App, frame: &mut Frame, area: Rect) {
    let line = if let Some(m) = &app.message {
        let style = if m.error {
            Style::new().fg(Color::White).bg(Color::Red)
        } else {
            Style::new().fg(Color::Black).bg(Color::Cyan)
        };
        Line::from(Span::styled(format!(" {} ", sanitize::line(&m.text)), style))
    } else if let Some(d) = app.case.as_ref().and_then(|c| c.dialog.as_ref()) {
        Line::from(incident::dialog_hint(d))
    } else if app.orders.editing.is_some() {
        Line::from(" typing the filter · enter apply · esc cancel · e.g. GBPUSD executed from:13:02 to:13:06")
    } else if let Some(text) = app.flow.as_ref().and_then(flow_hint) {
        Line::from(text)
    } else {
        let keys: Vec<(KeyAction, &str)> = match app.focus {
            p if p.on_incident_screen() => incident::footer_keys(p),
            Pane::Orders => vec![
                (KeyAction::Filter, "filter"),
                (KeyAction::Precheck, "pre-check"),
                (KeyAction::Rollback, "roll back"),
                (KeyAction::RollbackGroup, "group"),
                (KeyAction::ToggleSelect, "select"),
                (KeyAction::SelectAllMatching, "all"),
                (KeyAction::RollbackBatch, "batch"),
            ],
            Pane::Rollback => vec![(KeyAction::Rollback, "roll back"), (KeyAction::Cancel, "cancel/close")],
            _ => vec![(KeyAction::Refresh, "refresh"), (KeyAction::Cancel, "cancel")],
        };
        // Help and quit always show; then as many of the pane's keys as fit whole, then the
        // other screen and the next pane. Every key is in the help too.
        let always = [(KeyAction::Help, "help"), (KeyAction::Quit, "quit")];
        let other_screen = if app.screen == crate::console::app::Screen::Incident { "rollback" } else { "incident" };
        let extra = [(KeyAction::Screen, other_screen), (KeyAction::NextPane, "pane")];
        let item = |(a, label): (KeyAction, &str)| (format!(" {} ", first_key(&key(app, a))), format!(" {label} "));
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

/// `text` in `width` columns: cut with a trailing '…' when longer, so a cut amount never
/// reads as a different amount.
pub fn fit(text: &str, width: u16) -> String {
    let width = usize::from(width);
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The shortest of an action's keys: "q" rather than "ctrl-c".
fn first_key(keys: &str) -> &str {
    keys.split(' ').min_by_key(|k| k.chars().count()).unwrap_or(keys)
}

fn flow_hint(flow: &crate::console::app::flow::Flow) -> Option<&'static str> {
    use crate::console::app::flow::Stage;
    match flow.stage {
        Stage::Reason => Some(" typing the reason · enter continue · esc abandon (nothing is changed)"),
        Stage::Confirm if flow.confirm_word.is_some() => Some(" type the word shown · enter roll back · esc abandon"),
        Stage::Confirm => Some(" enter roll back · esc abandon (nothing is changed)"),
        Stage::Running { .. } | Stage::Prechecking { .. } | Stage::Previewing { .. } => {
            Some(" c/esc cancel (on the server too) · tab pane · ? help")
        }
        _ => None,
    }
}

/// A rectangle of at most `w`×`h` in the middle of `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(area.x + (area.width - w) / 2, area.y + (area.height - h) / 2, w, h)
}

fn help(app: &App, frame: &mut Frame, area: Rect) {
    let entry = |a: KeyAction| {
        Line::from(vec![
            Span::styled(format!("{:>11} ", key(app, a)), Style::new().fg(Color::Cyan)),
            Span::raw(a.describe()),
        ])
    };
    // Two columns, so the whole list fits on 80x24.
    let half = KeyAction::ALL.len().div_ceil(2);
    let left: Vec<Line> = KeyAction::ALL[..half].iter().map(|a| entry(*a)).collect();
    let right: Vec<Line> = KeyAction::ALL[half..].iter().map(|a| entry(*a)).collect();
    let tips = vec![
        Line::from("Roll back: p, then r / t / b, a reason, confirm; a post-check proves it."),
        Line::from("Typing: enter continues, esc abandons. Keys: `incident-console config path`."),
    ];
    let rows = left.len() as u16;
    let width = area.width.min(118).saturating_sub(2).max(1) as usize;
    let tip_rows: usize = tips.iter().map(|l| l.width().max(1).div_ceil(width)).sum();
    let rect = centered(area, 118, rows + tip_rows as u16 + 3);
    frame.render_widget(Clear, rect);
    let block = Block::bordered().title(" Help · any key closes ").border_type(BorderType::Double);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let [lists, _, tip_area] =
        Layout::vertical([Constraint::Length(rows), Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(lists);
    frame.render_widget(Paragraph::new(left), l);
    frame.render_widget(Paragraph::new(right), r);
    frame.render_widget(Paragraph::new(tips).wrap(Wrap { trim: false }), tip_area);
}

fn quit_confirm(frame: &mut Frame, area: Rect) {
    let rect = centered(area, 78, 5);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from("A rollback is running. Quit anyway?").bold(),
            Line::from("It is cancelled on the server; a batch stops after the orders in flight."),
            Line::from("y quit · any other key stays"),
        ])
        .block(Block::bordered().border_style(Style::new().fg(Color::Red)).title(" Quit? ")),
        rect,
    );
}

fn too_small(app: &App, frame: &mut Frame, area: Rect) {
    let mut text = vec![
        Line::from("Terminal too small").bold(),
        Line::from(format!(
            "incident-console needs {MIN_WIDTH}×{MIN_HEIGHT}; this one is {}×{}.",
            area.width, area.height
        )),
        Line::from("Keys do nothing until it is larger (q quits)."),
    ];
    if app.rollback_running() {
        text.push(Line::from("A rollback is running; it goes on.").fg(Color::Yellow));
    }
    if app.quit_confirm {
        text.push(Line::from("Quit while a rollback runs? y quits, any other key stays.").fg(Color::Red).bold());
    }
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}
