//! The Orders pane: the filter, a bounded window of rows around the cursor (the database
//! may hold millions; only a few hundred are ever held here, and only those on screen are
//! drawn), and the selection for a batch.

mod window;

use std::collections::{BTreeMap, HashMap, VecDeque};

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui_textarea::TextArea;
use uuid::Uuid;

use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::keys::EventKeys;
use crate::console::panes::{Pane, is_movement};
use crate::console::protocol::{Command, ConnState, PageRequest, RequestId};
use crate::console::widgets::{fit, pane_block, short, text_input};
use crate::core::batch::BatchItem;
use crate::core::contract::OrderRow;
use crate::core::format::grouped;
use crate::core::keys::KeyAction;
use crate::core::orders::{OrderQuery, OrderSort, SortColumn};
use crate::core::sanitize;

pub use crate::core::orders::filter::parse_filter;

/// Rows asked for per page.
pub const PAGE: i64 = 200;
/// Rows held at most; beyond, the far end of the window is dropped.
pub const WINDOW: usize = 600;
/// Load the next page when the cursor comes this close to an end of the window.
const MARGIN: usize = 50;

/// The Orders pane.
#[derive(Default)]
pub struct OrdersView {
    /// The filter in effect.
    pub query: OrderQuery,
    /// Its text, as typed.
    pub filter_text: String,
    /// The filter being edited, if it is.
    pub editing: Option<TextArea<'static>>,
    /// The rows held, in the list's order (`sort`).
    pub rows: VecDeque<OrderRow>,
    /// Index of the cursor in `rows`.
    pub cursor: usize,
    /// Index of the first row on screen.
    pub offset: usize,
    /// The page request in flight.
    pub loading: Option<(RequestId, PageRequest)>,
    /// There are rows below those the window holds.
    pub has_older: bool,
    /// There are rows above those the window holds.
    pub has_newer: bool,
    /// How many orders match, and whether that is a lower bound.
    pub count: Option<(i64, bool)>,
    /// The count request in flight.
    pub count_request: Option<RequestId>,
    /// Orders picked for a batch: order id -> user id.
    pub selected: BTreeMap<Uuid, Uuid>,
    /// The batch is every executed order matching the filter.
    pub all_matching: bool,
    /// Why the last load failed.
    pub error: Option<String>,
    /// A first page has been asked for since the console started.
    pub started: bool,
    /// The order to put the cursor back on when the reloaded first page holds it.
    pub keep: Option<uuid::Uuid>,
    /// When the first page on screen was answered (for "changed since").
    pub loaded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where `rows[0]` is in the whole list (0: the top), when known: "row n of N".
    pub start: Option<usize>,
    /// After a failed load: when it is tried again, and how many tries so far.
    pub retry: Option<(chrono::DateTime<chrono::Utc>, u32)>,
    /// Decimals each amount column shows ([quantity, price, cost]): the most any row held
    /// since the filter was set needs, so a column keeps one precision and its width.
    pub scales: [u32; 3],
    /// The widest [symbol, quantity, price, cost] text of any row held since the filter was
    /// set: columns keep their width from page to page.
    pub widest: [u16; 4],
    /// The list's order (newest first unless chosen).
    pub sort: OrderSort,
    /// The sort chooser is open on the filter line (a digit picks a column).
    pub choosing_sort: bool,
    /// Repeated executions among the rows held: order id -> how many twins it has (the
    /// rule of `core::blast`), from the worker after each page.
    pub repeats: HashMap<Uuid, i64>,
    /// Marks from page requests older than this one (ids grow) are from before the last
    /// reload, and are dropped: a refresh after a rollback must not get back an old mark.
    pub marks_from: RequestId,
    /// The per-minute strip over the list, when shown.
    pub per_minute: Option<PerMinute>,
}

/// Orders per minute: (minute, orders), minutes with none absent.
pub type MinuteCounts = Vec<(chrono::DateTime<chrono::Utc>, i64)>;

/// The per-minute strip: orders matching the filter per minute, counted on the server.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerMinute {
    /// The request in flight.
    pub request: Option<RequestId>,
    /// (minute, orders), minutes with none absent; or why it could not be read.
    pub data: Option<Result<MinuteCounts, String>>,
}

impl OrdersView {
    /// The order under the cursor.
    pub(crate) fn current(&self) -> Option<&OrderRow> {
        self.rows.get(self.cursor)
    }

    /// Selects or unselects the order under the cursor.
    pub(crate) fn toggle_current(&mut self) {
        if let Some(r) = self.rows.get(self.cursor) {
            if self.selected.remove(&r.id).is_none() {
                self.selected.insert(r.id, r.user_id);
            }
            self.all_matching = false;
        }
    }

    /// The explicit selection as batch items.
    pub fn selection(&self) -> Vec<BatchItem> {
        self.selected.iter().map(|(&order_id, &user_id)| BatchItem { order_id, user_id }).collect()
    }

    /// The [symbol, quantity, price, cost] texts of a row, as the columns show them.
    pub(crate) fn texts(&self, r: &OrderRow) -> [String; 4] {
        [
            sanitize::line(&r.symbol).into_owned(),
            grouped(r.quantity, self.scales[0]),
            r.price.map(|p| grouped(p, self.scales[1])).unwrap_or_default(),
            r.total_cost.map(|c| grouped(c, self.scales[2])).unwrap_or_default(),
        ]
    }

    /// A label for the filter and the order, for titles (the default order, newest first,
    /// is said only when there is no filter).
    pub(crate) fn describe_filter(&self) -> String {
        match (self.filter_text.trim().is_empty(), self.sort == OrderSort::default()) {
            (true, _) => format!("all orders, {}", self.sort.label()),
            (false, true) => self.filter_text.clone(),
            (false, false) => format!("{} · {}", self.filter_text, self.sort.label()),
        }
    }

    /// Rows the per-minute strip takes from the list.
    pub(crate) fn strip_rows(&self) -> usize {
        usize::from(self.per_minute.is_some())
    }
}

/// A filter input with the console's look.
fn filter_input(text: &str) -> TextArea<'static> {
    text_input(text, "symbol:GBPUSD status:executed from:13:02 to:13:06 user:ID tx:ID")
}

/// The keys the footer names.
pub(crate) const HINTS: &[(KeyAction, &str)] = &[
    (KeyAction::Filter, "filter"),
    (KeyAction::Precheck, "pre-check"),
    (KeyAction::Rollback, "roll back"),
    (KeyAction::RollbackGroup, "group"),
    (KeyAction::ToggleSelect, "select"),
    (KeyAction::SelectAllMatching, "all"),
    (KeyAction::RollbackBatch, "batch"),
];

/// Keys: movement while focused; the filter and the selection wherever the focus is on the
/// rollback screen; cancel (asked after the flow and the pre-check) stops a page load, then
/// forgets the selection.
pub(crate) fn key(app: &mut App, action: KeyAction, focused: bool) -> Option<Effects> {
    Some(match action {
        a if is_movement(a) && focused => movement(app, a),
        KeyAction::Filter => {
            app.focus_pane(Pane::Orders);
            app.orders.editing = Some(filter_input(&app.orders.filter_text));
            Effects::redraw()
        }
        KeyAction::Sort => {
            app.focus_pane(Pane::Orders);
            app.orders.choosing_sort = true;
            Effects::redraw()
        }
        KeyAction::PerMinute => {
            if app.orders.per_minute.take().is_some() {
                return Some(Effects::redraw());
            }
            let id = app.id();
            app.orders.per_minute = Some(PerMinute { request: Some(id), data: None });
            let rows = app.order_rows();
            app.orders.move_cursor(0, rows);
            Effects::with(vec![Command::OrdersPerMinute { id, query: app.orders.query.clone() }])
        }
        KeyAction::ToggleSelect => {
            app.orders.toggle_current();
            let rows = app.order_rows();
            app.orders.move_cursor(1, rows);
            Effects::with(more(app))
        }
        KeyAction::SelectAllMatching => {
            app.orders.selected.clear();
            app.orders.all_matching = true;
            let text = format!(
                "Batch: every executed order matching the filter ({} to roll back)",
                Keys(&app.keymap).of(KeyAction::RollbackBatch)
            );
            app.say(text, false)
        }
        KeyAction::ClearSelection => {
            app.orders.selected.clear();
            app.orders.all_matching = false;
            Effects::redraw()
        }
        KeyAction::Cancel => {
            if let Some((id, _)) = app.orders.loading.take() {
                return Some(Effects::with(vec![Command::Cancel { id }]));
            }
            if app.orders.selected.is_empty() && !app.orders.all_matching {
                return None;
            }
            app.orders.selected.clear();
            app.orders.all_matching = false;
            Effects::redraw()
        }
        _ => return None,
    })
}

fn movement(app: &mut App, action: KeyAction) -> Effects {
    let rows = app.order_rows();
    let page = rows.max(1) as isize;
    match action {
        KeyAction::Up => app.orders.move_cursor(-1, rows),
        KeyAction::Down => app.orders.move_cursor(1, rows),
        KeyAction::PageUp => app.orders.move_cursor(-page, rows),
        KeyAction::PageDown => app.orders.move_cursor(page, rows),
        // The true end of the list, not the last row loaded: the oldest page is asked for.
        KeyAction::Bottom if app.orders.has_older => {
            let id = app.id();
            app.orders.loading = Some((id, PageRequest::Last));
            app.orders.keep = None;
            return Effects::with(vec![Command::LoadOrders {
                id,
                query: app.orders.query.clone(),
                sort: app.orders.sort,
                page: PageRequest::Last,
                limit: PAGE,
            }]);
        }
        KeyAction::Top => {
            if app.orders.has_newer {
                // The window does not start at the newest order: load the top again.
                let e = reload(app);
                app.orders.keep = None;
                return e;
            }
            app.orders.set_cursor(0, rows)
        }
        _ => app.orders.set_cursor(usize::MAX, rows),
    }
    Effects::with(more(app))
}

/// A key while the filter is being typed: accept applies it, dismiss leaves it as it was,
/// the rest is typed.
pub(crate) fn filter_key(app: &mut App, key: KeyEvent) -> Effects {
    let action = app.keymap.dialog_action(&key);
    let Some(editor) = app.orders.editing.as_mut() else { return Effects::none() };
    // ctrl-u clears the line, as in a shell (the text area would undo instead).
    if key.code == crossterm::event::KeyCode::Char('u') && key.modifiers == crossterm::event::KeyModifiers::CONTROL {
        *editor = filter_input("");
        return Effects::redraw();
    }
    match action {
        Some(KeyAction::Dismiss) => {
            app.orders.editing = None;
            Effects::redraw()
        }
        Some(KeyAction::Accept) => {
            let text = editor.lines().join(" ");
            match parse_filter(&text) {
                Ok(query) => {
                    app.orders.editing = None;
                    app.orders.filter_text = text.trim().to_string();
                    app.orders.query = query;
                    app.orders.selected.clear();
                    app.orders.all_matching = false;
                    let e = reload(app);
                    app.orders.keep = None;
                    e
                }
                Err(e) => app.say(format!("filter: {e}"), true),
            }
        }
        _ => {
            editor.input(key);
            Effects::redraw()
        }
    }
}

/// A key while the sort chooser is open: a column's digit sorts by it (its digit again
/// reverses it); any other key closes the chooser and keeps the order.
pub(crate) fn sort_key(app: &mut App, key: KeyEvent) -> Effects {
    app.orders.choosing_sort = false;
    let column = match key.code {
        crossterm::event::KeyCode::Char(c) => c
            .to_digit(10)
            .and_then(|d| usize::try_from(d).ok())
            .and_then(|d| d.checked_sub(1))
            .and_then(|i| SortColumn::ALL.get(i).copied()),
        _ => None,
    };
    let Some(column) = column else { return Effects::redraw() };
    app.orders.sort = app.orders.sort.choose(column);
    // Another order is another list: its first page, and the cursor at its top.
    let e = reload(app);
    app.orders.keep = None;
    e
}

/// The next page, when the cursor came near an end of the window.
pub(crate) fn more(app: &mut App) -> Vec<Command> {
    match app.orders.page_needed() {
        Some(page) => {
            let id = app.id();
            app.orders.loading = Some((id, page.clone()));
            let (query, sort) = (app.orders.query.clone(), app.orders.sort);
            vec![Command::LoadOrders { id, query, sort, page, limit: PAGE }]
        }
        None => Vec::new(),
    }
}

/// The first page and the count again for a new filter or order: the old rows go at once.
pub(crate) fn reload(app: &mut App) -> Effects {
    restart(app, false)
}

/// The first page and the count again for the same filter (a refresh, after a rollback, a
/// retry): the rows on screen stay until the new ones arrive.
pub(crate) fn refresh(app: &mut App) -> Effects {
    restart(app, true)
}

/// The first page, the count and, while it shows, the per-minute strip again.
fn restart(app: &mut App, keep_rows: bool) -> Effects {
    let (a, b) = (app.id(), app.id());
    let mut commands = app.orders.restart(a, b, keep_rows).to_vec();
    if app.orders.per_minute.is_some() {
        let id = app.id();
        if let Some(p) = app.orders.per_minute.as_mut() {
            p.request = Some(id);
        }
        commands.push(Command::OrdersPerMinute { id, query: app.orders.query.clone() });
    }
    Effects::with(commands)
}

/// Repeat marks of a page's rows from the worker: each row of the page is marked or not
/// anew (a refreshed page may have lost a twin to a rollback).
pub(crate) fn on_marks(app: &mut App, id: RequestId, rows: Vec<Uuid>, marks: Vec<(Uuid, i64)>) -> Effects {
    if id < app.orders.marks_from {
        return Effects::none();
    }
    for id in rows {
        app.orders.repeats.remove(&id);
    }
    app.orders.repeats.extend(marks.into_iter().filter(|m| m.1 > 0));
    Effects::redraw()
}

/// The per-minute counts from the worker.
pub(crate) fn on_per_minute(app: &mut App, id: RequestId, result: Result<MinuteCounts, String>) -> Effects {
    let Some(p) = app.orders.per_minute.as_mut().filter(|p| p.request == Some(id)) else { return Effects::none() };
    p.request = None;
    p.data = Some(result);
    Effects::redraw()
}

/// How long to wait before the `attempt`th retry of a failed load: 1 s, doubling, at most
/// 30 s, so a database that is back is used soon and one that is not is not hammered.
fn retry_after(attempt: u32) -> chrono::Duration {
    chrono::Duration::seconds(1i64 << attempt.min(5)).min(chrono::Duration::seconds(30))
}

/// A tick: a failed load whose time has come is tried again.
pub(crate) fn on_tick(app: &mut App) -> Option<Effects> {
    let (at, _) = app.orders.retry?;
    if app.now < at || app.orders.loading.is_some() {
        return None;
    }
    Some(refresh(app))
}

/// A page from the worker.
pub(crate) fn on_page(app: &mut App, id: RequestId, page: PageRequest, rows: Vec<OrderRow>, has_more: bool) -> Effects {
    let height = app.order_rows();
    let first = page == PageRequest::First;
    if !app.orders.receive(id, page, rows, has_more, height) {
        return Effects::none();
    }
    if first {
        app.orders.loaded_at = Some(app.now);
    }
    Effects::with(more(app))
}

/// The count from the worker.
pub(crate) fn on_count(app: &mut App, id: RequestId, count: i64, capped: bool) -> Effects {
    if app.orders.count_request != Some(id) {
        return Effects::none();
    }
    app.orders.count_request = None;
    app.orders.count = Some((count, capped));
    Effects::redraw()
}

/// A request of this pane failed (None: not one of its requests).
pub(crate) fn on_failed(app: &mut App, id: RequestId, error: &str) -> Option<Effects> {
    if app.orders.loading.as_ref().map(|l| l.0) == Some(id) {
        app.orders.loading = None;
        app.orders.error = Some(error.to_string());
        let attempt = app.orders.retry.map_or(0, |(_, n)| n);
        app.orders.retry = Some((app.now + retry_after(attempt), attempt + 1));
        return Some(Effects::redraw());
    }
    if app.orders.count_request == Some(id) {
        app.orders.count_request = None;
        return Some(Effects::none());
    }
    if let Some(p) = app.orders.per_minute.as_mut().filter(|p| p.request == Some(id)) {
        p.request = None;
        p.data = Some(Err(error.to_string()));
        return Some(Effects::redraw());
    }
    None
}

/// Draws the pane.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let o = &app.orders;
    let k = Keys(&app.keymap);
    let block = block(app);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [filter, strip, table] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(o.strip_rows() as u16), Constraint::Min(1)])
            .areas(inner);
    filter_line(app, frame, filter);
    if let Some(p) = &o.per_minute {
        per_minute_strip(p, o.current().map(|r| r.created_at), k, frame, strip);
    }
    if let Some(e) = &o.error {
        let again = match o.retry {
            Some((at, n)) => format!(
                " Trying again in {} s (try {}); {} now. The header says whether the database answers.",
                (at - app.now).num_seconds().max(0),
                n + 1,
                k.of(KeyAction::Refresh)
            ),
            None => format!(" {} reloads; the header says whether the database answers.", k.of(KeyAction::Refresh)),
        };
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(Span::styled(
                    format!(" Could not load orders: {}", sanitize::line(e)),
                    Style::new().fg(Color::Red),
                )),
                Line::from(again),
            ])
            .wrap(ratatui::widgets::Wrap { trim: false }),
            table,
        );
        return;
    }
    if o.rows.is_empty() {
        let text = if !o.started && !matches!(app.conn, ConnState::Up { .. }) {
            " waiting for the database…".to_string()
        } else if app.orders_loading_first() || !o.started {
            " loading orders…".to_string()
        } else {
            format!(" No orders match the filter. {} to change it.", k.of(KeyAction::Filter))
        };
        frame.render_widget(Paragraph::new(text), table);
        return;
    }
    rows(app, frame, table);
}

/// The frame, its title (filter, count, staleness) and, on the bottom border where it hides
/// no column, whether more rows lie beyond the loaded window.
fn block(app: &App) -> Block<'static> {
    let o = &app.orders;
    let count = match (o.count, o.count_request, o.position()) {
        (Some((n, capped)), _, Some(row)) => format!("row {row} of {n}{}", if capped { "+" } else { "" }),
        (Some((n, true)), _, None) => format!("{n}+ match"),
        (Some((n, false)), _, None) => format!("{n} match"),
        (None, Some(_), _) => "counting…".into(),
        (None, None, _) => String::new(),
    };
    let mut title = if count.is_empty() {
        format!("Orders · {}", sanitize::line(&o.describe_filter()))
    } else {
        format!("Orders · {} · {}", sanitize::line(&o.describe_filter()), count)
    };
    // Someone rolled back since these rows were loaded: they may be out of date.
    if app.rollback_since(o.loaded_at).is_some() {
        title.push_str(&format!(" · stale: {} reloads", Keys(&app.keymap).of(KeyAction::Refresh)));
    }
    let more = match (o.has_newer, o.has_older, &o.loading) {
        (_, _, Some(_)) => " loading more… ",
        (true, true, _) => " ↑↓ more ",
        (true, false, _) => " ↑ more ",
        (false, true, _) => " ↓ more ",
        _ => "",
    };
    let mut block = pane_block(app, Pane::Orders, title);
    if !more.is_empty() && !o.rows.is_empty() {
        block = block.title_bottom(Line::from(Span::styled(more, Style::new().fg(Color::Gray))).right_aligned());
    }
    block
}

/// The filter line: the input while it is typed, else the filter in effect or how to set one.
fn filter_line(app: &App, frame: &mut Frame, area: Rect) {
    let o = &app.orders;
    if o.choosing_sort {
        frame.render_widget(Paragraph::new(sort_chooser(o.sort)), area);
        return;
    }
    if let Some(editor) = &o.editing {
        let [label, input] = Layout::horizontal([Constraint::Length(9), Constraint::Min(1)]).areas(area);
        frame.render_widget(Paragraph::new(Span::styled(" filter: ", Style::new().fg(Color::Cyan))), label);
        frame.render_widget(editor, input);
        return;
    }
    let text = if o.filter_text.is_empty() {
        Line::from(vec![
            Span::styled(
                format!(" {} ", Keys(&app.keymap).of(KeyAction::Filter)),
                Style::new().fg(Color::Black).bg(Color::Gray),
            ),
            // Not a filter in effect: said in words, the example marked as one.
            Span::styled(
                " no filter: every order · e.g. GBPUSD executed from:13:02 to:13:06",
                Style::new().fg(Color::DarkGray).add_modifier(Modifier::ITALIC),
            ),
        ])
    } else {
        Line::from(Span::styled(format!(" filter: {}", sanitize::line(&o.filter_text)), Style::new().fg(Color::Cyan)))
    };
    frame.render_widget(Paragraph::new(text), area);
}

/// The sort chooser, on the filter line: each column with its digit, the current one with
/// its direction.
fn sort_chooser(sort: OrderSort) -> Line<'static> {
    let mut spans = vec![Span::styled(" sort by ", Style::new().fg(Color::Cyan))];
    for (i, c) in SortColumn::ALL.iter().enumerate() {
        let arrow = if *c == sort.column { if sort.descending { "↓" } else { "↑" } } else { "" };
        let style = if *c == sort.column { Style::new().fg(Color::Black).bg(Color::Cyan) } else { Style::new() };
        spans.push(Span::styled(format!("{}", i + 1), Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)));
        spans.push(Span::styled(format!("{}{arrow}", c.name()), style));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::styled("· again reverses", Style::new().fg(Color::Gray)));
    Line::from(spans)
}

/// The per-minute strip: one bar per minute (folded to the room there is, each bar its
/// busiest minute), the busiest minute marked and named, so a burst shows at a glance; the
/// bar of the order under the cursor in reverse video, so a row is placed in the burst.
fn per_minute_strip(
    p: &PerMinute,
    cursor: Option<chrono::DateTime<chrono::Utc>>,
    k: Keys,
    frame: &mut Frame,
    area: Rect,
) {
    let line = match &p.data {
        None => Line::from(Span::styled(" per minute: counting…", Style::new().fg(Color::Gray))),
        Some(Err(e)) => Line::from(Span::styled(
            format!(" per minute: could not count: {}", sanitize::line(e)),
            Style::new().fg(Color::Red),
        )),
        Some(Ok(rows)) => {
            let counts: Vec<(chrono::DateTime<chrono::Utc>, u64)> =
                rows.iter().map(|(m, n)| (*m, u64::try_from(*n).unwrap_or(0))).collect();
            let minutes = crate::core::blast::fill_minutes(&counts);
            // The busiest minute; of equals, the first (where the burst began).
            match (minutes.first(), minutes.last(), minutes.iter().rev().max_by_key(|m| m.1)) {
                (Some(first), Some(last), Some(peak)) => {
                    let tail = format!(
                        " {} · peak {}/min at {} · {} hides",
                        last.0.format("%H:%M"),
                        peak.1,
                        peak.0.format("%H:%M"),
                        k.of(KeyAction::PerMinute)
                    );
                    let head = format!(" per min {} ", first.0.format("%H:%M"));
                    let room =
                        usize::from(area.width).saturating_sub(head.chars().count() + tail.chars().count()).max(1);
                    let per = minutes.len().div_ceil(room).max(1);
                    let top = peak.1.max(1);
                    let mut spans = vec![Span::styled(head, Style::new().fg(Color::Gray))];
                    for chunk in minutes.chunks(per) {
                        let n = chunk.iter().map(|m| m.1).max().unwrap_or(0);
                        let has_peak = chunk.iter().any(|m| m.0 == peak.0);
                        let has_cursor = cursor
                            .is_some_and(|t| chunk.iter().any(|m| m.0 <= t && t < m.0 + chrono::Duration::minutes(1)));
                        let mut style = if has_peak {
                            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
                        } else {
                            Style::new().fg(Color::Cyan)
                        };
                        if has_cursor {
                            style = style.add_modifier(Modifier::REVERSED);
                        }
                        // A quiet minute under the cursor still shows where it is.
                        let bar = if has_cursor && n == 0 { "▁".to_string() } else { bar(n, top) };
                        spans.push(Span::styled(bar, style));
                    }
                    spans.push(Span::raw(tail));
                    Line::from(spans)
                }
                _ => Line::from(Span::styled(" per minute: no orders match", Style::new().fg(Color::Gray))),
            }
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// One bar of the strip: eight heights, a minute with any order at least the lowest (a
/// quiet minute is a blank, not a bar that rounds to one).
fn bar(n: u64, top: u64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if n == 0 {
        return " ".into();
    }
    let i = ((n * 8).div_ceil(top)).clamp(1, 8) - 1;
    BARS[i as usize].to_string()
}

/// Which optional columns show and how wide the money columns are, for the rows on screen.
struct Columns {
    /// [symbol, quantity, price, cost].
    money: [u16; 4],
    status: u16,
    price: bool,
    /// The user's id: gives way before the transaction's (the detail view and the
    /// pre-check name the user).
    user: bool,
    tx: bool,
    /// The repeat mark column ("×3"): shown once a row held is a repeated execution.
    marks: bool,
}

impl Columns {
    /// Money columns take the width of the widest amount held since the filter was set
    /// (`held`), so they keep their width from page to page. The price column gives way
    /// first, then the user's, then the transaction's (a group rollback needs the group in
    /// view, at 80 columns too), so amounts show whole; an amount still too wide is cut
    /// with a visible '…', never silently.
    fn of(held: [u16; 4], on_screen: &[(usize, &OrderRow)], marks: bool, width: u16) -> Columns {
        // Every row on screen is held, so `held` already covers it.
        let widest = |k: usize| held[k];
        // [symbol, quantity, price, cost]: the least each gets (its heading), then what it
        // would like.
        let least: [u16; 4] = [6, 8, 5, 4];
        let want: [u16; 4] = [0, 1, 2, 3].map(|k| widest(k).max(least[k]));
        let status =
            on_screen.iter().map(|(_, r)| sanitize::line(&r.status).chars().count()).max().unwrap_or(0).max(6) as u16;
        // cursor, time, side, status, order (+ user, tx, marks) and the spaces between.
        let fixed = |(price, user, tx, marks): (bool, bool, bool, bool)| -> u16 {
            let columns = 8 + u16::from(price) + u16::from(user) + u16::from(tx) + u16::from(marks);
            let ids = 8 + if user { 8 } else { 0 } + if tx { 8 } else { 0 };
            2 + 8 + 4 + status + ids + if marks { MARK } else { 0 } + (columns - 1)
        };
        let need = |shown: (bool, bool, bool, bool)| {
            fixed(shown) + want[0] + want[1] + want[3] + if shown.0 { want[2] } else { 0 }
        };
        // (price, user, tx, marks): the price gives way first, then the user, then the
        // repeat marks (the per-minute strip and the blast radius still find a burst), and
        // the transaction last: a group rollback needs the group in view.
        let shown = [
            (true, true, true, marks),
            (false, true, true, marks),
            (false, false, true, marks),
            (false, false, true, false),
            (false, true, false, false),
        ]
        .into_iter()
        .find(|&s| need(s) <= width)
        .unwrap_or((false, false, false, false));
        let (price, user, tx, marks) = shown;
        let mut money = least;
        for k in [3, 1, 2, 0] {
            if k == 2 && !price {
                continue;
            }
            let used = fixed(shown) + money[0] + money[1] + money[3] + if price { money[2] } else { 0 };
            let room = width.saturating_sub(used);
            money[k] = (least[k] + room).min(want[k]);
        }
        Columns { money, status, price, user, tx, marks }
    }

    /// The column titles, the sort column's in colour and underlined.
    fn header(&self, sort: SortColumn) -> Row<'static> {
        let title = |t: &'static str, column: Option<SortColumn>, right: bool| {
            let line = Line::from(t);
            let line = if right { line.alignment(ratatui::layout::Alignment::Right) } else { line };
            let cell = Cell::from(line);
            if column == Some(sort) {
                cell.style(Style::new().fg(Color::Cyan).add_modifier(Modifier::UNDERLINED))
            } else {
                cell
            }
        };
        let mut cells: Vec<Cell> = vec![
            "".into(),
            title("time", Some(SortColumn::Time), false),
            title("symbol", Some(SortColumn::Symbol), false),
            title("side", Some(SortColumn::Side), false),
            title("quantity", Some(SortColumn::Quantity), true),
        ];
        if self.price {
            cells.push(title("price", Some(SortColumn::Price), true));
        }
        cells.push(title("status", Some(SortColumn::Status), false));
        if self.marks {
            cells.push(title("rep", None, false));
        }
        cells.extend([title("cost", Some(SortColumn::Cost), true), "order".into()]);
        if self.user {
            cells.push(title("user", Some(SortColumn::User), false));
        }
        if self.tx {
            cells.push("tx".into());
        }
        Row::new(cells).style(Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD))
    }

    fn widths(&self) -> Vec<Constraint> {
        let m = self.money;
        let mut widths = vec![
            Constraint::Length(2),
            Constraint::Length(8),
            Constraint::Length(m[0]),
            Constraint::Length(4),
            Constraint::Length(m[1]),
        ];
        if self.price {
            widths.push(Constraint::Length(m[2]));
        }
        widths.push(Constraint::Length(self.status));
        if self.marks {
            widths.push(Constraint::Length(MARK));
        }
        widths.extend([Constraint::Length(m[3]), Constraint::Length(8)]);
        widths.extend(std::iter::repeat_n(Constraint::Length(8), usize::from(self.user) + usize::from(self.tx)));
        // The last column takes what is left.
        if let Some(last) = widths.last_mut() {
            *last = Constraint::Min(8);
        }
        widths
    }
}

/// The rows on screen (only those are built; wide enough for price and transaction too at
/// 160 columns and up).
fn rows(app: &App, frame: &mut Frame, table: Rect) {
    let o = &app.orders;
    let visible = table.height.saturating_sub(1) as usize;
    let end = (o.offset + visible).min(o.rows.len());
    let on_screen: Vec<(usize, &OrderRow)> = (o.offset..end).filter_map(|i| o.rows.get(i).map(|r| (i, r))).collect();
    let texts: Vec<[String; 4]> = on_screen.iter().map(|(_, r)| o.texts(r)).collect();
    let marks = o.rows.iter().any(|r| o.repeats.contains_key(&r.id));
    let cols = Columns::of(o.widest, &on_screen, marks, table.width);
    // Amounts right-aligned, so their digits line up; the symbol left.
    let cell = |text: &str, k: usize| {
        let line = Line::from(fit(text, cols.money[k]));
        Cell::from(if k == 0 { line } else { line.alignment(ratatui::layout::Alignment::Right) })
    };
    let rows: Vec<Row> = on_screen
        .iter()
        .zip(&texts)
        .map(|(&(i, r), t)| {
            // The cursor is marked by a character too, not only by colour.
            let cursor = if i == o.cursor { "▶" } else { " " };
            let chosen = if o.selected.contains_key(&r.id) {
                "●"
            } else if o.all_matching && r.status == "executed" {
                "○"
            } else {
                " "
            };
            let mut cells = vec![
                Cell::from(format!("{cursor}{chosen}")),
                Cell::from(r.created_at.format("%H:%M:%S").to_string()),
                cell(&t[0], 0),
                Cell::from(sanitize::line(&r.side).into_owned()),
                cell(&t[1], 1),
            ];
            if cols.price {
                cells.push(cell(&t[2], 2));
            }
            cells.push(Cell::from(Span::styled(sanitize::line(&r.status).into_owned(), status_style(&r.status))));
            if cols.marks {
                cells.push(Cell::from(repeat_mark(o.repeats.get(&r.id).copied())));
            }
            cells.push(cell(&t[3], 3));
            cells.push(Cell::from(short(r.id)));
            if cols.user {
                cells.push(Cell::from(short(r.user_id)));
            }
            if cols.tx {
                cells.push(Cell::from(r.transaction_id.map(short).unwrap_or_else(|| "-".into())));
            }
            let style = if i == o.cursor {
                Style::new()
                    .bg(if app.focus == Pane::Orders { Color::Blue } else { Color::DarkGray })
                    .add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            Row::new(cells).style(style)
        })
        .collect();
    frame.render_widget(Table::new(rows, cols.widths()).header(cols.header(o.sort.column)).column_spacing(1), table);
}

/// Width of the repeat mark column.
const MARK: u16 = 3;

/// A repeated execution's mark: "×n", the order and its twins (the most a column of three
/// shows is ×99).
fn repeat_mark(twins: Option<i64>) -> Span<'static> {
    match twins {
        Some(n) if n > 0 => {
            Span::styled(format!("×{}", (n + 1).min(99)), Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
        }
        _ => Span::raw(""),
    }
}

fn status_style(status: &str) -> Style {
    match status {
        "executed" => Style::new().fg(Color::Green),
        "rolled_back" => Style::new().fg(Color::Magenta),
        "failed" | "cancelled" => Style::new().fg(Color::Red),
        _ => Style::new().fg(Color::Yellow),
    }
}
