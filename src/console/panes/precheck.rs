//! The Pre-check pane: every check of `rollback_precheck` for the order under the cursor,
//! run in one round trip, with the baseline the post-check compares the rollback with.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use uuid::Uuid;

use crate::console::app::{App, Effects, Load};
use crate::console::hints::Keys;
use crate::console::panes::{Pane, is_movement, scroll_detail};
use crate::console::protocol::{Command, RequestId};
use crate::console::widgets::{duration_text, fit, pane_block, short, wrap_words};
use crate::core::contract::{Check, Precheck};
use crate::core::format::money;
use crate::core::keys::KeyAction;
use crate::core::sanitize;

/// A pre-check and what it was for.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecheckView {
    /// The order.
    pub order: Uuid,
    /// Its user.
    pub user: Uuid,
    /// The result.
    pub result: Precheck,
    /// When it came back.
    pub at: DateTime<Utc>,
}

/// The keys the footer names.
pub(crate) const HINTS: &[(KeyAction, &str)] = &[(KeyAction::Refresh, "refresh"), (KeyAction::Cancel, "cancel")];

/// Keys: movement scrolls the checks while focused; pre-check (the order under the cursor)
/// and cancel (asked after the flow) wherever the focus is on the rollback screen.
pub(crate) fn key(app: &mut App, action: KeyAction, focused: bool) -> Option<Effects> {
    match action {
        a if is_movement(a) && focused => Some(scroll_detail(app, a)),
        KeyAction::Precheck => Some(start(app)),
        KeyAction::Cancel => {
            let Load::Loading { id, .. } = app.precheck else { return None };
            app.precheck = Load::Cancelled;
            Some(Effects::with(vec![Command::Cancel { id }]))
        }
        _ => None,
    }
}

fn start(app: &mut App) -> Effects {
    let Some(o) = app.orders.current().cloned() else {
        return app.say("No order under the cursor.", true);
    };
    let id = app.id();
    app.precheck = Load::Loading { id, since: app.now };
    app.detail = Pane::Precheck;
    Effects::with(vec![Command::Precheck { id, order: o.id, user: o.user_id }])
}

/// A pre-check from the worker; true when it was the pane's.
pub(crate) fn on_answer(
    app: &mut App,
    id: RequestId,
    order: Uuid,
    user: Uuid,
    result: &Result<Precheck, String>,
) -> bool {
    if !matches!(app.precheck, Load::Loading { id: i, .. } if i == id) {
        return false;
    }
    app.detail_scroll = 0;
    app.precheck = match result {
        Ok(p) => Load::Loaded(PrecheckView { order, user, result: p.clone(), at: app.now }),
        Err(e) => Load::Failed(e.clone()),
    };
    true
}

/// The pane's pre-check was cancelled on the server; true when it was the pane's.
pub(crate) fn on_cancelled(app: &mut App, id: RequestId) -> bool {
    if !matches!(app.precheck, Load::Loading { id: i, .. } if i == id) {
        return false;
    }
    app.precheck = Load::Cancelled;
    true
}

/// The Pre-check pane.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let k = Keys(&app.keymap);
    let (title, lines): (String, Vec<Line>) = match &app.precheck {
        Load::Idle => (
            "Pre-check".into(),
            vec![
                Line::from(format!(" Put the cursor on an order and press {}.", k.with_others(KeyAction::Precheck))),
                Line::from(" Every check runs in one round trip; its baseline is"),
                Line::from(" what the post-check compares the rollback with."),
            ],
        ),
        Load::Loading { since, .. } => (
            "Pre-check".into(),
            vec![Line::from(format!(
                " pre-checking… {} ({} to cancel)",
                duration_text(app.now - *since),
                k.of(KeyAction::Cancel)
            ))],
        ),
        Load::Failed(e) => (
            "Pre-check".into(),
            vec![Line::from(Span::styled(
                format!(" The pre-check could not run: {}", sanitize::line(e)),
                Style::new().fg(Color::Red),
            ))],
        ),
        Load::Cancelled => ("Pre-check".into(), vec![Line::from(" Cancelled.")]),
        Load::Loaded(v) => {
            // The order as the list last loaded it: rolled back after this pre-check, the
            // pre-check's READY no longer holds, whatever it said then.
            let rolled_back_since = app
                .orders
                .rows
                .iter()
                .find(|r| r.id == v.order)
                .filter(|r| r.status == "rolled_back")
                .and_then(|r| r.rolled_back_at)
                .filter(|at| *at > v.at);
            let mut lines = vec![Line::from(vec![
                Span::raw(" "),
                if rolled_back_since.is_some() {
                    Span::styled(
                        " STALE ",
                        Style::new().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD),
                    )
                } else if v.result.ready {
                    Span::styled(" READY ", Style::new().fg(Color::Black).bg(Color::Green).add_modifier(Modifier::BOLD))
                } else {
                    Span::styled(
                        " NOT READY ",
                        Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
                    )
                },
                Span::raw(format!("  at {}", v.at.format("%H:%M:%S UTC"))),
            ])];
            // The money first, then the failing checks, then the rest: on a small screen
            // what is cut is what passed.
            if let Some(f) = v.result.figures() {
                lines.push(Line::from(format!(
                    " Baseline: balance {}, margin {}, {} open",
                    money(f.balance),
                    money(f.margin_used),
                    f.open_positions
                )));
                let group = if f.transaction_id.is_some() {
                    format!(" · group of {}: {}", f.group.order_ids.len(), money(f.group.expected_refund))
                } else {
                    String::new()
                };
                // Not ready: nothing would be given back now; the figures are the execution's.
                lines.push(Line::from(if v.result.ready {
                    format!(
                        " Refund {}, margin back {}{group}",
                        money(f.expected_refund),
                        money(f.expected_margin_release)
                    )
                } else {
                    format!(
                        " Not ready: no refund now (execution took {}, margin {})",
                        money(f.expected_refund),
                        money(f.expected_margin_release)
                    )
                }));
            }
            let stale = match (rolled_back_since, app.rollback_since(Some(v.at))) {
                (Some(at), _) => Some(format!(
                    " Stale: this order was rolled back at {} · {} re-runs",
                    at.format("%H:%M:%S"),
                    k.of(KeyAction::Precheck)
                )),
                // Some rollback since, of this order or another (it may share the account).
                (None, Some(at)) => Some(format!(
                    " Maybe stale: some order rolled back at {} · {} re-runs",
                    at.format("%H:%M:%S"),
                    k.of(KeyAction::Precheck)
                )),
                (None, None) => None,
            };
            if let Some(text) = stale {
                lines.push(Line::from(Span::styled(text, Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD))));
            }
            let mut checks: Vec<&Check> = v.result.checks.iter().collect();
            checks.sort_by_key(|c| c.passed);
            lines.extend(check_lines(&checks, area.width.saturating_sub(2)));
            (format!("Pre-check · order {} · user {}", short(v.order), short(v.user)), lines)
        }
    };
    let mut block = pane_block(app, Pane::Precheck, title);
    if app.detail_scroll > 0 {
        let up = k.of(KeyAction::Up);
        block = block.title_bottom(Line::from(format!(" ↑ {} more ({up}) ", app.detail_scroll)).right_aligned());
    }
    // Wrapped, so the baseline's amounts are never cut; the check lines already fit.
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((app.detail_scroll, 0)).block(block),
        area,
    );
}

/// PASS in green, FAIL in red.
pub(super) fn pass(passed: bool) -> Span<'static> {
    if passed {
        Span::styled("PASS", Style::new().fg(Color::Green).add_modifier(Modifier::BOLD))
    } else {
        Span::styled("FAIL", Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD))
    }
}

/// One line per check. A passing check's detail too long for `room` columns ends in a
/// visible '…' (details carry amounts, and a silently cut amount reads as another amount);
/// a failing check's detail is kept whole, for the paragraph to wrap.
pub(super) fn check_lines(checks: &[&Check], room: u16) -> Vec<Line<'static>> {
    let width = checks.iter().map(|c| sanitize::line(&c.check).chars().count()).max().unwrap_or(0);
    let detail_room = room.saturating_sub(u16::try_from(width + 7).unwrap_or(u16::MAX)).max(2);
    let indent = " ".repeat(width + 7);
    checks
        .iter()
        .flat_map(|c| {
            let detail = sanitize::line(c.detail.as_deref().unwrap_or("")).into_owned();
            // A failing check's detail is kept whole, wrapped under its own column.
            let parts = if c.passed { vec![fit(&detail, detail_room)] } else { wrap_words(&detail, detail_room) };
            let mut parts = parts.into_iter();
            let first = Line::from(vec![
                Span::raw(" "),
                pass(c.passed),
                Span::raw(format!(" {:<width$} ", sanitize::line(&c.check), width = width)),
                Span::styled(parts.next().unwrap_or_default(), Style::new().fg(Color::Gray)),
            ]);
            std::iter::once(first)
                .chain(parts.map(|p| {
                    Line::from(vec![Span::raw(indent.clone()), Span::styled(p, Style::new().fg(Color::Gray))])
                }))
                .collect::<Vec<_>>()
        })
        .collect()
}
