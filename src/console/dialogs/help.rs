//! The help overlay: every key from the keymap, grouped by where it works (the console, each
//! screen's panes, the dialogs), and a tip; any key closes it.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph};

use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::widgets::centered;
use crate::core::keys::{HELP, KeyAction, KeyMap};

/// The widest the help gets (the 160-column screen keeps a margin around it).
const WIDTH: u16 = 118;
/// The section names' column ("  checklist ").
const GUTTER: usize = 13;
/// Between two keys of a section.
const GAP: &str = "   ";

/// A key while the help is open: it closes.
pub(crate) fn key(app: &mut App) -> Effects {
    app.help = false;
    Effects::redraw()
}

/// Draws it.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let rect_width = area.width.min(WIDTH);
    let width = usize::from(rect_width.saturating_sub(2)).max(GUTTER + 1);
    let mut lines = lines(&app.keymap, width);
    let k = Keys(&app.keymap);
    let tip = format!(
        "Roll back: {}, then {} / {} / {}, a reason, confirm; a post-check proves it.",
        k.of(KeyAction::Precheck),
        k.of(KeyAction::Rollback),
        k.of(KeyAction::RollbackGroup),
        k.of(KeyAction::RollbackBatch)
    );
    // The tip is the first thing to go when the screen is short: the keys are not.
    if lines.len() + 4 <= usize::from(area.height) && tip.chars().count() <= width {
        lines.push(Line::default());
        lines.push(Line::styled(tip, Style::new().fg(Color::DarkGray)));
    }
    let rect = centered(area, rect_width, u16::try_from(lines.len() + 2).unwrap_or(u16::MAX));
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(" Help · any key closes ")
        .title_bottom(" keys are set in the file `incident-console config path` names ")
        .border_type(BorderType::Double);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The groups as lines of `width` columns: a group's title, then each section's name in a
/// column of its own and its keys after it, wrapped between keys, never inside one.
fn lines(keymap: &KeyMap, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    for group in HELP {
        out.push(Line::styled(group.title, Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)));
        for section in group.sections {
            let mut line = vec![Span::styled(
                format!("  {:<w$}", section.title, w = GUTTER - 2),
                Style::new().fg(Color::DarkGray),
            )];
            let mut used = GUTTER;
            for (i, (action, label)) in section.entries.iter().enumerate() {
                let keys = keymap.keys_for(*action);
                let gap = if i == 0 { 0 } else { GAP.len() };
                let len = keys.chars().count() + 1 + label.chars().count();
                if i > 0 && used + gap + len > width {
                    out.push(Line::from(std::mem::take(&mut line)));
                    line.push(Span::raw(" ".repeat(GUTTER)));
                    used = GUTTER;
                } else if i > 0 {
                    line.push(Span::raw(GAP));
                    used += gap;
                }
                line.push(Span::styled(keys, Style::new().fg(Color::Cyan)));
                line.push(Span::raw(format!(" {label}")));
                used += len;
            }
            out.push(Line::from(line));
        }
    }
    out
}
