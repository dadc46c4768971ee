//! The help overlay: every key, from the keymap, and two tips; any key closes it.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::widgets::centered;
use crate::core::keys::KeyAction;

/// A key while the help is open: it closes.
pub(crate) fn key(app: &mut App) -> Effects {
    app.help = false;
    Effects::redraw()
}

/// Draws it.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let entry = |a: KeyAction| {
        Line::from(vec![
            Span::styled(format!("{:>11} ", app.keymap.keys_for(a)), Style::new().fg(Color::Cyan)),
            Span::raw(a.describe()),
        ])
    };
    // Two columns, so the whole list fits on 80x24.
    let half = KeyAction::ALL.len().div_ceil(2);
    let left: Vec<Line> = KeyAction::ALL[..half].iter().map(|a| entry(*a)).collect();
    let right: Vec<Line> = KeyAction::ALL[half..].iter().map(|a| entry(*a)).collect();
    let k = Keys(&app.keymap);
    let tips = vec![
        Line::from(format!(
            "Roll back: {}, then {} / {} / {}, a reason, confirm; a post-check proves it.",
            k.of(KeyAction::Precheck),
            k.of(KeyAction::Rollback),
            k.of(KeyAction::RollbackGroup),
            k.of(KeyAction::RollbackBatch)
        )),
        Line::from(format!(
            "Typing: {} continues, {} abandons. Keys: `incident-console config path`.",
            k.of(KeyAction::Accept),
            k.of(KeyAction::Dismiss)
        )),
    ];
    let rows = left.len() as u16;
    let width = area.width.min(118).saturating_sub(2).max(1) as usize;
    let tip_rows: usize = tips.iter().map(|l| l.width().max(1).div_ceil(width)).sum();
    // A blank line between the keys and the tips where there is room for it.
    let gap = u16::from(rows + tip_rows as u16 + 3 <= area.height);
    let rect = centered(area, 118, rows + tip_rows as u16 + 2 + gap);
    frame.render_widget(Clear, rect);
    let block = Block::bordered().title(" Help · any key closes ").border_type(BorderType::Double);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let [lists, _, tip_area] =
        Layout::vertical([Constraint::Length(rows), Constraint::Length(gap), Constraint::Min(1)]).areas(inner);
    let [l, r] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(lists);
    frame.render_widget(Paragraph::new(left), l);
    frame.render_widget(Paragraph::new(right), r);
    frame.render_widget(Paragraph::new(tips).wrap(Wrap { trim: false }), tip_area);
}
