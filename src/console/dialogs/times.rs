//! The incident's times: which one to set (impact began, detected, mitigated, resolved);
//! the time is typed next, in a text dialog, and checked by the workflow (not in the
//! future, in order with the others).

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph};

use super::text::{Purpose, TextDialog};
use super::{Dialog, Turn};
use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::incident::IncidentPanel;
use crate::console::keys::EventKeys;
use crate::console::widgets::centered;
use crate::core::keys::KeyAction;
use crate::core::sanitize;
use crate::core::workflow::incident::Incident;
use crate::core::workflow::incident::times::TimeKind;

/// Which time to set.
#[derive(Debug, Clone)]
pub struct TimePicker {
    /// The time under the cursor.
    pub cursor: TimeKind,
}

/// A time as the picker and the text dialog show it: its value and where it came from.
fn shown(i: &Incident, which: TimeKind) -> String {
    match (which, i.times.get(which)) {
        (_, Some(m)) => format!("{} ({})", m.at.format("%Y-%m-%d %H:%M UTC"), m.source),
        (TimeKind::Detected, None) => format!("{} (incident opened)", i.detected_at().format("%Y-%m-%d %H:%M UTC")),
        (_, None) => "not set".into(),
    }
}

impl TimePicker {
    /// The picker, on impact began.
    pub(crate) fn open() -> Dialog {
        Dialog::PickTime(TimePicker { cursor: TimeKind::ImpactBegan })
    }

    fn moved(&self, by: isize) -> TimeKind {
        let i = TimeKind::ALL.iter().position(|k| *k == self.cursor).unwrap_or(0) as isize;
        TimeKind::ALL[(i + by).clamp(0, TimeKind::ALL.len() as isize - 1) as usize]
    }

    /// A key: up and down move, accept or a time's number picks, dismiss abandons.
    pub(crate) fn key(mut self, app: &mut App, key: KeyEvent) -> Turn {
        let pick = match app.keymap.dialog_action(&key) {
            Some(KeyAction::Dismiss) => return Turn::close(Effects::redraw()),
            Some(KeyAction::Up) => {
                self.cursor = self.moved(-1);
                return Turn::open(Dialog::PickTime(self), Effects::redraw());
            }
            Some(KeyAction::Down) => {
                self.cursor = self.moved(1);
                return Turn::open(Dialog::PickTime(self), Effects::redraw());
            }
            Some(KeyAction::Accept) => Some(self.cursor),
            // A time's number is typed rather than bound.
            _ => match key.code {
                KeyCode::Char(c) => {
                    c.to_digit(10).and_then(|d| TimeKind::ALL.get((d as usize).checked_sub(1)?)).copied()
                }
                _ => None,
            },
        };
        let Some(which) = pick else { return Turn::open(Dialog::PickTime(self), Effects::none()) };
        let Some(case) = app.case.as_ref() else { return Turn::close(Effects::none()) };
        let context = vec![
            format!("Now: {}", shown(&case.state, which)),
            "UTC: \"YYYY-MM-DD HH:MM\", RFC 3339, or HH:MM for today.".into(),
        ];
        Turn::open(
            TextDialog::open_with_context(Purpose::Time(which), "", "e.g. 2026-11-25 13:02", context),
            Effects::redraw(),
        )
    }

    /// The footer while it is open.
    pub(crate) fn hint(k: Keys) -> String {
        format!(
            " 1-4 or {} {} pick the time · {} abandon",
            k.up_down(),
            k.of(KeyAction::Accept),
            k.of(KeyAction::Dismiss)
        )
    }

    /// Draws it.
    pub(crate) fn render(&self, case: &IncidentPanel, k: Keys, frame: &mut Frame, area: Rect) {
        let rect = centered(area, 72, 9);
        frame.render_widget(Clear, rect);
        let block = super::block("The incident's times (UTC)".into());
        let inner = block.inner(rect);
        frame.render_widget(block, rect);
        let mut lines: Vec<Line> = TimeKind::ALL
            .iter()
            .enumerate()
            .map(|(n, which)| {
                let text = format!(" {} {:<13} {}", n + 1, which.label(), shown(&case.state, *which));
                let line = Line::from(sanitize::line(&text).into_owned());
                if *which == self.cursor {
                    line.patch_style(Style::new().add_modifier(Modifier::REVERSED))
                } else {
                    line
                }
            })
            .collect();
        lines.push(Line::from(""));
        lines.push(Line::from(" Durations count from impact began, else from detected.").fg(Color::Gray));
        lines.push(
            Line::from(format!(
                " 1-4 or {} {}; the time is asked next · {} abandon",
                k.up_down(),
                k.of(KeyAction::Accept),
                k.of(KeyAction::Dismiss)
            ))
            .fg(Color::Gray),
        );
        frame.render_widget(Paragraph::new(lines), inner);
    }
}
