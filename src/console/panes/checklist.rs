//! The Checklist pane: the incident's phase with its time box and update cadence, and the
//! items of the phase (then those still open from earlier phases) to tick, skip or give to
//! a role.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::console::app::{App, Effects};
use crate::console::dialogs::role::RolePicker;
use crate::console::dialogs::text::{Purpose, TextDialog};
use crate::console::hints::Keys;
use crate::console::incident::{IncidentPanel, JournalRequest};
use crate::console::panes::{Pane, is_movement, step};
use crate::console::widgets::pane_block;
use crate::core::format::short_duration as short;
use crate::core::journal::event;
use crate::core::keys::KeyAction;
use crate::core::sanitize;
use crate::core::workflow::Phase;
use crate::core::workflow::checklist::{AutoSignal, Item};
use crate::core::workflow::incident::RESOLUTION_NOTICE;
use crate::core::workflow::incident::{ItemState, Step};

impl IncidentPanel {
    /// The checklist rows: the current phase's items, then items still open from earlier phases.
    pub fn checklist_rows(&self) -> Vec<&Item> {
        let i = &self.state;
        let mut rows: Vec<&Item> = self.checklist.for_phase(i.phase, i.level).collect();
        rows.extend(
            self.checklist
                .items()
                .iter()
                .filter(|it| it.phase < i.phase && it.applies(i.level) && i.item_state(&it.id) == &ItemState::Open),
        );
        rows
    }

    /// The item under the checklist cursor.
    pub fn current_item(&self) -> Option<&Item> {
        self.checklist_rows().get(self.checklist_cursor).copied()
    }

    /// Whether the console saw what an item's `auto` signal stands for (shown as a hint at
    /// Levels 2 and 3, where a person ticks the item).
    pub(crate) fn observed(&self, signal: AutoSignal) -> bool {
        let i = &self.state;
        match signal {
            AutoSignal::PostcheckPassed => i.records_of::<event::Postcheck>().any(|(_, p)| p.successful),
            AutoSignal::MaintenanceVerified => i.maintenance.iter().any(|p| p.verified),
            AutoSignal::AuditClean => i.records_of::<event::Audit>().last().is_some_and(|(_, a)| a.violations == 0),
            AutoSignal::CustomerNoticeSent => i
                .records_of::<event::MessageCopied>()
                .any(|(_, m)| m.audience == "customer" && m.template != RESOLUTION_NOTICE),
            AutoSignal::ResolutionNoticeSent => {
                i.records_of::<event::MessageCopied>().any(|(_, m)| m.template == RESOLUTION_NOTICE)
            }
            AutoSignal::InternalAlertSent => {
                i.records_of::<event::MessageCopied>().any(|(_, m)| m.template == "internal_alert")
            }
            AutoSignal::ReportWritten => i.records_of::<event::ReportWritten>().next().is_some(),
            AutoSignal::ReleaseProved => i.records_of::<event::ReleaseRollback>().any(|(_, r)| r.proved),
            AutoSignal::ServiceVerified => i.records_of::<event::ServiceRollback>().any(|(_, r)| r.passed),
            AutoSignal::BundleWritten => i.records_of::<event::BundleWritten>().next().is_some(),
        }
    }
}

/// The keys the footer names.
pub(crate) const HINTS: &[(KeyAction, &str)] = &[
    (KeyAction::Tick, "done"),
    (KeyAction::Skip, "skip"),
    (KeyAction::Assign, "assign"),
    (KeyAction::NextPhase, "phase"),
    (KeyAction::Classify, "classify"),
    (KeyAction::Level, "level"),
    (KeyAction::Note, "note"),
    (KeyAction::Maintenance, "maint."),
];

/// Keys: movement, assign (and enter) while focused; tick and skip say where they work
/// when it is not.
pub(crate) fn key(app: &mut App, action: KeyAction, focused: bool) -> Option<Effects> {
    match action {
        a if is_movement(a) && focused => Some(movement(app, a)),
        KeyAction::Tick => Some(tick(app, focused)),
        KeyAction::Skip => Some(skip(app, focused)),
        // Enter opens what is under the cursor: here, who does the item.
        KeyAction::Assign | KeyAction::Precheck if focused => Some(assign(app)),
        _ => None,
    }
}

fn movement(app: &mut App, action: KeyAction) -> Effects {
    let Some(case) = app.case.as_mut() else { return Effects::none() };
    let next = step(action, case.checklist_cursor, case.checklist_rows().len());
    if next == case.checklist_cursor {
        return Effects::none();
    }
    case.checklist_cursor = next;
    Effects::redraw()
}

fn tick(app: &mut App, focused: bool) -> Effects {
    let Some(case) = app.case.as_ref() else { return Effects::none() };
    if !focused {
        return app.say("Ticking works in the Checklist pane.", true);
    }
    match case.current_item() {
        // An approval is ticked by naming who gave it.
        Some(it) if it.approval && case.state.item_state(&it.id) == &ItemState::Open => {
            let dialog = TextDialog::open(Purpose::Approver(it.id.clone()), "", "name and role, e.g. Dana Reyes, CTO");
            if let Some(case) = app.case.as_mut() {
                case.dialog = Some(dialog);
            }
            Effects::redraw()
        }
        Some(it) => Effects::journal(vec![JournalRequest::Step(Step::Tick { item: it.id.clone() })]),
        None => app.say("No item under the cursor.", true),
    }
}

fn skip(app: &mut App, focused: bool) -> Effects {
    if !focused {
        return app.say("Skipping works in the Checklist pane.", true);
    }
    let Some(case) = app.case.as_mut() else { return Effects::none() };
    let Some(item) = case.current_item().map(|i| i.id.clone()) else {
        return app.say("No item under the cursor.", true);
    };
    if case.state.item_state(&item) != &ItemState::Open {
        return app.say(format!("\"{item}\" is not open."), true);
    }
    case.dialog = Some(TextDialog::open(Purpose::SkipReason(item), "", "why it does not apply"));
    Effects::redraw()
}

fn assign(app: &mut App) -> Effects {
    let Some(case) = app.case.as_mut() else { return Effects::none() };
    let Some(item) = case.current_item().map(|i| i.id.clone()) else {
        return app.say("No item under the cursor.", true);
    };
    case.dialog = Some(RolePicker::open(item));
    Effects::redraw()
}

/// Draws the pane.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(case) = &app.case else { return };
    let i = &case.state;
    let title = format!("Checklist · {} · Level {}", i.phase.label(), i.level.number());
    let block = pane_block(app, Pane::Checklist, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let now = app.now;
    let in_phase = now - i.phase_started();
    let time_box = match i.phase.time_box() {
        // Closed: no time box counts and no update is due.
        _ if let Some(c) = &i.closed => Span::styled(
            format!(" CLOSED at {}: no update due ", c.at.format("%H:%M")),
            Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
        ),
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
    let mut cadence = vec![time_box];
    match case.next_update_due(now) {
        _ if i.closed.is_some() => {}
        Some(d) => cadence.extend([Span::raw("│"), due_span("update", d, now)]),
        None => cadence.extend([Span::raw("│"), Span::raw(" updates on change ")]),
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
            ItemState::Done { by, at, auto: true, .. } => {
                format!(" ✓ observed {} ({})", at.format("%H:%M"), sanitize::line(by))
            }
            ItemState::Done { by, at, approved_by: Some(who), .. } => format!(
                " ✓ approved by {} (ticked by {} {})",
                sanitize::line(who),
                sanitize::line(by),
                at.format("%H:%M")
            ),
            ItemState::Done { by, at, .. } => format!(" ✓ {} {}", sanitize::line(by), at.format("%H:%M")),
            ItemState::Skipped { reason, .. } => format!(" skipped: {}", sanitize::line(reason)),
            ItemState::Open => {
                let role = i.item_roles.get(&it.id).map(|r| format!(" → {}", r.label())).unwrap_or_default();
                let seen = if it.auto.is_some_and(|a| case.observed(a)) {
                    format!(" (observed: {} confirms)", Keys(&app.keymap).of(KeyAction::Tick))
                } else {
                    String::new()
                };
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

/// "next update 08:45 UTC (in 3m 10s)" or, overdue, in red.
fn due_span(label: &str, due: DateTime<Utc>, now: DateTime<Utc>) -> Span<'static> {
    if now > due {
        Span::styled(
            format!(" {label} OVERDUE {} ", short(now - due)),
            Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
        )
    } else {
        Span::raw(format!(" {label} {} (in {}) ", hm(due), short(due - now)))
    }
}

fn hm(t: DateTime<Utc>) -> String {
    t.format("%H:%M").to_string()
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
