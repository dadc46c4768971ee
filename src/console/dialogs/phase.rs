//! Moving the incident to its next phase, after saying what is still open.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::{Dialog, Turn};
use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::incident::{IncidentPanel, JournalRequest};
use crate::console::keys::EventKeys;
use crate::console::widgets::centered;
use crate::core::format::short_duration;
use crate::core::keys::KeyAction;
use crate::core::workflow::Phase;
use crate::core::workflow::incident::{ItemState, Step};

/// Move to the next phase?
#[derive(Debug, Clone)]
pub struct ConfirmPhase {
    /// The phase.
    pub to: Phase,
    /// Items of the current phase still open.
    pub open: usize,
}

impl ConfirmPhase {
    /// The question for the incident's next phase, or why there is none.
    pub(crate) fn open(case: &IncidentPanel) -> Result<Dialog, String> {
        let Some(to) = case.state.phase.next() else {
            return Err("Post-incident is the last phase.".into());
        };
        let open = case
            .checklist
            .for_phase(case.state.phase, case.state.level)
            .filter(|i| case.state.item_state(&i.id) == &ItemState::Open)
            .count();
        Ok(Dialog::ConfirmPhase(ConfirmPhase { to, open }))
    }

    /// A key: yes (or accept) moves on, no (or dismiss) stays.
    pub(crate) fn key(self, app: &mut App, key: KeyEvent) -> Turn {
        match app.keymap.dialog_action(&key) {
            Some(KeyAction::Accept | KeyAction::Yes) => {
                Turn::close(Effects::journal(vec![JournalRequest::Step(Step::Advance { to: self.to })]))
            }
            Some(KeyAction::Dismiss | KeyAction::No) => Turn::close(Effects::redraw()),
            _ => Turn::open(Dialog::ConfirmPhase(self), Effects::none()),
        }
    }

    /// The footer while it is open.
    pub(crate) fn hint(k: Keys) -> String {
        format!(" {}/{} move on · {} stay", k.of(KeyAction::Yes), k.of(KeyAction::Accept), k.of(KeyAction::Dismiss))
    }

    /// Draws it.
    pub(crate) fn render(&self, case: &IncidentPanel, k: Keys, frame: &mut Frame, area: Rect) {
        let post = self.to == crate::core::workflow::Phase::PostIncident;
        let rect = centered(area, 72, if post { 8 } else { 6 });
        frame.render_widget(Clear, rect);
        let block = super::block(format!("Move to {}?", self.to.label()));
        let inner = block.inner(rect);
        frame.render_widget(block, rect);
        let mut lines = Vec::new();
        if self.open > 0 {
            lines.push(
                Line::from(format!(
                    " {} item(s) of {} are still open: they stay listed and go into the report.",
                    self.open,
                    case.state.phase.label()
                ))
                .fg(Color::Yellow),
            );
        } else {
            lines.push(Line::from(format!(" Every item of {} is done or skipped.", case.state.phase.label())));
        }
        if let Some(b) = self.to.time_box() {
            lines.push(Line::from(format!(" {} has a time box of {}.", self.to.label(), short_duration(b))));
        }
        if self.to == crate::core::workflow::Phase::PostIncident {
            lines.push(Line::from(format!(
                " Then {} writes the report and {} the evidence bundle (checksums, offline check).",
                k.of(KeyAction::Report),
                k.of(KeyAction::Bundle)
            )));
        }
        lines.push(Line::from(ConfirmPhase::hint(k)).fg(Color::Gray));
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
    }
}
