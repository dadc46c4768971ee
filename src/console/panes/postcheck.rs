//! The Post-check pane: after a rollback, every check of `rollback_postcheck`, expected
//! (from the pre-check's baseline) against actual, exactly.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};
use serde_json::Value;

use crate::console::app::{App, Effects, Load};
use crate::console::hints::Keys;
use crate::console::panes::precheck::pass;
use crate::console::panes::{Pane, is_movement, scroll_detail};
use crate::console::widgets::{fit, pane_block};
use crate::core::contract::{Check, Postcheck, RollbackResult};
use crate::core::format::money;
use crate::core::keys::KeyAction;
use crate::core::sanitize;

/// The last rollback and its post-check.
#[derive(Debug, Clone, PartialEq)]
pub struct PostcheckView {
    /// The rollback.
    pub rollback: RollbackResult,
    /// Its post-check (none when refused).
    pub postcheck: Option<Postcheck>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The keys the footer names.
pub(crate) const HINTS: &[(KeyAction, &str)] = &[(KeyAction::Refresh, "refresh"), (KeyAction::Cancel, "cancel")];

/// Keys: movement scrolls the checks while focused.
pub(crate) fn key(app: &mut App, action: KeyAction, focused: bool) -> Option<Effects> {
    (is_movement(action) && focused).then(|| scroll_detail(app, action))
}

/// The Post-check pane.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Load::Loaded(v) = &app.postcheck else {
        let block = pane_block(app, Pane::Postcheck, "Post-check".into());
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(" After a rollback, every check of rollback_postcheck shows here:"),
                Line::from(" expected (from the pre-check's baseline) against actual, exactly."),
            ])
            .wrap(Wrap { trim: false })
            .block(block),
            area,
        );
        return;
    };
    let verdict = match &v.postcheck {
        Some(p) if p.successful => Span::styled(" PASSED ", Style::new().fg(Color::Black).bg(Color::Green).bold()),
        Some(_) => Span::styled(" FAILED ", Style::new().fg(Color::White).bg(Color::Red).bold()),
        None => Span::styled(" NOT RUN ", Style::new().fg(Color::Black).bg(Color::Yellow)),
    };
    let mut block = pane_block(app, Pane::Postcheck, format!("Post-check · {}", v.at.format("%H:%M:%S UTC")));
    let inner = block.inner(area);
    let r = &v.rollback;
    // The count beside the verdict; the amounts on their own line, given the rows they need
    // so that no amount is cut.
    let (what, amounts) = if r.success {
        (
            format!(" {} order(s) rolled back", r.order_ids.as_ref().map_or(0, Vec::len)),
            format!(
                " refunded {} · margin released {}",
                money(r.refunded.unwrap_or_default()),
                money(r.margin_released.unwrap_or_default())
            ),
        )
    } else {
        (String::new(), format!(" refused: {}", sanitize::line(r.error_code.as_deref().unwrap_or("unknown"))))
    };
    let width = usize::from(inner.width.max(1));
    let amount_rows = amounts.chars().count().div_ceil(width).clamp(1, 3) as u16;
    let [head, table] = Layout::vertical([Constraint::Length(1 + amount_rows), Constraint::Min(1)]).areas(inner);
    // Checks past the pane's edge (failing ones come first): j / k scroll them.
    let shown = usize::from(table.height.saturating_sub(1));
    let total = v.postcheck.as_ref().map_or(0, |p| p.checks.len());
    let below = total.saturating_sub(usize::from(app.detail_scroll) + shown);
    if below > 0 || app.detail_scroll > 0 {
        block = block.title_bottom(
            Line::from(format!(
                " {} above · {below} below ({}/{}) ",
                app.detail_scroll,
                Keys(&app.keymap).of(KeyAction::Down),
                Keys(&app.keymap).of(KeyAction::Up)
            ))
            .right_aligned(),
        );
    }
    frame.render_widget(block, area);
    text(frame, head, vec![Line::from(vec![Span::raw(" "), verdict, Span::raw(what)]), Line::from(amounts)]);
    if let Some(p) = &v.postcheck {
        checks_table(app, p, frame, table);
    }
}

/// Expected and actual of every check, failing ones first (on a small screen what is cut
/// is what passed), from the scroll position down.
fn checks_table(app: &App, p: &Postcheck, frame: &mut Frame, table: Rect) {
    let mut checks: Vec<&Check> = p.checks.iter().collect();
    checks.sort_by_key(|c| c.passed);
    // Expected and actual side by side, whole when they fit: the check names give way first,
    // and whatever is cut ends in a visible '…', so two cut amounts never look alike or apart.
    // [check, expected, actual] of each row, as shown.
    let cells: Vec<[String; 3]> = checks
        .iter()
        .map(|c| {
            [sanitize::line(&c.check).into_owned(), value_text(c.expected.as_ref()), value_text(c.actual.as_ref())]
        })
        .collect();
    let widest = |k: usize, least: usize| cells.iter().map(|r| r[k].chars().count()).fold(least, usize::max) as u16;
    let (check_need, expected_need, actual_need) = (widest(0, 5), widest(1, 16), widest(2, 6));
    let avail = table.width.saturating_sub(4 + 3);
    let check_w = check_need.min(avail.saturating_sub(expected_need + actual_need).max(12));
    let rest = avail.saturating_sub(check_w);
    let expected_w = expected_need.min(rest.saturating_sub(actual_need.min(rest / 2)));
    let actual_w = rest.saturating_sub(expected_w).max(1);
    let rows: Vec<Row> = checks
        .into_iter()
        .zip(&cells)
        .skip(usize::from(app.detail_scroll))
        .map(|(c, [name, expected, actual])| {
            let style = if c.passed { Style::new() } else { Style::new().fg(Color::Red).add_modifier(Modifier::BOLD) };
            Row::new(vec![
                Cell::from(pass(c.passed)),
                Cell::from(fit(name, check_w)),
                Cell::from(fit(expected, expected_w)),
                Cell::from(fit(actual, actual_w)),
            ])
            .style(style)
        })
        .collect();
    let header = Row::new(vec!["", "check", "expected", "actual"]).style(Style::new().fg(Color::Gray).bold());
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(4),
                Constraint::Length(check_w),
                Constraint::Length(expected_w),
                Constraint::Min(actual_w),
            ],
        )
        .header(header),
        table,
    );
}

/// An expected or actual figure of a check for people: money as money, nothing as '-'.
pub(crate) fn value_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => {
            s.parse::<rust_decimal::Decimal>().map(money).unwrap_or_else(|_| sanitize::line(s).into_owned())
        }
        Some(Value::Null) | None => "-".into(),
        Some(other) => sanitize::line(&other.to_string()).into_owned(),
    }
}

fn text(frame: &mut Frame, area: Rect, lines: Vec<Line<'static>>) {
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}
