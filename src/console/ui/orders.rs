//! The Orders pane: the filter line and the rows on screen (only those are built).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use crate::console::app::App;
use crate::console::app::flow::short;
use crate::console::ui::layout::Pane;
use crate::console::ui::{fit, pane_block};
use crate::core::contract::OrderRow;
use crate::core::format::money;
use crate::core::sanitize;

fn status_style(status: &str) -> Style {
    match status {
        "executed" => Style::new().fg(Color::Green),
        "rolled_back" => Style::new().fg(Color::Magenta),
        "failed" | "cancelled" => Style::new().fg(Color::Red),
        _ => Style::new().fg(Color::Yellow),
    }
}

/// Draws the pane.
pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let o = &app.orders;
    let count = match (o.count, o.count_request) {
        (Some((n, true)), _) => format!("{n}+ match"),
        (Some((n, false)), _) => format!("{n} match"),
        (None, Some(_)) => "counting…".into(),
        (None, None) => String::new(),
    };
    let mut title = if count.is_empty() {
        format!("Orders · {}", sanitize::line(&o.describe_filter()))
    } else {
        format!("Orders · {} · {}", sanitize::line(&o.describe_filter()), count)
    };
    // Someone rolled back since these rows were loaded: they may be out of date.
    if app.rollback_since(o.loaded_at).is_some() {
        title.push_str(" · stale: R reloads");
    }
    // Whether more rows lie beyond the loaded window, on the bottom border where it hides
    // no column.
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
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [filter, table] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);

    match &o.editing {
        Some(editor) => {
            let [label, input] = Layout::horizontal([Constraint::Length(9), Constraint::Min(1)]).areas(filter);
            frame.render_widget(Paragraph::new(Span::styled(" filter: ", Style::new().fg(Color::Cyan))), label);
            frame.render_widget(editor, input);
        }
        None => {
            let text = if o.filter_text.is_empty() {
                Line::from(vec![
                    Span::styled(
                        format!(" {} ", first(&app.keymap.keys_for(crate::core::keys::KeyAction::Filter))),
                        Style::new().fg(Color::Black).bg(Color::Gray),
                    ),
                    Span::styled(
                        " filter: symbol:GBPUSD status:executed from:13:02 to:13:06",
                        Style::new().fg(Color::DarkGray),
                    ),
                ])
            } else {
                Line::from(Span::styled(
                    format!(" filter: {}", sanitize::line(&o.filter_text)),
                    Style::new().fg(Color::Cyan),
                ))
            };
            frame.render_widget(Paragraph::new(text), filter);
        }
    }

    if let Some(e) = &o.error {
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(Span::styled(
                    format!(" Could not load orders: {}", sanitize::line(e)),
                    Style::new().fg(Color::Red),
                )),
                Line::from(" R reloads; the header says whether the database is reachable."),
            ]),
            table,
        );
        return;
    }
    if o.rows.is_empty() {
        let text = if !o.started && !matches!(app.conn, crate::console::protocol::ConnState::Up { .. }) {
            " waiting for the database…"
        } else if app.orders_loading_first() || !o.started {
            " loading orders…"
        } else {
            " No orders match the filter. / to change it."
        };
        frame.render_widget(Paragraph::new(text), table);
        return;
    }

    // Wide enough for price and transaction too (160 columns and up).
    let visible = table.height.saturating_sub(1) as usize;
    let end = (o.offset + visible).min(o.rows.len());
    let on_screen: Vec<(usize, &OrderRow)> = (o.offset..end).filter_map(|i| o.rows.get(i).map(|r| (i, r))).collect();

    // Money columns take the width of the widest amount on screen. The transaction and
    // price columns give way first, so amounts show whole; an amount still too wide is
    // cut with a visible '…', never silently.
    let texts: Vec<[String; 4]> = on_screen
        .iter()
        .map(|(_, r)| {
            [
                sanitize::line(&r.symbol).into_owned(),
                money(r.quantity),
                r.price.map(money).unwrap_or_default(),
                r.total_cost.map(money).unwrap_or_default(),
            ]
        })
        .collect();
    let widest = |k: usize| texts.iter().map(|t| t[k].chars().count()).max().unwrap_or(0) as u16;
    // [symbol, quantity, price, cost]: the least each gets (its heading), then what it
    // would like.
    let least: [u16; 4] = [6, 8, 5, 4];
    let want: [u16; 4] = [0, 1, 2, 3].map(|k| widest(k).max(least[k]));
    let status_w =
        on_screen.iter().map(|(_, r)| sanitize::line(&r.status).chars().count()).max().unwrap_or(0).max(6) as u16;
    // cursor, time, side, status, order, user (+ tx) and the spaces between columns.
    let fixed = |price: bool, tx: bool| -> u16 {
        let columns = 9 + u16::from(price) + u16::from(tx);
        2 + 8 + 4 + status_w + 8 + 8 + if tx { 8 } else { 0 } + (columns - 1)
    };
    let need = |price: bool, tx: bool| fixed(price, tx) + want[0] + want[1] + want[3] + if price { want[2] } else { 0 };
    let (show_price, show_tx) =
        [(true, true), (true, false)].into_iter().find(|&(p, t)| need(p, t) <= table.width).unwrap_or((false, false));
    let mut money_widths = least;
    for k in [3, 1, 2, 0] {
        if k == 2 && !show_price {
            continue;
        }
        let used = fixed(show_price, show_tx)
            + money_widths[0]
            + money_widths[1]
            + money_widths[3]
            + if show_price { money_widths[2] } else { 0 };
        let room = table.width.saturating_sub(used);
        money_widths[k] = (least[k] + room).min(want[k]);
    }
    let cell = |text: &str, k: usize| Cell::from(fit(text, money_widths[k]));
    let mut header_cells = vec!["", "time", "symbol", "side", "quantity"];
    if show_price {
        header_cells.push("price");
    }
    header_cells.extend(["status", "cost", "order", "user"]);
    if show_tx {
        header_cells.push("tx");
    }

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
            if show_price {
                cells.push(cell(&t[2], 2));
            }
            cells.push(Cell::from(Span::styled(sanitize::line(&r.status).into_owned(), status_style(&r.status))));
            cells.push(cell(&t[3], 3));
            cells.push(Cell::from(short(r.id)));
            cells.push(Cell::from(short(r.user_id)));
            if show_tx {
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
    let mut widths = vec![
        Constraint::Length(2),
        Constraint::Length(8),
        Constraint::Length(money_widths[0]),
        Constraint::Length(4),
        Constraint::Length(money_widths[1]),
    ];
    if show_price {
        widths.push(Constraint::Length(money_widths[2]));
    }
    widths.extend([Constraint::Length(status_w), Constraint::Length(money_widths[3]), Constraint::Length(8)]);
    widths.push(if show_tx { Constraint::Length(8) } else { Constraint::Min(8) });
    if show_tx {
        widths.push(Constraint::Min(8));
    }
    let header = Row::new(header_cells).style(Style::new().fg(Color::Gray).add_modifier(Modifier::BOLD));
    frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), table);
}

fn first(keys: &str) -> &str {
    keys.split(' ').next().unwrap_or(keys)
}
