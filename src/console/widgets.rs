//! Small drawing helpers every pane and dialog uses: a pane's frame, a dialog's place,
//! the level's colours, durations, ids and amounts cut visibly.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, BorderType, Borders, Paragraph};
use uuid::Uuid;

use crate::console::app::App;
use crate::console::panes::Pane;
use crate::core::workflow::Level;

/// A pane's frame: bold and coloured when focused, with its title.
pub(crate) fn pane_block(app: &App, pane: Pane, title: String) -> Block<'static> {
    let focused = app.focus == pane;
    let style = if focused {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    let marker = if focused { "▶ " } else { "" };
    Block::default()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(style)
        .title(Span::styled(format!(" {marker}{title} "), style))
}

/// Tabs naming `panes` in equal slots, `shown` highlighted (narrow screens show one pane
/// at a time under them).
pub(crate) fn tabs(frame: &mut Frame, area: Rect, panes: &[Pane], shown: Pane) {
    let n = u32::try_from(panes.len()).unwrap_or(1).max(1);
    let slots = Layout::horizontal(vec![Constraint::Ratio(1, n); panes.len()]).split(area);
    for (pane, slot) in panes.iter().zip(slots.iter()) {
        let style = if *pane == shown {
            Style::new().fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::Gray)
        };
        frame.render_widget(
            Paragraph::new(Span::styled(format!(" {} ", pane.title()), style)).alignment(Alignment::Center),
            *slot,
        );
    }
}

/// The level's colour; the label carries the meaning without it.
pub(crate) fn level_style(level: Level) -> Style {
    match level {
        Level::Minor => Style::new().fg(Color::Black).bg(Color::Green),
        Level::Moderate => Style::new().fg(Color::Black).bg(Color::Yellow),
        Level::Critical => Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

/// "3m 05s" / "1h 02m".
pub(crate) fn duration_text(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else if s >= 1 {
        format!("{}.{}s", s, (d.num_milliseconds().max(0) % 1000) / 100)
    } else {
        format!("{} ms", d.num_milliseconds().max(0))
    }
}

/// `text` in `width` columns: cut with a trailing '…' when longer, so a cut amount never
/// reads as a different amount.
pub(crate) fn fit(text: &str, width: u16) -> String {
    let width = usize::from(width);
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `text` in lines of at most `width` characters, broken at spaces where it can (a word
/// longer than a line is broken inside): for text shown under a hanging indent, so that
/// what wraps stays in its column instead of starting at the pane's edge.
pub(crate) fn wrap_words(text: &str, width: u16) -> Vec<String> {
    let width = usize::from(width).max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = line.chars().count();
            let gap = usize::from(used > 0);
            if used + gap + word.len() <= width {
                if gap == 1 {
                    line.push(' ');
                }
                line.extend(word.iter());
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a line: as much as fits, the rest on the next.
            let rest = word.split_off(width);
            lines.push(word.into_iter().collect());
            word = rest;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// A rectangle of at most `w`×`h` in the middle of `area`.
pub(crate) fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(area.x + (area.width - w) / 2, area.y + (area.height - h) / 2, w, h)
}

/// The first 8 characters of an id, for narrow columns.
pub fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

/// A one-line input, empty or with text, cursor at the end.
pub(crate) fn text_input(text: &str, placeholder: &str) -> ratatui_textarea::TextArea<'static> {
    let mut t = ratatui_textarea::TextArea::new(vec![text.to_string()]);
    t.set_cursor_line_style(Style::default());
    t.set_placeholder_text(placeholder.to_string());
    t.move_cursor(ratatui_textarea::CursorMove::End);
    t
}

#[cfg(test)]
mod tests {
    use super::wrap_words;

    #[test]
    fn words_wrap_at_spaces_and_a_long_word_is_broken() {
        assert_eq!(
            wrap_words("2 order(s) of the user pending or executing", 20),
            ["2 order(s) of the", "user pending or", "executing"]
        );
        assert_eq!(wrap_words("(SQLSTATE 55P03)", 8), ["(SQLSTAT", "E 55P03)"]);
        assert_eq!(wrap_words("", 8), [""]);
    }
}
