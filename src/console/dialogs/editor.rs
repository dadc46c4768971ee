//! The message editor: the selected message's text, editable; the edits are kept as a
//! draft over the filled template when it closes.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui_textarea::TextArea;

use super::{Dialog, Turn};
use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::incident::IncidentPanel;
use crate::console::keys::EventKeys;
use crate::core::comms::Draft;
use crate::core::keys::KeyAction;
use crate::core::sanitize;

/// The message editor.
#[derive(Debug, Clone)]
pub struct Editor {
    /// The template.
    pub template: String,
    /// The text being edited.
    pub input: TextArea<'static>,
}

/// The editor's text area.
fn editor_input(text: &str) -> TextArea<'static> {
    let mut t = TextArea::new(text.split('\n').map(str::to_string).collect());
    t.set_cursor_line_style(ratatui::style::Style::default());
    // Messages are prose: wrap at words, so a long line is read whole at 80 columns.
    t.set_wrap_mode(ratatui_textarea::WrapMode::WordOrGlyph);
    t
}

impl Editor {
    /// The editor on a template's text.
    pub(crate) fn open(template: String, text: &str) -> Dialog {
        Dialog::Editor(Editor { template, input: editor_input(text) })
    }

    /// A key: dismiss closes and keeps the edits, refill fills the text from the incident
    /// again, the rest is typed (enter too: a message has lines).
    pub(crate) fn key(mut self, app: &mut App, key: KeyEvent) -> Turn {
        let action = app.keymap.dialog_action(&key);
        let Some(case) = app.case.as_mut() else { return Turn::close(Effects::none()) };
        match action {
            Some(KeyAction::Dismiss) => {
                let text = self.input.lines().join("\n");
                if let Some(slot) = case.messages.iter_mut().find(|s| s.name == self.template)
                    && let Ok(r) = &slot.rendered
                {
                    slot.draft = (text != r.text).then(|| Draft { base: r.text.clone(), edited: text });
                }
                let text = format!("Edits kept; {} copies.", Keys(&app.keymap).of(KeyAction::Copy));
                Turn::close(app.say(text, false))
            }
            Some(KeyAction::Refill) => {
                if let Some(r) =
                    case.messages.iter().find(|s| s.name == self.template).and_then(|s| s.rendered.as_ref().ok())
                {
                    self.input = editor_input(&r.text);
                }
                Turn::open(Dialog::Editor(self), Effects::redraw())
            }
            _ => {
                self.input.input(key);
                Turn::open(Dialog::Editor(self), Effects::redraw())
            }
        }
    }

    /// A paste: line breaks kept, as the message's.
    pub(crate) fn paste(&mut self, text: &str) {
        self.input.insert_str(text.replace("\r\n", "\n").replace('\r', "\n"));
    }

    /// The footer while it is open.
    pub(crate) fn hint(k: Keys) -> String {
        format!(
            " editing · {} done (edits kept) · {} refill from the incident",
            k.of(KeyAction::Dismiss),
            k.of(KeyAction::Refill)
        )
    }

    /// Draws it over the screen's body (the header and the footer stay visible).
    pub(crate) fn render(&self, case: &IncidentPanel, k: Keys, frame: &mut Frame, area: Rect) {
        let rect = Rect::new(area.x, area.y + 2, area.width, area.height.saturating_sub(3));
        frame.render_widget(Clear, rect);
        let slot = case.messages.iter().find(|s| s.name == self.template);
        let title = sanitize::line(
            &slot.and_then(|s| s.rendered.as_ref().ok()).map_or(self.template.clone(), |r| r.title.clone()),
        )
        .into_owned();
        let block = super::block(format!(
            "Editing {title} · {} done · {} refill",
            k.of(KeyAction::Dismiss),
            k.of(KeyAction::Refill)
        ));
        let inner = block.inner(rect);
        frame.render_widget(block, rect);
        let text = self.input.lines().join("\n");
        let still: Vec<String> =
            slot.and_then(|s| s.rendered.as_ref().ok()).map(|r| r.unfilled_in(&text)).unwrap_or_default();
        let status = if still.is_empty() {
            Line::from(" every required field is filled or waived").fg(Color::Green)
        } else {
            Line::from(format!(
                " still empty: {} (type over the placeholder, or {} / {} after {})",
                still.join(", "),
                k.of(KeyAction::Fill),
                k.of(KeyAction::Waive),
                k.of(KeyAction::Dismiss)
            ))
            .fg(Color::Black)
            .bg(Color::Yellow)
        };
        // The status wraps rather than lose its end (which keys fill the fields).
        let rows = u16::try_from(status.width().div_ceil(usize::from(inner.width.max(1))).max(1)).unwrap_or(1);
        let [s, t] = Layout::vertical([Constraint::Length(rows.min(3)), Constraint::Min(1)]).areas(inner);
        frame.render_widget(Paragraph::new(status).wrap(Wrap { trim: false }), s);
        frame.render_widget(&self.input, t);
    }
}
