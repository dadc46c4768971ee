//! The Timeline pane: the incident's journal, newest first, one row per entry, with a
//! filter; its title says whether the journal is copied to the database (only what a copy
//! confirmed counts as copied).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::console::app::{App, Effects};
use crate::console::dialogs::text::{Purpose, TextDialog};
use crate::console::hints::Keys;
use crate::console::incident::IncidentPanel;
use crate::console::panes::{Pane, is_movement, step};
use crate::console::protocol::ConnState;
use crate::console::widgets::{fit, pane_block};
use crate::core::journal::Event;
use crate::core::keys::KeyAction;
use crate::core::sanitize;
use crate::store::journal::Entry;

impl IncidentPanel {
    /// One screenful of the timeline: `rows` entries from `offset`, newest first, filtered,
    /// and how many entries pass the filter. Only the entries shown are described when
    /// nothing is filtered.
    pub(crate) fn timeline_page(&self, offset: usize, rows: usize) -> (Vec<(&Entry, String)>, usize) {
        if self.timeline_filter.is_empty() {
            let page = self.entries.iter().rev().skip(offset).take(rows).map(|e| (e, self.describe(e)));
            return (page.collect(), self.entries.len());
        }
        let all = self.timeline();
        let n = all.len();
        (all.into_iter().skip(offset).take(rows).collect(), n)
    }

    /// Timeline entries, newest first, filtered.
    pub fn timeline(&self) -> Vec<(&Entry, String)> {
        self.entries
            .iter()
            .rev()
            .map(|e| (e, self.describe(e)))
            .filter(|(e, text)| crate::core::report::matches(e, text, &self.timeline_filter))
            .collect()
    }

    /// An entry's line: a rollback intended whose outcome the journal lacks says so, unless
    /// it is the one this console is running (its outcome is still to come).
    fn describe(&self, e: &Entry) -> String {
        match &e.event {
            Event::RollbackIntended(i) if self.awaiting_outcome == Some(i.operation) => {
                format!("{} — running", crate::core::report::describe(e))
            }
            _ => crate::core::report::describe_in(&self.state, &self.checklist, e),
        }
    }
}

/// The keys the footer names.
pub(crate) const HINTS: &[(KeyAction, &str)] =
    &[(KeyAction::Filter, "filter"), (KeyAction::Note, "note"), (KeyAction::Level, "level")];

/// Keys: movement while focused; the filter from any pane of the incident screen.
pub(crate) fn key(app: &mut App, action: KeyAction, focused: bool) -> Option<Effects> {
    match action {
        a if is_movement(a) && focused => {
            let case = app.case.as_mut()?;
            let next = step(a, case.timeline_offset, case.timeline_page(0, 0).1);
            if next == case.timeline_offset {
                return Some(Effects::none());
            }
            case.timeline_offset = next;
            Some(Effects::redraw())
        }
        KeyAction::Filter => {
            let case = app.case.as_mut()?;
            app.focus = Pane::Timeline;
            let current = case.timeline_filter.clone();
            case.dialog =
                Some(TextDialog::open(Purpose::TimelineFilter, &current, "kind, operator or text; empty shows all"));
            Some(Effects::redraw())
        }
        _ => None,
    }
}

/// Whether the journal is in the database: "copied to db" only when a copy confirmed it
/// holds every entry; else how many are not, and why (the database down, the copy refused,
/// or on its way).
fn copy_label(case: &IncidentPanel, conn: &ConnState) -> String {
    let pending = case.not_copied();
    if pending == 0 {
        return "copied to db".into();
    }
    let why = match (conn, &case.db_copy.failed) {
        (ConnState::Down { .. }, _) => "(db down)",
        (_, Some(_)) => "(copy failed)",
        _ => "yet",
    };
    format!("{pending} not copied {why}")
}

/// Draws the pane.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(case) = &app.case else { return };
    // Rows inside the frame: the pane's height less its two borders.
    let (shown, matching) = case.timeline_page(case.timeline_offset, area.height.saturating_sub(2) as usize);
    let copy = copy_label(case, &app.conn);
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
            let style = match &e.event {
                Event::LevelChanged(_) | Event::PhaseChanged(_) => {
                    Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
                }
                Event::Rollback(_) | Event::Maintenance(_) | Event::MaintenanceSeen(_) => {
                    Style::new().fg(Color::Magenta)
                }
                // An intent with no outcome: the journal cannot say whether money moved.
                Event::RollbackIntended(i)
                    if !case.state.outcome_recorded(i.operation) && case.awaiting_outcome != Some(i.operation) =>
                {
                    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
                }
                Event::RollbackIntended(_) => Style::new().fg(Color::Magenta),
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
        let text = format!(" nothing matches the filter ({} changes it)", Keys(&app.keymap).of(KeyAction::Filter));
        frame.render_widget(Paragraph::new(text), inner);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}
