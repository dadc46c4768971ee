//! Where each pane goes on a screen of a given size. Pure geometry, shared by drawing and
//! by mouse hit-testing, so a click lands on what was drawn.

use ratatui::layout::{Constraint, Layout, Rect};

/// The smallest screen the console draws on.
pub const MIN_WIDTH: u16 = 80;
/// The smallest screen the console draws on.
pub const MIN_HEIGHT: u16 = 24;
/// The detail pane's least height below 120x30 (six lines of text in its borders): a
/// pre-check's verdict and first checks, a rollback's first lines.
const DETAIL_MIN_ROWS: u16 = 8;

/// The rectangles of one screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    /// Incident, level, phase, database, maintenance.
    pub header: Rect,
    /// The Orders pane (with its filter line).
    pub orders: Rect,
    /// Tabs over the detail area (narrow screens only).
    pub tabs: Option<Rect>,
    /// Pre-check / Rollback / Post-check (and Dashboard on narrow screens).
    pub detail: Rect,
    /// The Dashboard, when the screen is wide enough to show it beside the detail.
    pub dashboard: Option<Rect>,
    /// Keys that work here.
    pub footer: Rect,
}

impl Areas {
    /// Computes the areas; None when the screen is below 80x24. Below 120x30 the orders
    /// and the detail share the height: `orders_first` (the list has the focus and no
    /// rollback is open) gives the list most of it, else the detail gets most, so a
    /// rollback's plan, confirmation and result are read whole.
    pub fn of(width: u16, height: u16, orders_first: bool) -> Option<Areas> {
        let [header, body, footer] = frame_rows(width, height)?;
        if width >= 120 && height >= 30 {
            let [orders, right] =
                Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body);
            let [detail, dashboard] =
                Layout::vertical([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(right);
            Some(Areas { header, orders, tabs: None, detail, dashboard: Some(dashboard), footer })
        } else {
            let share = if orders_first { 35 } else { 55 };
            let detail_rows = (body.height.saturating_sub(1) * share / 100).max(DETAIL_MIN_ROWS);
            let [orders, tabs, detail] =
                Layout::vertical([Constraint::Min(7), Constraint::Length(1), Constraint::Length(detail_rows)])
                    .areas(body);
            Some(Areas { header, orders, tabs: Some(tabs), detail, dashboard: None, footer })
        }
    }

    /// Rows of orders the Orders pane shows (borders, filter line and column titles off).
    pub fn order_rows(&self) -> usize {
        self.orders.height.saturating_sub(4) as usize
    }

    /// The first screen row of the order list.
    pub fn first_order_row(&self) -> u16 {
        self.orders.y + 3
    }
}

/// The rectangles of the incident screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentAreas {
    /// As on the rollback screen.
    pub header: Rect,
    /// Tabs over the single pane (narrow screens only).
    pub tabs: Option<Rect>,
    /// Where each pane goes; on narrow screens they share one rectangle and only the
    /// focused one is drawn.
    pub checklist: Rect,
    /// The timeline.
    pub timeline: Rect,
    /// The team.
    pub team: Rect,
    /// The messages.
    pub messages: Rect,
    /// Keys that work here.
    pub footer: Rect,
}

impl IncidentAreas {
    /// Computes the areas; None when the screen is below 80x24.
    pub fn of(width: u16, height: u16) -> Option<IncidentAreas> {
        let [header, body, footer] = frame_rows(width, height)?;
        if width >= 120 && height >= 30 {
            let [left, right] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(body);
            let [checklist, team] =
                Layout::vertical([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(left);
            let [messages, timeline] =
                Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(right);
            Some(IncidentAreas { header, tabs: None, checklist, timeline, team, messages, footer })
        } else {
            let [tabs, pane] = Layout::vertical([Constraint::Length(1), Constraint::Min(6)]).areas(body);
            Some(IncidentAreas {
                header,
                tabs: Some(tabs),
                checklist: pane,
                timeline: pane,
                team: pane,
                messages: pane,
                footer,
            })
        }
    }
}

/// Header, body and footer of either screen; None below 80x24.
pub fn frame_rows(width: u16, height: u16) -> Option<[Rect; 3]> {
    if width < MIN_WIDTH || height < MIN_HEIGHT {
        return None;
    }
    let area = Rect::new(0, 0, width, height);
    Some(Layout::vertical([Constraint::Length(2), Constraint::Min(10), Constraint::Length(1)]).areas(area))
}

/// Whether a point is in a rectangle.
pub fn contains(r: Rect, x: u16, y: u16) -> bool {
    x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height
}
