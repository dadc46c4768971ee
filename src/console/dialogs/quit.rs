//! "A rollback is running: quit anyway?": asked before leaving mid-rollback.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Block, Clear, Paragraph};

use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::keys::EventKeys;
use crate::console::widgets::centered;
use crate::core::keys::KeyAction;

/// A key while the question is open: yes (or ctrl-c) leaves, any other key stays.
pub(crate) fn key(app: &mut App, key: KeyEvent, ctrl_c: bool) -> Effects {
    match app.keymap.dialog_action(&key) {
        Some(KeyAction::Yes) => app.leave(),
        _ if ctrl_c => app.leave(),
        _ => {
            app.quit_confirm = false;
            Effects::redraw()
        }
    }
}

/// Draws it.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let rect = centered(area, 78, 5);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from("A rollback is running. Quit anyway?").bold(),
            Line::from("It is cancelled on the server; a batch stops after the orders in flight."),
            Line::from(format!("{} quit · any other key stays", Keys(&app.keymap).of(KeyAction::Yes))),
        ])
        .block(Block::bordered().border_style(Style::new().fg(Color::Red)).title(" Quit? ")),
        rect,
    );
}
