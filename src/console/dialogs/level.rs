//! The level picker: which level the incident should be; a reason is asked next.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph};

use super::text::{Purpose, TextDialog};
use super::{Dialog, Turn};
use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::incident::IncidentPanel;
use crate::console::keys::EventKeys;
use crate::console::widgets::{centered, level_style};
use crate::core::keys::KeyAction;
use crate::core::workflow::Level;

/// Which level.
#[derive(Debug, Clone)]
pub struct LevelPicker {
    /// The level under the cursor.
    pub cursor: Level,
}

impl LevelPicker {
    /// The picker, on the incident's level.
    pub(crate) fn open(level: Level) -> Dialog {
        Dialog::PickLevel(LevelPicker { cursor: level })
    }

    /// A key: up and down move, accept or a level's number picks, dismiss abandons.
    pub(crate) fn key(mut self, app: &mut App, key: KeyEvent) -> Turn {
        let pick = match app.keymap.dialog_action(&key) {
            Some(KeyAction::Dismiss) => return Turn::close(Effects::redraw()),
            Some(KeyAction::Up) => {
                self.cursor = Level::from_number(self.cursor.number().saturating_sub(1).max(1)).unwrap_or(self.cursor);
                return Turn::open(Dialog::PickLevel(self), Effects::redraw());
            }
            Some(KeyAction::Down) => {
                self.cursor = Level::from_number((self.cursor.number() + 1).min(3)).unwrap_or(self.cursor);
                return Turn::open(Dialog::PickLevel(self), Effects::redraw());
            }
            Some(KeyAction::Accept) => Some(self.cursor),
            // A level's number is typed rather than bound.
            _ => match key.code {
                KeyCode::Char(c) => c.to_digit(10).and_then(|d| Level::from_number(d as u8)),
                _ => None,
            },
        };
        let Some(level) = pick else { return Turn::open(Dialog::PickLevel(self), Effects::none()) };
        if app.case.as_ref().is_some_and(|c| c.state.level == level) {
            return Turn::close(app.say(format!("The incident is already Level {}.", level.number()), false));
        }
        Turn::open(TextDialog::open(Purpose::LevelReason(level), "", "why: what changed"), Effects::redraw())
    }

    /// The footer while it is open.
    pub(crate) fn hint(k: Keys) -> String {
        format!(
            " 1 2 3 or {} {} pick the level · {} abandon",
            k.up_down(),
            k.of(KeyAction::Accept),
            k.of(KeyAction::Dismiss)
        )
    }

    /// Draws it.
    pub(crate) fn render(&self, case: &IncidentPanel, k: Keys, frame: &mut Frame, area: Rect) {
        let rect = centered(area, 78, 8);
        frame.render_widget(Clear, rect);
        let block = super::block(format!("Level (now {})", case.state.level.number()));
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
                    Span::styled(format!(" {} {:<8} ", l.number(), l.label()), level_style(*l)),
                    Span::raw(format!(" {}", describe(*l))),
                ]);
                if *l == self.cursor { line.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { line }
            })
            .collect();
        lines.push(Line::from(""));
        lines.push(
            Line::from(format!(
                " 1 2 3 or {} {}; a reason is asked next · {} abandon",
                k.up_down(),
                k.of(KeyAction::Accept),
                k.of(KeyAction::Dismiss)
            ))
            .fg(Color::Gray),
        );
        frame.render_widget(Paragraph::new(lines), inner);
    }
}
