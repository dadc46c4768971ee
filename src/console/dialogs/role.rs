//! The role picker: which response role does a checklist item.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph};

use super::{Dialog, Turn};
use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::incident::{IncidentPanel, JournalRequest};
use crate::console::keys::EventKeys;
use crate::console::widgets::centered;
use crate::core::keys::KeyAction;
use crate::core::sanitize;
use crate::core::workflow::incident::{Role, Step};

/// Which role gets the item.
#[derive(Debug, Clone)]
pub struct RolePicker {
    /// The item.
    pub item: String,
    /// The role under the cursor.
    pub cursor: usize,
}

impl RolePicker {
    /// The picker for an item, on the first role.
    pub(crate) fn open(item: String) -> Dialog {
        Dialog::PickRole(RolePicker { item, cursor: 0 })
    }

    /// A key: up and down move (round), accept or a role's number picks, dismiss abandons.
    pub(crate) fn key(mut self, app: &mut App, key: KeyEvent) -> Turn {
        let n = Role::ALL.len();
        let pick = match app.keymap.dialog_action(&key) {
            Some(KeyAction::Dismiss) => return Turn::close(Effects::redraw()),
            Some(KeyAction::Up) => {
                self.cursor = (self.cursor + n - 1) % n;
                return Turn::open(Dialog::PickRole(self), Effects::redraw());
            }
            Some(KeyAction::Down) => {
                self.cursor = (self.cursor + 1) % n;
                return Turn::open(Dialog::PickRole(self), Effects::redraw());
            }
            Some(KeyAction::Accept) => Some(self.cursor),
            // A role's number, as shown beside it, is typed rather than bound.
            _ => match key.code {
                KeyCode::Char(c) => c.to_digit(10).and_then(|d| (d as usize).checked_sub(1)).filter(|d| *d < n),
                _ => None,
            },
        };
        match pick.and_then(|i| Role::ALL.get(i)) {
            Some(role) => Turn::close(Effects::journal(vec![JournalRequest::Step(Step::AssignItem {
                item: self.item,
                role: *role,
            })])),
            None => Turn::open(Dialog::PickRole(self), Effects::none()),
        }
    }

    /// The footer while it is open.
    pub(crate) fn hint(k: Keys) -> String {
        format!(
            " 1-{} or {} {} pick the role · {} abandon",
            Role::ALL.len(),
            k.up_down(),
            k.of(KeyAction::Accept),
            k.of(KeyAction::Dismiss)
        )
    }

    /// Draws it.
    pub(crate) fn render(&self, case: &IncidentPanel, k: Keys, frame: &mut Frame, area: Rect) {
        let rect = centered(area, 60, Role::ALL.len() as u16 + 4);
        frame.render_widget(Clear, rect);
        let block = super::block(format!("Give \"{}\" to", sanitize::line(&self.item)));
        let inner = block.inner(rect);
        frame.render_widget(block, rect);
        let mut lines: Vec<Line> = Role::ALL
            .iter()
            .enumerate()
            .map(|(n, r)| {
                let held =
                    case.state.roles.get(r).map(|a| format!(" ({})", sanitize::line(&a.person))).unwrap_or_default();
                let l = Line::from(format!(" {} {}{held}", n + 1, r.label()));
                if n == self.cursor { l.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { l }
            })
            .collect();
        lines.push(
            Line::from(format!(
                " 1-{} or {} pick · {} abandon",
                Role::ALL.len(),
                k.of(KeyAction::Accept),
                k.of(KeyAction::Dismiss)
            ))
            .fg(Color::Gray),
        );
        frame.render_widget(Paragraph::new(lines), inner);
    }
}
