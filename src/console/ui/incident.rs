//! The incident screen: the phase with its time box and checklist, the timeline, the team,
//! the messages; and the dialogs and the message editor, drawn over either screen.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

use crate::console::app::App;
use crate::console::app::incident::{Dialog, IncidentPanel};
use crate::console::ui::layout::{IncidentAreas, Pane};
use crate::console::ui::{centered, fit, pane_block};
use crate::core::comms::Audience;
use crate::core::contacts::ESCALATIONS;
use crate::core::journal::Event;
use crate::core::sanitize;
use crate::core::workflow::classify::{Answer, QUESTIONS, propose};
use crate::core::workflow::incident::{ItemState, Role};
use crate::core::workflow::{Level, Phase};

/// Draws the incident screen's body (the header and footer are the shared ones).
pub fn render(app: &App, frame: &mut Frame, areas: &IncidentAreas) {
    let Some(case) = &app.case else {
        frame.render_widget(Paragraph::new(" No incident journal is open."), areas.checklist);
        return;
    };
    if let Some(tabs) = areas.tabs {
        render_tabs(app, frame, tabs);
        match app.focus {
            Pane::Timeline => timeline(app, case, frame, areas.timeline),
            Pane::Team => team(app, case, frame, areas.team),
            Pane::Messages => messages(app, case, frame, areas.messages),
            _ => checklist(app, case, frame, areas.checklist),
        }
    } else {
        checklist(app, case, frame, areas.checklist);
        team(app, case, frame, areas.team);
        messages(app, case, frame, areas.messages);
        timeline(app, case, frame, areas.timeline);
    }
}

fn render_tabs(app: &App, frame: &mut Frame, area: Rect) {
    let slots = Layout::horizontal([Constraint::Ratio(1, 4); 4]).split(area);
    for (pane, slot) in Pane::INCIDENT.iter().zip(slots.iter()) {
        let style = if app.focus == *pane {
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

/// At most `max` characters, the last one an ellipsis when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn hm(t: DateTime<Utc>) -> String {
    t.format("%H:%M").to_string()
}

/// Minutes only: timers that tick once a minute should not show seconds.
use crate::core::format::short_duration as short;

/// "next update 08:45 UTC (in 3m 10s)" or, overdue, in red.
pub fn due_span(label: &str, due: DateTime<Utc>, now: DateTime<Utc>) -> Span<'static> {
    if now > due {
        Span::styled(
            format!(" {label} OVERDUE {} ", short(now - due)),
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
        )
    } else {
        Span::raw(format!(" {label} {} (in {}) ", hm(due), short(due - now)))
    }
}

fn phase_strip(case: &IncidentPanel) -> Line<'static> {
    let mut spans = vec![Span::raw(" ")];
    for (n, p) in Phase::ALL.iter().enumerate() {
        if n > 0 {
            spans.push(Span::styled(" › ", Style::new().fg(Color::DarkGray)));
        }
        let style = if *p == case.state.phase {
            Style::new().fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else if *p < case.state.phase {
            Style::new().fg(Color::Green)
        } else {
            Style::new().fg(Color::DarkGray)
        };
        let mark = if *p < case.state.phase { "✓ " } else { "" };
        spans.push(Span::styled(format!("{mark}{}", p.label()), style));
    }
    Line::from(spans)
}

fn checklist(app: &App, case: &IncidentPanel, frame: &mut Frame, area: Rect) {
    let i = &case.state;
    let title = format!("Checklist · {} · Level {}", i.phase.label(), i.level.number());
    let block = pane_block(app, Pane::Checklist, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let now = app.now;
    let in_phase = now - i.phase_started();
    let time_box = match i.phase.time_box() {
        Some(b) if in_phase > b => Span::styled(
            format!(" OVERDUE by {} ({} box) ", short(in_phase - b), short(b)),
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Some(b) => Span::styled(
            format!(" {} left of {} ", short(b - in_phase), short(b)),
            Style::new().fg(if b - in_phase < chrono::Duration::minutes(5) { Color::Yellow } else { Color::Green }),
        ),
        None => Span::raw(format!(" {} in this phase ", short(in_phase))),
    };
    let mut cadence = vec![time_box, Span::raw("│")];
    match case.next_update_due(now) {
        Some(d) => cadence.push(due_span("update", d, now)),
        None => cadence.push(Span::raw(" updates on change ")),
    }
    if i.last_message("customer").is_none()
        && let Some(d) = case.customer_notice_due(now)
    {
        cadence.push(Span::raw("│"));
        cadence.push(due_span("customer notice", d, now));
    }
    let mut lines = vec![phase_strip(case), Line::from(cadence)];
    let header_rows = lines.len();

    let rows = case.checklist_rows();
    let mut cursor_line = 0;
    let mut earlier_shown = false;
    for (n, it) in rows.iter().enumerate() {
        if it.phase < i.phase && !earlier_shown {
            earlier_shown = true;
            lines.push(Line::from(Span::styled(" still open from earlier phases:", Style::new().fg(Color::Yellow))));
        }
        let selected = n == case.checklist_cursor && app.focus == Pane::Checklist;
        if n == case.checklist_cursor {
            cursor_line = lines.len();
        }
        let state = i.item_state(&it.id);
        let (mark, mark_style) = match state {
            ItemState::Open => ("[ ]", Style::new().fg(Color::Yellow)),
            ItemState::Done { .. } => ("[x]", Style::new().fg(Color::Green)),
            ItemState::Skipped { .. } => ("[-]", Style::new().fg(Color::DarkGray)),
        };
        let meta = match state {
            ItemState::Done { by, at, auto: true } => {
                format!(" ✓ observed {} ({})", at.format("%H:%M"), sanitize::line(by))
            }
            ItemState::Done { by, at, .. } => format!(" ✓ {} {}", sanitize::line(by), at.format("%H:%M")),
            ItemState::Skipped { reason, .. } => format!(" skipped: {}", sanitize::line(reason)),
            ItemState::Open => {
                let role = i.item_roles.get(&it.id).map(|r| format!(" → {}", r.label())).unwrap_or_default();
                let seen = if it.auto.is_some_and(|a| case.observed(a)) { " (observed: d confirms)" } else { "" };
                format!("{role}{seen}")
            }
        };
        let text_style = if matches!(state, ItemState::Open) { Style::new() } else { Style::new().fg(Color::Gray) };
        // Who, when and why matter as much as the item: the item's text gives way.
        let width = inner.width as usize;
        let meta = clip(&meta, width / 2);
        let room = width.saturating_sub(5 + meta.chars().count());
        let line = Line::from(vec![
            Span::raw(if selected { "▶" } else { " " }),
            Span::styled(mark, mark_style),
            Span::styled(format!(" {}", clip(&sanitize::line(&it.text), room)), text_style),
            Span::styled(meta, Style::new().fg(Color::Cyan)),
        ]);
        lines.push(if selected { line.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { line });
    }
    if rows.is_empty() {
        lines.push(Line::from(" nothing on the checklist for this phase and level"));
    }
    let height = inner.height as usize;
    let offset = if cursor_line >= height { cursor_line + 1 - height } else { 0 };
    // The phase and the timers stay on top; the items scroll under them.
    let [top, rest] = Layout::vertical([Constraint::Length(header_rows as u16), Constraint::Min(0)]).areas(inner);
    let (head, items) = lines.split_at(header_rows);
    frame.render_widget(Paragraph::new(head.to_vec()), top);
    let items_offset = offset.min(items.len().saturating_sub(1));
    frame.render_widget(Paragraph::new(items.to_vec()).scroll((items_offset as u16, 0)), rest);
}

fn team(app: &App, case: &IncidentPanel, frame: &mut Frame, area: Rect) {
    let block = pane_block(app, Pane::Team, "Team · escalation".into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = Vec::new();
    let contact_parts = |role_key: &str, person: Option<&str>| -> Vec<String> {
        let c = case
            .contacts
            .iter()
            .find(|c| c.role == role_key && person.is_none_or(|p| p == c.name))
            .or_else(|| case.contacts.iter().find(|c| person.is_some_and(|p| p == c.name)));
        match c {
            Some(c) => {
                let mut parts = Vec::new();
                if person.is_none() {
                    parts.push(format!("on call: {}", sanitize::line(&c.name)));
                }
                parts.extend(c.phone.as_deref().map(|p| sanitize::line(p).into_owned()));
                parts.extend(c.email.as_deref().map(|e| sanitize::line(e).into_owned()));
                parts
            }
            None => Vec::new(),
        }
    };
    for (n, role) in Role::ALL.iter().enumerate() {
        let selected = app.focus == Pane::Team && case.team_cursor == n;
        let held = case.state.roles.get(role);
        let person = held.map(|a| a.person.as_str());
        let name = match person {
            Some(p) => Span::styled(format!("{:<16}", sanitize::line(p)), Style::new().add_modifier(Modifier::BOLD)),
            None => Span::styled(format!("{:<16}", "unassigned"), Style::new().fg(Color::Yellow)),
        };
        let room = usize::from(inner.width).saturating_sub(1 + 20 + name.content.chars().count() + 1);
        let contact = fit_parts(&contact_parts(role.key(), person), room);
        let line = Line::from(vec![
            Span::raw(if selected { "▶" } else { " " }),
            Span::raw(format!("{:<20}", role.label())),
            name,
            Span::styled(format!(" {contact}"), Style::new().fg(Color::Gray)),
        ]);
        lines.push(if selected { line.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { line });
    }
    for (n, (key, label)) in ESCALATIONS.iter().enumerate() {
        let selected = app.focus == Pane::Team && case.team_cursor == Role::ALL.len() + n;
        let room = usize::from(inner.width).saturating_sub(1 + 20);
        let text = match case.contact(key) {
            Some(c) => {
                let mut parts = vec![sanitize::line(&c.name).into_owned()];
                parts.extend(c.phone.as_deref().map(|p| sanitize::line(p).into_owned()));
                parts.extend(c.email.as_deref().map(|e| sanitize::line(e).into_owned()));
                fit_parts(&parts, room)
            }
            None => fit("not configured ([[contact]] in the config file)", u16::try_from(room).unwrap_or(u16::MAX)),
        };
        let line = Line::from(vec![
            Span::raw(if selected { "▶" } else { " " }),
            Span::styled(format!("{label:<20}"), Style::new().fg(Color::Magenta)),
            Span::styled(text, Style::new().fg(Color::Gray)),
        ]);
        lines.push(if selected { line.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { line });
    }
    if !case.state.handovers.is_empty() {
        lines.push(Line::from(Span::styled(" hand-overs:", Style::new().fg(Color::Gray))));
        for (role, from, to, at, _) in case.state.handovers.iter().rev() {
            lines.push(Line::from(Span::styled(
                format!("  {} {}: {} → {}", at.format("%H:%M"), role.label(), sanitize::line(from), sanitize::line(to)),
                Style::new().fg(Color::Gray),
            )));
        }
    }
    let height = inner.height as usize;
    let offset = if case.team_cursor >= height { case.team_cursor + 1 - height } else { 0 };
    frame.render_widget(Paragraph::new(lines).scroll((offset as u16, 0)), inner);
}

/// A contact's parts (name, phone, e-mail) joined by " · " within `room` columns. A phone
/// number cut short is another number, so only the e-mail is ever cut (with '…'); a part
/// that does not fit whole is left out, and '…' says something was.
fn fit_parts(parts: &[String], room: usize) -> String {
    let mut shown = String::new();
    for part in parts {
        let sep = if shown.is_empty() { "" } else { " · " };
        let whole = format!("{shown}{sep}{part}");
        if whole.chars().count() <= room {
            shown = whole;
            continue;
        }
        let left = room.saturating_sub(shown.chars().count() + sep.chars().count());
        if part.contains('@') && left >= 8 {
            shown = format!("{shown}{sep}{}", fit(part, u16::try_from(left).unwrap_or(u16::MAX)));
        } else if shown.chars().count() + 2 <= room {
            shown.push_str(" …");
        } else {
            shown = fit(&shown, u16::try_from(room).unwrap_or(u16::MAX));
        }
        break;
    }
    shown
}

fn timeline(app: &App, case: &IncidentPanel, frame: &mut Frame, area: Rect) {
    // Rows inside the frame: the pane's height less its two borders.
    let (shown, matching) = case.timeline_page(case.timeline_offset, area.height.saturating_sub(2) as usize);
    let copy = match &case.db_copy {
        Some(Ok(_)) => "copied to db",
        Some(Err(_)) => "disk only",
        None => "disk",
    };
    let filter = if case.timeline_filter.is_empty() {
        String::new()
    } else {
        format!(" · filter \"{}\"", sanitize::line(&case.timeline_filter))
    };
    let title = format!("Timeline · {}/{} · {copy}{filter}", matching, case.entries.len());
    let block = pane_block(app, Pane::Timeline, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let wide = inner.width >= 90;
    let lines: Vec<Line> = shown
        .iter()
        .map(|(e, text)| {
            let at = if wide { e.at.format("%Y-%m-%d %H:%M:%S") } else { e.at.format("%m-%d %H:%M:%S") };
            let style = match e.event {
                Event::LevelChanged(_) | Event::PhaseChanged(_) => {
                    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
                }
                Event::Rollback(_) | Event::Maintenance(_) | Event::MaintenanceSeen(_) => {
                    Style::new().fg(Color::Magenta)
                }
                Event::Note(_) => Style::new().fg(Color::Yellow),
                _ => Style::new(),
            };
            let at = format!(" {at} ");
            // One row per entry: a text too long ends in a visible '…' (entries carry amounts).
            let room = usize::from(inner.width).saturating_sub(at.chars().count() + 9);
            Line::from(vec![
                Span::styled(at, Style::new().fg(Color::Gray)),
                Span::styled(format!("{:<8.8} ", sanitize::line(&e.operator)), Style::new().fg(Color::DarkGray)),
                Span::styled(fit(&sanitize::line(text), u16::try_from(room).unwrap_or(u16::MAX)), style),
            ])
        })
        .collect();
    if lines.is_empty() {
        frame.render_widget(Paragraph::new(" nothing matches the filter (/ changes it)"), inner);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

fn messages(app: &App, case: &IncidentPanel, frame: &mut Frame, area: Rect) {
    let block = pane_block(app, Pane::Messages, "Messages · fill, edit, copy".into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let list_rows = (case.messages.len() as u16).min(inner.height.saturating_sub(3));
    let [list, rule, preview] =
        Layout::vertical([Constraint::Length(list_rows), Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let mut lines = Vec::new();
    for (n, slot) in case.messages.iter().enumerate() {
        let selected = n == case.message_cursor;
        let (audience, title) = match &slot.rendered {
            Ok(r) => (if r.audience == Audience::Customer { "customer" } else { "internal" }, r.title.clone()),
            Err(_) => match case.templates.info(&slot.name) {
                Ok(t) => (if t.audience == Audience::Customer { "customer" } else { "internal" }, t.title.clone()),
                Err(_) => ("?", slot.name.clone()),
            },
        };
        let unfilled = slot.unfilled();
        let status = match (&slot.rendered, unfilled.is_empty()) {
            (Err(e), _) if e.contains("audit") => {
                Span::styled("needs a ledger audit first", Style::new().fg(Color::Yellow))
            }
            (Err(_), _) => Span::styled("cannot be filled", Style::new().fg(Color::Red)),
            (Ok(_), false) => Span::styled(format!("needs {}", unfilled.join(", ")), Style::new().fg(Color::Yellow)),
            (Ok(_), true) => Span::styled("ready", Style::new().fg(Color::Green)),
        };
        let copied = match &slot.copied {
            Some((at, _)) => format!(" · copied {}", at.format("%H:%M")),
            None => String::new(),
        };
        let edited = if slot.draft.is_some() { " · edited" } else { "" };
        let line = Line::from(vec![
            Span::raw(if selected && app.focus == Pane::Messages { "▶" } else { " " }),
            Span::raw(format!("{:<22.22} ", sanitize::line(&title))),
            Span::styled(format!("{audience:<9}"), Style::new().fg(Color::Gray)),
            status,
            Span::styled(format!("{edited}{copied}"), Style::new().fg(Color::Cyan)),
        ]);
        lines.push(if selected { line.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { line });
    }
    frame.render_widget(Paragraph::new(lines), list);
    let mut rule_text = match case.current_message().and_then(|s| s.copied.as_ref()) {
        Some((at, path)) => {
            format!(
                "─ last copy {} → {} ",
                at.format("%H:%M:%S"),
                sanitize::line(&crate::core::report::file_name(path))
            )
        }
        None => String::new(),
    };
    // Longer than the preview (wrapping aside): say how to see the rest, first.
    let lines_total = case.preview_lines();
    if lines_total > preview.height || case.preview_scroll > 0 {
        rule_text = format!(
            "─ {}-{}/{lines_total} pgdn ─{rule_text}",
            case.preview_scroll + 1,
            (case.preview_scroll + preview.height).min(lines_total)
        );
    }
    let fill = (rule.width as usize).saturating_sub(rule_text.chars().count());
    frame.render_widget(
        Paragraph::new(Span::styled(format!("{rule_text}{}", "─".repeat(fill)), Style::new().fg(Color::DarkGray))),
        rule,
    );
    let text = match case.current_message() {
        Some(slot) => match (&slot.rendered, slot.text()) {
            (Err(e), _) => Text::from(Line::styled(sanitize::line(e).into_owned(), Style::new().fg(Color::Red))),
            (_, Some(t)) => preview_text(t),
            _ => Text::default(),
        },
        None => Text::from(" no templates"),
    };
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).scroll((case.preview_scroll, 0)), preview);
}

/// The message's text with the placeholders of empty fields in yellow.
fn preview_text(text: &str) -> Text<'static> {
    let lines: Vec<Line> = sanitize::multiline(text)
        .split('\n')
        .map(|l| {
            if l.contains(crate::core::comms::TO_FILL_PREFIX) {
                Line::styled(l.to_string(), Style::new().fg(Color::Black).bg(Color::Yellow))
            } else {
                Line::from(l.to_string())
            }
        })
        .collect();
    Text::from(lines)
}

/// The footer's keys for the focused incident pane.
pub fn footer_keys(focus: Pane) -> Vec<(crate::core::keys::KeyAction, &'static str)> {
    use crate::core::keys::KeyAction as K;
    match focus {
        Pane::Checklist => vec![
            (K::Tick, "done"),
            (K::Skip, "skip"),
            (K::Assign, "assign"),
            (K::NextPhase, "phase"),
            (K::Classify, "classify"),
            (K::Level, "level"),
            (K::Note, "note"),
            (K::Maintenance, "maint."),
        ],
        Pane::Team => vec![(K::Assign, "assign person"), (K::Note, "note"), (K::Level, "level")],
        Pane::Timeline => vec![(K::Filter, "filter"), (K::Note, "note"), (K::Level, "level")],
        _ => vec![(K::Copy, "copy"), (K::Fill, "fill"), (K::Edit, "edit"), (K::Waive, "waive"), (K::Report, "report")],
    }
}

/// The footer's text while a dialog is open.
pub fn dialog_hint(d: &Dialog) -> &'static str {
    match d {
        Dialog::Text { .. } => " typing · enter record · esc abandon (nothing recorded)",
        Dialog::PickRole { .. } => " 1-6 or ↑↓ enter pick the role · esc abandon",
        Dialog::PickLevel { .. } => " 1 2 3 or ↑↓ enter pick the level · esc abandon",
        Dialog::Classify { .. } => " y yes · n no · u unsure (counts as yes) · backspace back · esc abandon",
        Dialog::ConfirmPhase { .. } => " y/enter move on · esc stay",
        Dialog::Editor { .. } => " editing · esc done (edits kept) · ctrl-r refill from the incident",
    }
}

fn dialog_block(title: String) -> Block<'static> {
    Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::new().fg(Color::Cyan))
        .title(Span::styled(format!(" {title} "), Style::new().add_modifier(Modifier::BOLD)))
}

/// Draws the open dialog over whatever screen is shown.
pub fn dialog(app: &App, frame: &mut Frame, area: Rect) {
    let Some(case) = &app.case else { return };
    let Some(d) = &case.dialog else { return };
    match d {
        Dialog::Text { purpose, input, hint } => {
            let rect = centered(area, 76, 6);
            frame.render_widget(Clear, rect);
            let block = dialog_block(sanitize::line(&purpose.title()).into_owned());
            let inner = block.inner(rect);
            frame.render_widget(block, rect);
            let [field, why, keys] =
                Layout::vertical([Constraint::Length(1), Constraint::Length(2), Constraint::Length(1)]).areas(inner);
            frame.render_widget(input, field);
            if let Some(h) = hint {
                frame.render_widget(
                    Paragraph::new(Span::styled(format!(" {}", sanitize::line(h)), Style::new().fg(Color::Red)))
                        .wrap(Wrap { trim: false }),
                    why,
                );
            }
            frame.render_widget(Paragraph::new(" enter record · esc abandon").fg(Color::Gray), keys);
        }
        Dialog::PickRole { item, cursor } => {
            let rect = centered(area, 60, Role::ALL.len() as u16 + 4);
            frame.render_widget(Clear, rect);
            let block = dialog_block(format!("Give \"{}\" to", sanitize::line(item)));
            let inner = block.inner(rect);
            frame.render_widget(block, rect);
            let mut lines: Vec<Line> = Role::ALL
                .iter()
                .enumerate()
                .map(|(n, r)| {
                    let held = case
                        .state
                        .roles
                        .get(r)
                        .map(|a| format!(" ({})", sanitize::line(&a.person)))
                        .unwrap_or_default();
                    let l = Line::from(format!(" {} {}{held}", n + 1, r.label()));
                    if n == *cursor { l.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { l }
                })
                .collect();
            lines.push(Line::from(" 1-6 or enter pick · esc abandon").fg(Color::Gray));
            frame.render_widget(Paragraph::new(lines), inner);
        }
        Dialog::PickLevel { cursor } => {
            let rect = centered(area, 78, 8);
            frame.render_widget(Clear, rect);
            let block = dialog_block(format!("Level (now {})", case.state.level.number()));
            let inner = block.inner(rect);
            frame.render_widget(block, rect);
            let describe = |l: Level| match l {
                Level::Minor => "single component, performance, non-critical features",
                Level::Moderate => "several components, data consistency, security vulnerability",
                Level::Critical => "complete failure, data corruption, breach, regulatory",
            };
            let mut lines: Vec<Line> = [Level::Minor, Level::Moderate, Level::Critical]
                .iter()
                .map(|l| {
                    let line = Line::from(vec![
                        Span::styled(format!(" {} {:<8} ", l.number(), l.label()), crate::console::ui::level_style(*l)),
                        Span::raw(format!(" {}", describe(*l))),
                    ]);
                    if l == cursor { line.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { line }
                })
                .collect();
            lines.push(Line::from(""));
            lines.push(Line::from(" 1 2 3 or ↑↓ enter; a reason is asked next · esc abandon").fg(Color::Gray));
            frame.render_widget(Paragraph::new(lines), inner);
        }
        Dialog::Classify { index, answers } => {
            let rect = centered(area, 78, 10);
            frame.render_widget(Clear, rect);
            let block = dialog_block("Classify the incident".into());
            let inner = block.inner(rect);
            frame.render_widget(block, rect);
            let mut lines = Vec::new();
            if let Some(q) = QUESTIONS.get(*index) {
                lines.push(Line::from(format!(" Question {} of {}", index + 1, QUESTIONS.len())).fg(Color::Gray));
                lines.push(Line::from(format!(" {}", q.text)).bold());
                lines.push(Line::from(format!(" (yes means at least Level {} {})", q.level.number(), q.level.label())));
                lines.push(Line::from(""));
                let (so_far, _) = propose(answers);
                lines.push(Line::from(format!(" So far: Level {} {}", so_far.number(), so_far.label())));
                lines.push(
                    Line::from(" y yes · n no · u unsure (counts as yes) · backspace back · esc abandon")
                        .fg(Color::Gray),
                );
            } else {
                let (level, why) = propose(answers);
                lines.push(Line::from(vec![
                    Span::raw(" Proposed: "),
                    Span::styled(
                        format!(" Level {} {} ", level.number(), level.label()),
                        crate::console::ui::level_style(level),
                    ),
                    Span::raw(if level == case.state.level { "  (unchanged)" } else { "" }),
                ]));
                if level < case.state.level {
                    lines.push(
                        Line::from(format!(
                            "  lower than Level {}: enter keeps it (noted); L lowers it, with a reason",
                            case.state.level.number()
                        ))
                        .fg(Color::Yellow),
                    );
                }
                for w in why.iter().take(3) {
                    lines.push(Line::from(format!("  because: {w}")));
                }
                if answers.iter().any(|(_, a)| *a == Answer::Unsure) {
                    lines.push(
                        Line::from("  unsure answers counted as yes: in doubt, the higher level").fg(Color::Yellow),
                    );
                }
                lines.push(
                    Line::from(" enter apply (logged with the reason) · backspace back · esc do not apply")
                        .fg(Color::Gray),
                );
            }
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
        }
        Dialog::ConfirmPhase { to, open } => {
            let rect = centered(area, 72, 6);
            frame.render_widget(Clear, rect);
            let block = dialog_block(format!("Move to {}?", to.label()));
            let inner = block.inner(rect);
            frame.render_widget(block, rect);
            let mut lines = Vec::new();
            if *open > 0 {
                lines.push(
                    Line::from(format!(
                        " {open} item(s) of {} are still open: they stay listed and go into the report.",
                        case.state.phase.label()
                    ))
                    .fg(Color::Yellow),
                );
            } else {
                lines.push(Line::from(format!(" Every item of {} is done or skipped.", case.state.phase.label())));
            }
            if let Some(b) = to.time_box() {
                lines.push(Line::from(format!(" {} has a time box of {}.", to.label(), short(b))));
            }
            lines.push(Line::from(" y/enter move on · esc stay").fg(Color::Gray));
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
        }
        Dialog::Editor { template, input } => editor(case, template, input, frame, area),
    }
}

fn editor(
    case: &IncidentPanel,
    template: &str,
    input: &ratatui_textarea::TextArea<'static>,
    frame: &mut Frame,
    area: Rect,
) {
    let rect = Rect::new(area.x, area.y + 2, area.width, area.height.saturating_sub(3));
    frame.render_widget(Clear, rect);
    let slot = case.messages.iter().find(|s| s.name == template);
    let title =
        sanitize::line(&slot.and_then(|s| s.rendered.as_ref().ok()).map_or(template.to_string(), |r| r.title.clone()))
            .into_owned();
    let block = dialog_block(format!("Editing {title} · esc done · ctrl-r refill"));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let text = input.lines().join("\n");
    let still: Vec<String> =
        slot.and_then(|s| s.rendered.as_ref().ok()).map(|r| r.unfilled_in(&text)).unwrap_or_default();
    let status = if still.is_empty() {
        Line::from(" every required field is filled or waived").fg(Color::Green)
    } else {
        Line::from(format!(" still empty: {} (type over the placeholder, or f / w after esc)", still.join(", ")))
            .fg(Color::Black)
            .bg(Color::Yellow)
    };
    let [s, t] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    frame.render_widget(Paragraph::new(status), s);
    frame.render_widget(input, t);
}

#[cfg(test)]
mod tests {
    use super::fit_parts;

    fn parts(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_contact_that_fits_is_shown_whole() {
        let p = parts(&["Alice Martin", "+44 20 7946 0101", "alice@x.example"]);
        assert_eq!(fit_parts(&p, 60), "Alice Martin · +44 20 7946 0101 · alice@x.example");
    }

    #[test]
    fn only_the_email_is_ever_cut() {
        let p = parts(&["Alice Martin", "+44 20 7946 0101", "alice.martin@tradex.example"]);
        assert_eq!(fit_parts(&p, 42), "Alice Martin · +44 20 7946 0101 · alice.m…");
        // Too little room for a useful piece of the e-mail: left out, and said so.
        assert_eq!(fit_parts(&p, 36), "Alice Martin · +44 20 7946 0101 …");
        // The phone never loses digits: it goes whole or not at all.
        assert_eq!(fit_parts(&p, 25), "Alice Martin …");
        for room in 0..60 {
            let shown = fit_parts(&p, room);
            assert!(shown.chars().count() <= room, "{room}: {shown}");
            assert!(!shown.contains("+44") || shown.contains("+44 20 7946 0101"), "{room}: {shown}");
        }
    }
}
