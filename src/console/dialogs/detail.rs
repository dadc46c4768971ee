//! The detail overlay: the whole of what is under the cursor — an order with its full ids,
//! every check of a pre-check or post-check with its whole text, an error — wrapped and
//! scrollable, never cut; `y` copies its id (or its text), esc closes.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

use crate::console::app::{App, Effects, Load};
use crate::console::hints::Keys;
use crate::console::incident::JournalRequest;
use crate::console::keys::EventKeys;
use crate::console::panes::Pane;
use crate::console::widgets::centered;
use crate::core::contract::{Check, OrderRow};
use crate::core::keys::KeyAction;
use crate::core::sanitize;

/// What the overlay shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    /// Its title: what it is.
    pub title: String,
    /// The whole text, line by line (wrapped when drawn).
    pub lines: Vec<String>,
    /// What `y` copies: the full id, or the text.
    pub copy: Copied,
    /// Lines scrolled past.
    pub scroll: u16,
}

/// What `y` copies, and how it is named: by its kind in the title ("order id"), with
/// itself in the footer once copied ("order id 0b5e…").
#[derive(Debug, Clone, PartialEq)]
pub struct Copied {
    /// Its kind, for the title.
    pub kind: &'static str,
    /// What the footer calls it once copied.
    pub what: String,
    /// The text copied.
    pub text: String,
}

impl Copied {
    fn id(kind: &'static str, id: impl std::fmt::Display) -> Copied {
        Copied { kind, what: format!("{kind} {id}"), text: id.to_string() }
    }
}

/// The detail of what is under the cursor in the focused pane; `Err` says why there is none.
pub(crate) fn of_focus(app: &App) -> Result<Detail, String> {
    match app.focus {
        Pane::Orders => match (&app.orders.error, app.orders.current()) {
            (Some(e), _) => Ok(error("Orders could not be loaded", e)),
            (None, Some(r)) => Ok(order(r)),
            (None, None) => Err("No order under the cursor.".into()),
        },
        Pane::Precheck => match &app.precheck {
            Load::Loaded(v) => {
                let mut lines = vec![
                    format!("order {}", v.order),
                    format!("user  {}", v.user),
                    format!("ready: {}  at {}", v.result.ready, v.at.format("%Y-%m-%d %H:%M:%S UTC")),
                ];
                if let Some(code) = &v.result.error_code {
                    lines.push(format!("error code: {code}"));
                }
                lines.push(String::new());
                lines.extend(checks(&v.result.checks));
                if let Some(b) = &v.result.baseline {
                    lines.push(String::new());
                    lines.push(format!("baseline: {b}"));
                }
                Ok(Detail { title: "Pre-check".into(), lines, copy: Copied::id("order id", v.order), scroll: 0 })
            }
            Load::Failed(e) => Ok(error("The pre-check failed", e)),
            _ => Err("No pre-check to show: p pre-checks the order under the cursor.".into()),
        },
        Pane::Postcheck => match &app.postcheck {
            Load::Loaded(v) => {
                let r = &v.rollback;
                let mut lines = vec![
                    format!("rollback: success {} · mode {}", r.success, r.mode.as_deref().unwrap_or("-")),
                    format!("orders: {}", r.order_ids.as_ref().map_or("-".into(), |ids| join_ids(ids))),
                ];
                if let Some(m) = &r.message {
                    lines.push(format!("message: {m}"));
                }
                if let Some(why) = &r.reply_lost {
                    lines.push(format!("reply lost: {why} (confirmed from the database)"));
                }
                if let Some(p) = &v.postcheck {
                    lines.push(format!("post-check successful: {}", p.successful));
                    lines.push(String::new());
                    lines.extend(checks(&p.checks));
                }
                let ids = r.order_ids.as_ref().map_or(String::new(), |ids| join_ids(ids));
                Ok(Detail {
                    title: "Rollback and post-check".into(),
                    lines,
                    copy: Copied { kind: "order ids", what: "order ids".into(), text: ids },
                    scroll: 0,
                })
            }
            Load::Failed(e) => Ok(error("The rollback failed", e)),
            _ => Err("No rollback to show yet.".into()),
        },
        _ => Err("Details show for the Orders, Pre-check and Post-check panes.".into()),
    }
}

fn join_ids(ids: &[uuid::Uuid]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" ")
}

/// An order, every field and its ids in full.
fn order(r: &OrderRow) -> Detail {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let time =
        |t: Option<chrono::DateTime<chrono::Utc>>| opt(t.map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()));
    let lines = vec![
        format!("order       {}", r.id),
        format!("user        {}", r.user_id),
        format!("transaction {}", opt(r.transaction_id.map(|t| t.to_string()))),
        format!("symbol {} · {} {} · {}", r.symbol, r.side, r.order_type, r.status),
        format!("quantity {} · price {}", r.quantity, opt(r.price.map(|p| p.to_string()))),
        format!(
            "cost {} · commission {}",
            opt(r.total_cost.map(|c| c.to_string())),
            opt(r.commission.map(|c| c.to_string()))
        ),
        format!("created     {}", time(Some(r.created_at))),
        format!("executed    {}", time(r.executed_at)),
        format!("rolled back {}", time(r.rolled_back_at)),
        format!("failure: {}", opt(r.failure_reason.clone())),
        format!("rollback reason: {}", opt(r.rolled_back_reason.clone())),
    ];
    Detail { title: "Order".into(), lines, copy: Copied::id("order id", r.id), scroll: 0 }
}

/// Every check, whole: its name, PASS or FAIL, its text, what was expected and found.
fn checks(checks: &[Check]) -> Vec<String> {
    let mut lines = Vec::new();
    for c in checks {
        lines.push(format!("{} {}", if c.passed { "PASS" } else { "FAIL" }, c.check));
        if let Some(d) = &c.detail {
            lines.push(format!("    {d}"));
        }
        if let (Some(e), Some(a)) = (&c.expected, &c.actual) {
            lines.push(format!("    expected {e} · actual {a}"));
        }
        for v in c.violations.iter().flatten() {
            lines.push(format!("    violation {v}"));
        }
    }
    lines
}

fn error(title: &str, e: &str) -> Detail {
    let copy = Copied { kind: "error", what: "the error".into(), text: e.to_string() };
    Detail { title: title.into(), lines: vec![e.to_string()], copy, scroll: 0 }
}

/// A key while it is open: `y` copies, movement scrolls, anything else closes it.
pub(crate) fn key(app: &mut App, key: crossterm::event::KeyEvent) -> Effects {
    let Some(d) = app.details.as_mut() else { return Effects::none() };
    match app.keymap.dialog_action(&key).or_else(|| app.keymap.action(&key)) {
        Some(KeyAction::Yes | KeyAction::Copy) => {
            let Copied { what, text, .. } = d.copy.clone();
            Effects::journal(vec![JournalRequest::Clipboard { what, text }])
        }
        Some(KeyAction::Down) => {
            d.scroll = d.scroll.saturating_add(1);
            Effects::redraw()
        }
        Some(KeyAction::Up) => {
            d.scroll = d.scroll.saturating_sub(1);
            Effects::redraw()
        }
        Some(KeyAction::PageDown) => {
            d.scroll = d.scroll.saturating_add(10);
            Effects::redraw()
        }
        Some(KeyAction::PageUp) => {
            d.scroll = d.scroll.saturating_sub(10);
            Effects::redraw()
        }
        _ => {
            app.details = None;
            Effects::redraw()
        }
    }
}

/// Draws it over the screen.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(d) = &app.details else { return };
    let k = Keys(&app.keymap);
    let width = area.width.min(120);
    let inner_width = usize::from(width.saturating_sub(2).max(1));
    let lines: Vec<Line> = d
        .lines
        .iter()
        .map(|l| {
            let text = sanitize::line(l).into_owned();
            if text.starts_with("FAIL") {
                Line::from(Span::styled(text, Style::new().fg(Color::Red)))
            } else {
                Line::from(text)
            }
        })
        .collect();
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner_width)).sum();
    let height = u16::try_from(rows + 2).unwrap_or(u16::MAX).min(area.height.saturating_sub(2)).max(5);
    let rect = centered(area, width, height);
    frame.render_widget(Clear, rect);
    let title =
        format!(" {} · {} copies the {} · esc closes ", sanitize::line(&d.title), k.of(KeyAction::Copy), d.copy.kind);
    let mut block = Block::bordered().title(title).border_type(BorderType::Double);
    let shown = usize::from(height.saturating_sub(2));
    if rows > shown + usize::from(d.scroll) {
        block = block.title_bottom(Line::from(format!(" ↓ more ({}) ", k.of(KeyAction::Down))).right_aligned());
    }
    // Wrapped with its indent kept: nothing is cut, whatever the width.
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((d.scroll, 0)).block(block), rect);
}
