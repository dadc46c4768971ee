//! The dialogs, one module each: its state, the keys it takes, the hint the footer shows
//! while it is open, and its drawing. A dialog is open over the incident (`case.dialog`)
//! and takes every key until it closes; `help` and `quit` are the two overlays of the
//! console itself.
//!
//! A key goes to the open dialog by value and comes back as a `Turn`: the dialog that is
//! open afterwards (itself, another one, or none) and what the key asks of the loop.

pub mod approvals;
pub mod blast;
pub mod classify;
pub mod detail;
pub mod editor;
pub(crate) mod help;
pub mod level;
pub mod phase;
pub(crate) mod quit;
pub mod release;
pub mod role;
pub mod text;
pub mod times;

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, BorderType};

use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use classify::Classify;
use editor::Editor;
use level::LevelPicker;
use phase::ConfirmPhase;
use role::RolePicker;
use text::TextDialog;
use times::TimePicker;

/// A dialog over the screen; it takes every key until it closes.
#[derive(Debug, Clone)]
pub enum Dialog {
    /// One line of text: a note, a reason, a name, a field, the timeline filter.
    Text(TextDialog),
    /// Which role gets a checklist item.
    PickRole(RolePicker),
    /// Which level.
    PickLevel(LevelPicker),
    /// The classification questions, one at a time; at the end, the proposal.
    Classify(Classify),
    /// Move to the next phase?
    ConfirmPhase(ConfirmPhase),
    /// The message editor.
    Editor(Editor),
    /// Which of the incident's times to set.
    PickTime(TimePicker),
}

/// What a key did to a dialog.
pub(crate) struct Turn {
    /// The dialog open afterwards.
    pub dialog: Option<Dialog>,
    /// What the key asks of the loop.
    pub effects: Effects,
}

impl Turn {
    /// The dialog stays (or another opens).
    pub(crate) fn open(dialog: Dialog, effects: Effects) -> Turn {
        Turn { dialog: Some(dialog), effects }
    }

    /// The dialog closes.
    pub(crate) fn close(effects: Effects) -> Turn {
        Turn { dialog: None, effects }
    }
}

/// Whether a dialog is open.
pub(crate) fn is_open(app: &App) -> bool {
    app.case.as_ref().is_some_and(|c| c.dialog.is_some())
}

/// A key while a dialog is open: the dialog takes it.
pub(crate) fn key(app: &mut App, key: KeyEvent) -> Effects {
    let Some(dialog) = app.case.as_mut().and_then(|c| c.dialog.take()) else { return Effects::none() };
    let turn = match dialog {
        Dialog::Text(d) => d.key(app, key),
        Dialog::PickRole(d) => d.key(app, key),
        Dialog::PickLevel(d) => d.key(app, key),
        Dialog::Classify(d) => d.key(app, key),
        Dialog::ConfirmPhase(d) => d.key(app, key),
        Dialog::Editor(d) => d.key(app, key),
        Dialog::PickTime(d) => d.key(app, key),
    };
    if let Some(case) = app.case.as_mut() {
        case.dialog = turn.dialog;
    }
    turn.effects
}

/// A paste while a dialog is open; true when a dialog is open (it takes the paste, or
/// drops it when it has no input).
pub(crate) fn paste(app: &mut App, text: &str) -> bool {
    let Some(dialog) = app.case.as_mut().and_then(|c| c.dialog.as_mut()) else { return false };
    match dialog {
        Dialog::Text(d) => d.paste(text),
        Dialog::Editor(d) => d.paste(text),
        _ => {}
    }
    true
}

/// The footer while a dialog is open.
pub(crate) fn hint(dialog: &Dialog, k: Keys) -> String {
    match dialog {
        Dialog::Text(_) => TextDialog::hint(k),
        Dialog::PickRole(_) => RolePicker::hint(k),
        Dialog::PickLevel(_) => LevelPicker::hint(k),
        Dialog::Classify(_) => Classify::hint(k),
        Dialog::ConfirmPhase(_) => ConfirmPhase::hint(k),
        Dialog::Editor(_) => Editor::hint(k),
        Dialog::PickTime(_) => TimePicker::hint(k),
    }
}

/// Draws the open dialog over whatever screen is shown.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(case) = &app.case else { return };
    let k = Keys(&app.keymap);
    match &case.dialog {
        Some(Dialog::Text(d)) => d.render(k, frame, area),
        Some(Dialog::PickRole(d)) => d.render(case, k, frame, area),
        Some(Dialog::PickLevel(d)) => d.render(case, k, frame, area),
        Some(Dialog::Classify(d)) => d.render(case, k, frame, area),
        Some(Dialog::ConfirmPhase(d)) => d.render(case, k, frame, area),
        Some(Dialog::Editor(d)) => d.render(case, k, frame, area),
        Some(Dialog::PickTime(d)) => d.render(case, k, frame, area),
        None => {}
    }
}

/// A dialog's frame: double, cyan, its title bold.
pub(crate) fn block(title: String) -> Block<'static> {
    Block::bordered()
        .border_type(BorderType::Double)
        .border_style(Style::new().fg(Color::Cyan))
        .title(Span::styled(format!(" {title} "), Style::new().add_modifier(Modifier::BOLD)))
}
