//! The blast radius overlay: where a bad burst is, found from the book alone. Executions per
//! minute of the book's last day (for the symbol of the suspicion under the cursor), with
//! the suspicion's minutes marked, and the suspicions of repeated executions; enter turns
//! the one under the cursor into the orders filter and selects exactly its orders, for a
//! pre-check and a batch.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Sparkline, Wrap};

use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::keys::EventKeys;
use crate::console::panes::{Pane, orders};
use crate::console::protocol::{BlastData, Command, RequestId};
use crate::console::widgets::centered;
use crate::core::blast::{REPEAT_WITHIN_SECONDS, Suspicion, per_minute};
use crate::core::keys::KeyAction;
use crate::core::sanitize;

/// The overlay's state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BlastView {
    /// The request in flight.
    pub request: Option<RequestId>,
    /// What came back.
    pub data: Option<BlastData>,
    /// Why it could not be read.
    pub error: Option<String>,
    /// The suspicion under the cursor.
    pub cursor: usize,
}

/// Opens it and asks the worker.
pub(crate) fn open(app: &mut App) -> Effects {
    let id = app.id();
    app.blast = Some(BlastView { request: Some(id), ..BlastView::default() });
    Effects::with(vec![Command::BlastRadius { id }])
}

/// The worker's answer.
pub(crate) fn on_answer(app: &mut App, id: RequestId, result: Result<BlastData, String>) -> Effects {
    let Some(v) = app.blast.as_mut().filter(|v| v.request == Some(id)) else { return Effects::none() };
    v.request = None;
    match result {
        Ok(d) => v.data = Some(d),
        Err(e) => v.error = Some(e),
    }
    Effects::redraw()
}

/// A key while it is open: up and down pick a suspicion, enter takes it, the rest closes.
pub(crate) fn key(app: &mut App, key: crossterm::event::KeyEvent) -> Effects {
    let Some(v) = app.blast.as_mut() else { return Effects::none() };
    let n = v.data.as_ref().map_or(0, |d| d.suspicions.len());
    match app.keymap.dialog_action(&key).or_else(|| app.keymap.action(&key)) {
        Some(KeyAction::Down) => {
            v.cursor = (v.cursor + 1).min(n.saturating_sub(1));
            Effects::redraw()
        }
        Some(KeyAction::Up) => {
            v.cursor = v.cursor.saturating_sub(1);
            Effects::redraw()
        }
        Some(KeyAction::Accept) => match v.data.as_ref().and_then(|d| d.suspicions.get(v.cursor)).cloned() {
            Some(s) => take(app, &s),
            None => Effects::redraw(),
        },
        _ => {
            let mut e = Effects::redraw();
            if let Some(id) = v.request {
                e.commands.push(Command::Cancel { id });
            }
            app.blast = None;
            e
        }
    }
}

/// The suspicion becomes the orders filter, and its orders the selection.
fn take(app: &mut App, s: &Suspicion) -> Effects {
    let text = s.filter();
    let Ok(query) = orders::parse_filter(&text) else {
        return app.say(format!("The suspicion's filter could not be read: {text}"), true);
    };
    app.blast = None;
    app.orders.filter_text = text;
    app.orders.query = query;
    let mut e = orders::reload(app);
    app.orders.keep = None;
    app.orders.selected = s.orders.iter().copied().collect();
    app.orders.all_matching = false;
    app.focus_pane(Pane::Orders);
    let k = Keys(&app.keymap);
    let said = app.say(
        format!(
            "Selected the {} suspected repeated executions of {} ({}–{}): {} pre-checks one, {} rolls them back as a batch",
            s.orders.len(),
            sanitize::line(&s.symbol),
            s.from.format("%H:%M:%S"),
            s.to.format("%H:%M:%S"),
            k.of(KeyAction::Precheck),
            k.of(KeyAction::RollbackBatch)
        ),
        false,
    );
    e.redraw |= said.redraw;
    e
}

/// Draws it over the screen.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(v) = &app.blast else { return };
    let k = Keys(&app.keymap);
    let rect = centered(area, area.width.min(120), area.height.saturating_sub(2).min(22));
    frame.render_widget(Clear, rect);
    let title = format!(
        " Blast radius · the book's last day · {} takes a suspicion · {} closes ",
        k.of(KeyAction::Accept),
        k.of(KeyAction::Dismiss)
    );
    let block = Block::bordered().title(title).border_type(BorderType::Double);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let Some(d) = &v.data else {
        let text = match &v.error {
            Some(e) => Line::from(Span::styled(
                format!(" Could not read the book: {}", sanitize::line(e)),
                Style::new().fg(Color::Red),
            )),
            None => Line::from(" reading the book's last day…"),
        };
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), inner);
        return;
    };
    let current = d.suspicions.get(v.cursor);
    let symbol = current.map(|s| s.symbol.as_str());
    let minutes = per_minute(&d.per_minute, symbol);
    let [heading, spark, marks, _, list] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(4),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(inner);

    // Minutes folded into the columns there are: each bar is its bucket's busiest minute.
    let width = usize::from(spark.width.max(1));
    let per = minutes.len().div_ceil(width).max(1);
    let bars: Vec<u64> = minutes.chunks(per).map(|c| c.iter().map(|m| m.1).max().unwrap_or(0)).collect();
    let peak = minutes.iter().max_by_key(|m| m.1);
    let what = symbol.map_or("all symbols".to_string(), |s| sanitize::line(s).into_owned());
    let heading_text = match (peak, minutes.first(), minutes.last()) {
        (Some(p), Some(first), Some(last)) => format!(
            " Executions per minute of {what}, {}–{} UTC: peak {} at {}",
            first.0.format("%H:%M"),
            last.0.format("%H:%M"),
            p.1,
            p.0.format("%H:%M")
        ),
        _ => format!(" No executions of {what} on the book's last day"),
    };
    frame.render_widget(Paragraph::new(heading_text), heading);
    frame.render_widget(Sparkline::default().data(&bars).style(Style::new().fg(Color::Cyan)), spark);
    // The suspicion's minutes, marked under the bars that hold them.
    if let Some(s) = current {
        let mark: String = minutes
            .chunks(per)
            .map(|c| {
                let hit = c.iter().any(|m| m.0 + chrono::Duration::minutes(1) > s.from && m.0 <= s.to);
                if hit { '▲' } else { ' ' }
            })
            .collect();
        frame.render_widget(
            Paragraph::new(Span::styled(mark, Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))),
            marks,
        );
    }
    let mut lines: Vec<Line> = Vec::new();
    if d.suspicions.is_empty() {
        lines.push(Line::from(format!(
            " No repeated executions: no order of the day has a twin (same user, symbol, side and quantity \
             within {REPEAT_WITHIN_SECONDS} s, another idempotency key)."
        )));
    } else {
        lines.push(Line::from(Span::styled(
            format!(
                " Suspected repeated executions (same user, symbol, side, quantity within {REPEAT_WITHIN_SECONDS} s, \
                 another idempotency key):"
            ),
            Style::new().fg(Color::Gray),
        )));
        for (i, s) in d.suspicions.iter().enumerate() {
            let cursor = if i == v.cursor { "▶" } else { " " };
            let text = format!(
                "{cursor} ▲ {} {}–{} · {} executions of {} repeated orders · {} user(s) · {}",
                sanitize::line(&s.symbol),
                s.from.format("%H:%M:%S"),
                s.to.format("%H:%M:%S"),
                s.orders.len(),
                s.groups,
                s.users,
                s.filter()
            );
            let style = if i == v.cursor { Style::new().add_modifier(Modifier::BOLD) } else { Style::new() };
            lines.push(Line::from(Span::styled(text, style)));
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), list);
}
