//! The classification helper: the questions one at a time, then the level they propose,
//! applied (and logged with the reason) or not.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

use super::{Dialog, Turn};
use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::incident::{IncidentPanel, JournalRequest};
use crate::console::keys::EventKeys;
use crate::console::widgets::{centered, level_style};
use crate::core::keys::KeyAction;
use crate::core::workflow::classify::{Answer, QUESTIONS, classification_steps, propose};
use crate::core::workflow::incident::ItemState;

/// The questions asked so far and their answers.
#[derive(Debug, Clone)]
pub struct Classify {
    /// The question being asked (`QUESTIONS.len()`: the proposal is shown).
    pub index: usize,
    /// The answers so far.
    pub answers: Vec<(&'static str, Answer)>,
}

impl Classify {
    /// The first question.
    pub(crate) fn open() -> Dialog {
        Dialog::Classify(Classify { index: 0, answers: Vec::new() })
    }

    /// A key: an answer, back to the previous question, or abandon; on the proposal, apply
    /// or not.
    pub(crate) fn key(mut self, app: &mut App, key: KeyEvent) -> Turn {
        if self.index >= QUESTIONS.len() {
            return self.proposal_key(app, key);
        }
        let answer = match app.keymap.dialog_action(&key) {
            Some(KeyAction::Dismiss) => return Turn::close(app.say("Classification abandoned.", false)),
            Some(KeyAction::Back) if self.index > 0 => {
                self.index -= 1;
                self.answers.pop();
                return Turn::open(Dialog::Classify(self), Effects::redraw());
            }
            Some(KeyAction::Yes) => Answer::Yes,
            Some(KeyAction::No) => Answer::No,
            Some(KeyAction::Unsure) => Answer::Unsure,
            _ => return Turn::open(Dialog::Classify(self), Effects::none()),
        };
        if let Some(q) = QUESTIONS.get(self.index) {
            self.answers.push((q.id, answer));
            self.index += 1;
        }
        Turn::open(Dialog::Classify(self), Effects::redraw())
    }

    fn proposal_key(mut self, app: &mut App, key: KeyEvent) -> Turn {
        match app.keymap.dialog_action(&key) {
            Some(KeyAction::Accept | KeyAction::Yes) => {
                let Some(case) = app.case.as_ref() else { return Turn::close(Effects::none()) };
                let open =
                    case.checklist.get("classify").is_some() && case.state.item_state("classify") == &ItemState::Open;
                let (_, steps) = classification_steps(case.state.level, &self.answers, open);
                Turn::close(Effects::journal(steps.into_iter().map(JournalRequest::Step).collect()))
            }
            Some(KeyAction::Back) => {
                self.index -= 1;
                self.answers.pop();
                Turn::open(Dialog::Classify(self), Effects::redraw())
            }
            Some(KeyAction::Dismiss | KeyAction::No) => Turn::close(app.say("Classification not applied.", false)),
            _ => Turn::open(Dialog::Classify(self), Effects::none()),
        }
    }

    /// The footer while it is open.
    pub(crate) fn hint(k: Keys) -> String {
        format!(
            " {} yes · {} no · {} unsure (counts as yes) · {} back · {} abandon",
            k.of(KeyAction::Yes),
            k.of(KeyAction::No),
            k.of(KeyAction::Unsure),
            k.of(KeyAction::Back),
            k.of(KeyAction::Dismiss)
        )
    }

    /// Draws it.
    pub(crate) fn render(&self, case: &IncidentPanel, k: Keys, frame: &mut Frame, area: Rect) {
        let rect = centered(area, 78, 10);
        frame.render_widget(Clear, rect);
        let block = super::block("Classify the incident".into());
        let inner = block.inner(rect);
        frame.render_widget(block, rect);
        let lines = match QUESTIONS.get(self.index) {
            Some(q) => {
                let (so_far, _) = propose(&self.answers);
                vec![
                    Line::from(format!(" Question {} of {}", self.index + 1, QUESTIONS.len())).fg(Color::Gray),
                    Line::from(format!(" {}", q.text)).bold(),
                    Line::from(format!(" (yes means at least Level {} {})", q.level.number(), q.level.label())),
                    Line::from(""),
                    Line::from(format!(" So far: Level {} {}", so_far.number(), so_far.label())),
                    Line::from(Classify::hint(k)).fg(Color::Gray),
                ]
            }
            None => self.proposal_lines(case, k),
        };
        frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
    }

    /// The level proposed and why.
    fn proposal_lines(&self, case: &IncidentPanel, k: Keys) -> Vec<Line<'static>> {
        let (level, why) = propose(&self.answers);
        let mut lines = vec![Line::from(vec![
            Span::raw(" Proposed: "),
            Span::styled(format!(" Level {} {} ", level.number(), level.label()), level_style(level)),
            Span::raw(if level == case.state.level { "  (unchanged)" } else { "" }),
        ])];
        if level < case.state.level {
            lines.push(
                Line::from(format!(
                    "  lower than Level {}: {} keeps it (noted); {} lowers it, with a reason",
                    case.state.level.number(),
                    k.of(KeyAction::Accept),
                    k.of(KeyAction::Level)
                ))
                .fg(Color::Yellow),
            );
        }
        for w in why.iter().take(3) {
            lines.push(Line::from(format!("  because: {w}")));
        }
        if self.answers.iter().any(|(_, a)| *a == Answer::Unsure) {
            lines.push(Line::from("  unsure answers counted as yes: in doubt, the higher level").fg(Color::Yellow));
        }
        // One meaning for enter: when the proposal is lower, it keeps the level (said above).
        let accept = if level < case.state.level { "keep the level (noted)" } else { "apply (logged with the reason)" };
        lines.push(
            Line::from(format!(
                " {} {accept} · {} back · {} do not apply",
                k.of(KeyAction::Accept),
                k.of(KeyAction::Back),
                k.of(KeyAction::Dismiss)
            ))
            .fg(Color::Gray),
        );
        lines
    }
}
