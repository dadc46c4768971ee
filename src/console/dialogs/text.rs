//! The one-line text dialog: a note, a reason (skip, level, maintenance), a person for a
//! role, a message field, or the timeline filter. Enter records it (the workflow may refuse,
//! and the dialog then says why and keeps the text); esc abandons it.

use chrono::{DateTime, Utc};
use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui_textarea::TextArea;

use super::{Dialog, Turn};
use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::incident::JournalRequest;
use crate::console::keys::EventKeys;
use crate::console::widgets::{centered, text_input};
use crate::core::keys::KeyAction;
use crate::core::sanitize;
use crate::core::workflow::Level;
use crate::core::workflow::incident::times::{TimeKind, parse_at};
use crate::core::workflow::incident::{Role, Step};

/// What a text dialog is asking for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A note for the timeline.
    Note,
    /// Why an item is skipped.
    SkipReason(String),
    /// Why the level changes to this one.
    LevelReason(Level),
    /// Who takes a role.
    Person(Role),
    /// The value of a message field: its key, and its name as people read it.
    Field {
        /// The key the journal records (`estimated_resolution`).
        name: String,
        /// What the dialog calls it ("Estimated resolution (internal alert)").
        label: String,
    },
    /// Why maintenance mode is switched on (true) or off.
    Maintenance(bool),
    /// The timeline filter.
    TimelineFilter,
    /// Why the incident is closed.
    Close,
    /// One of the incident's times.
    Time(TimeKind),
    /// Who approved an approval item.
    Approver(String),
    /// Why one symbol's maintenance mode is switched on (true) or off.
    SymbolMaintenance { symbol: String, on: bool },
    /// Why the circuit breaker is opened (true) or closed.
    Breaker(bool),
}

impl Purpose {
    /// The dialog's title.
    pub(crate) fn title(&self) -> String {
        match self {
            Purpose::Note => "Note for the timeline".into(),
            Purpose::SkipReason(item) => format!("Why is \"{item}\" skipped?"),
            Purpose::LevelReason(l) => format!("Why Level {} {}?", l.number(), l.label()),
            Purpose::Person(r) => format!("Who is {}?", r.label()),
            Purpose::Field { label, .. } => format!("Fill: {label}"),
            Purpose::Breaker(true) => "Open the circuit breaker (every rollback refused): why?".into(),
            Purpose::Breaker(false) => "Close the circuit breaker (rollbacks accepted again): why?".into(),
            Purpose::Maintenance(true) => "Maintenance mode ON: why?".into(),
            Purpose::Maintenance(false) => "Maintenance mode OFF: why?".into(),
            Purpose::SymbolMaintenance { symbol, on: true } => format!("Maintenance mode ON for {symbol} only: why?"),
            Purpose::SymbolMaintenance { symbol, on: false } => format!("Maintenance mode OFF for {symbol}: why?"),
            Purpose::TimelineFilter => "Filter the timeline (kind, operator or text)".into(),
            Purpose::Close => "Close the incident: why is it over?".into(),
            Purpose::Time(which) => format!("When: {}?", which.label()),
            Purpose::Approver(item) => format!("Who approved \"{item}\"?"),
        }
    }

    fn required(&self) -> bool {
        !matches!(self, Purpose::TimelineFilter)
    }
}

/// The text dialog.
#[derive(Debug, Clone)]
pub struct TextDialog {
    /// What it is for.
    pub purpose: Purpose,
    /// The input.
    pub input: TextArea<'static>,
    /// Why Enter did not accept it.
    pub hint: Option<String>,
    /// Lines shown above the input: for a message field, the sentence it goes into and the
    /// other messages that use it.
    pub context: Vec<String>,
}

impl TextDialog {
    /// The dialog for a purpose, its input holding `text`.
    pub(crate) fn open(purpose: Purpose, text: &str, placeholder: &str) -> Dialog {
        Dialog::Text(TextDialog { purpose, input: text_input(text, placeholder), hint: None, context: Vec::new() })
    }

    /// The same, with lines of context above the input.
    pub(crate) fn open_with_context(purpose: Purpose, text: &str, placeholder: &str, context: Vec<String>) -> Dialog {
        Dialog::Text(TextDialog { purpose, input: text_input(text, placeholder), hint: None, context })
    }

    /// A key: accept records, dismiss abandons, the rest is typed.
    pub(crate) fn key(mut self, app: &mut App, key: KeyEvent) -> Turn {
        match app.keymap.dialog_action(&key) {
            Some(KeyAction::Dismiss) => Turn::close(app.say("Abandoned: nothing recorded.", false)),
            Some(KeyAction::Accept) => self.accept(app),
            // The maintenance switch's scope: every symbol, or one.
            _ if key.code == crossterm::event::KeyCode::Tab
                && matches!(self.purpose, Purpose::Maintenance(_) | Purpose::SymbolMaintenance { .. }) =>
            {
                if let Some((purpose, context)) = crate::console::maintenance::next_scope(app, &self.purpose) {
                    self.purpose = purpose;
                    self.context = context;
                    self.hint = None;
                }
                Turn::open(Dialog::Text(self), Effects::redraw())
            }
            _ => {
                self.input.input(key);
                self.hint = None;
                Turn::open(Dialog::Text(self), Effects::redraw())
            }
        }
    }

    fn accept(mut self, app: &mut App) -> Turn {
        let text = self.input.lines().join(" ");
        match self.purpose.clone() {
            Purpose::TimelineFilter => {
                if let Some(case) = app.case.as_mut() {
                    case.timeline_filter = text.trim().to_lowercase();
                    case.timeline_offset = 0;
                }
                Turn::close(Effects::redraw())
            }
            Purpose::Breaker(open) => match crate::core::workflow::incident::reason_ok(&text, "A reason") {
                Ok(reason) => Turn::close(crate::console::breaker::switch(app, open, reason)),
                Err(why) => {
                    self.hint = Some(format!("{why}."));
                    Turn::open(Dialog::Text(self), Effects::redraw())
                }
            },
            Purpose::Maintenance(_) | Purpose::SymbolMaintenance { .. } => {
                match crate::core::workflow::incident::reason_ok(&text, "A reason") {
                    Ok(reason) => {
                        let (on, symbol) = match self.purpose.clone() {
                            Purpose::SymbolMaintenance { symbol, on } => (on, Some(symbol)),
                            Purpose::Maintenance(on) => (on, None),
                            _ => return Turn::close(Effects::none()),
                        };
                        Turn::close(crate::console::maintenance::switch(app, on, symbol, reason))
                    }
                    Err(why) => {
                        self.hint = Some(format!("{why}."));
                        Turn::open(Dialog::Text(self), Effects::redraw())
                    }
                }
            }
            purpose => {
                let Some(case) = app.case.as_ref() else { return Turn::close(Effects::none()) };
                match step_of(&purpose, &text, Keys(&app.keymap), app.now) {
                    // Refused by the workflow (too long, hidden characters, …): the dialog
                    // stays open with the text, and says why.
                    Ok(Some(step)) if let Err(why) = case.state.decide(step.clone(), &case.checklist) => {
                        self.hint = Some(why.to_string());
                        Turn::open(Dialog::Text(self), Effects::redraw())
                    }
                    Ok(Some(step)) => Turn::close(Effects::journal(vec![JournalRequest::Step(step)])),
                    Ok(None) => Turn::close(Effects::redraw()),
                    Err(h) => {
                        self.hint = Some(h);
                        Turn::open(Dialog::Text(self), Effects::redraw())
                    }
                }
            }
        }
    }

    /// A paste: one line, so a pasted newline becomes a space.
    pub(crate) fn paste(&mut self, text: &str) {
        let one_line: String = text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }).collect();
        self.input.insert_str(one_line);
    }

    /// The footer while it is open.
    pub(crate) fn hint(k: Keys) -> String {
        format!(
            " typing · {} record · {} abandon (nothing recorded)",
            k.of(KeyAction::Accept),
            k.of(KeyAction::Dismiss)
        )
    }

    /// Draws it.
    pub(crate) fn render(&self, k: Keys, frame: &mut Frame, area: Rect) {
        // Context lines wrap: each gets the rows its text needs at the dialog's width.
        let width = usize::from(area.width.min(76).saturating_sub(4).max(1));
        let context: Vec<Line> = self
            .context
            .iter()
            .map(|l| Line::from(Span::styled(format!(" {}", sanitize::line(l)), Style::new().fg(Color::Gray))))
            .collect();
        let context_rows: usize = context.iter().map(|l| l.width().div_ceil(width).max(1)).sum();
        let rows = u16::try_from(context_rows).unwrap_or(u16::MAX).min(area.height.saturating_sub(8));
        let rect = centered(area, 76, 6 + rows);
        frame.render_widget(Clear, rect);
        let block = super::block(sanitize::line(&self.purpose.title()).into_owned());
        let inner = block.inner(rect);
        frame.render_widget(block, rect);
        let [above, field, why, keys] = Layout::vertical([
            Constraint::Length(rows),
            Constraint::Length(1),
            Constraint::Length(2),
            Constraint::Length(1),
        ])
        .areas(inner);
        frame.render_widget(Paragraph::new(context).wrap(Wrap { trim: false }), above);
        frame.render_widget(&self.input, field);
        if let Some(h) = &self.hint {
            frame.render_widget(
                Paragraph::new(Span::styled(format!(" {}", sanitize::line(h)), Style::new().fg(Color::Red)))
                    .wrap(Wrap { trim: false }),
                why,
            );
        }
        let line = format!(" {} record · {} abandon", k.of(KeyAction::Accept), k.of(KeyAction::Dismiss));
        frame.render_widget(Paragraph::new(line).fg(Color::Gray), keys);
    }
}

/// The step a finished text dialog asks for (none for the timeline filter).
fn step_of(purpose: &Purpose, text: &str, k: Keys, now: DateTime<Utc>) -> Result<Option<Step>, String> {
    let text = text.trim().to_string();
    if purpose.required() && text.is_empty() {
        return Err(format!("Type something first ({} to abandon).", k.of(KeyAction::Dismiss)));
    }
    Ok(match purpose {
        Purpose::Note => Some(Step::Note { text }),
        Purpose::SkipReason(item) => Some(Step::Skip { item: item.clone(), reason: text }),
        Purpose::LevelReason(to) => Some(Step::SetLevel { to: *to, reason: text }),
        Purpose::Person(role) => Some(Step::AssignRole { role: *role, person: text }),
        Purpose::Field { name, .. } => Some(Step::SetField { name: name.clone(), value: text }),
        Purpose::Close => Some(Step::Close { reason: text, now }),
        Purpose::Approver(item) => Some(Step::Approve { item: item.clone(), approver: text }),
        Purpose::Time(which) => {
            let at = parse_at(&text, now).map_err(|e| e.to_string())?;
            Some(Step::SetTime { which: *which, at, source: "commander".into(), now })
        }
        Purpose::Maintenance(_) | Purpose::SymbolMaintenance { .. } | Purpose::Breaker(_) | Purpose::TimelineFilter => {
            None
        }
    })
}
