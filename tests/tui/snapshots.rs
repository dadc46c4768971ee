//! Whole-screen snapshots of the console at 80x24 and 160x48, one per state. Every state
//! is reached the way the running console reaches it: by feeding the app terminal events,
//! ticks and the worker's `DbEvent`s (answering the request ids of the `Command`s it sent).
//! No database is needed. Times, ids and money are fixed, so the screens are deterministic.
//!
//! Regenerate with `INSTA_UPDATE=always cargo test --test tui snapshots::` (this module and
//! `incident_snapshots`) and read the `.snap` files under `tests/tui/snapshots/`.

use chrono::{DateTime, Duration, Utc};
use crossterm::event::{Event, KeyCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use incident_console::console::app::Action;
use incident_console::console::protocol::{Command, ConnState, DashboardData, DbEvent, PageRequest};
use incident_console::core::batch::{BatchItem, Outcome};
use incident_console::core::contract::{
    BatchPreview, Check, OrderRow, Postcheck, Precheck, RollbackAndPostcheck, RollbackResult,
};
use incident_console::core::metrics::{Alert, Metrics};
use incident_console::core::workflow::Level;

use crate::support::app::{Driver, SIZES, assert_has, assert_lacks, screen_text};
use crate::support::fixtures::{self, TITLE, at, check, id, maintenance_off, t0};

// ----------------------------------------------------------------------------------------
// Fixed data
// ----------------------------------------------------------------------------------------

fn user(n: u32) -> Uuid {
    id(0x7e57_a000 + n, n)
}

fn dec(n: i64, scale: u32) -> Decimal {
    Decimal::new(n, scale)
}

#[allow(clippy::too_many_arguments)]
fn order(
    i: u32,
    u: u32,
    symbol: &str,
    side: &str,
    qty: i64,
    price: Decimal,
    status: &str,
    created: DateTime<Utc>,
    tx: Option<u32>,
) -> OrderRow {
    let quantity = Decimal::from(qty);
    let executed = matches!(status, "executed" | "rolled_back");
    OrderRow {
        id: id(0x0b5e_0000 + i, i),
        user_id: user(u),
        symbol: symbol.into(),
        side: side.into(),
        order_type: "market".into(),
        quantity,
        price: Some(price),
        status: status.into(),
        transaction_id: tx.map(|t| id(0x7a00_0000 + t, t)),
        total_cost: executed.then(|| (quantity * price).round_dp(2)),
        commission: executed.then(|| dec(250, 2)),
        failure_reason: (status == "failed").then(|| "price moved beyond the slippage limit".into()),
        rolled_back_reason: (status == "rolled_back").then(|| "fat-finger quantity".into()),
        created_at: created,
        executed_at: executed.then_some(created + Duration::milliseconds(180)),
        rolled_back_at: (status == "rolled_back").then_some(created + Duration::minutes(20)),
    }
}

/// The bad burst: 30 GBPUSD buys duplicated by a deploy between 13:02 and 13:06, six users,
/// two orders per transaction group.
fn burst() -> Vec<OrderRow> {
    let qty = [100_000, 25_000, 50_000, 10_000, 75_000, 20_000];
    (0..30u32)
        .map(|i| {
            let created = at(13, 2, 5) + Duration::seconds(i64::from(i) * 7);
            let price = dec(12_650 + i64::from(i % 4), 4);
            order(i, i % 6, "GBPUSD", "buy", qty[(i % 6) as usize], price, "executed", created, Some(i / 2))
        })
        .collect()
}

/// A realistic first page: the burst and a few ordinary orders around it, newest first.
fn page() -> Vec<OrderRow> {
    let mut rows = burst();
    rows.push(order(100, 1, "EURUSD", "sell", 40_000, dec(10_412, 4), "executed", at(13, 7, 12), None));
    rows.push(order(101, 2, "USDJPY", "buy", 15_000, dec(15_123, 2), "executed", at(13, 0, 44), Some(90)));
    rows.push(order(102, 3, "GBPUSD", "buy", 30_000, dec(12_644, 4), "failed", at(13, 1, 58), None));
    rows.push(order(103, 4, "XAUUSD", "sell", 10, dec(265_410, 2), "rolled_back", at(12, 41, 3), None));
    rows.push(order(104, 5, "EURUSD", "buy", 5_000, dec(10_420, 4), "pending", at(13, 7, 40), None));
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    rows
}

fn post(name: &str, passed: bool, detail: &str, expected: Value, actual: Value) -> Check {
    Check {
        check: name.into(),
        passed,
        detail: Some(detail.into()),
        expected: Some(expected),
        actual: Some(actual),
        violations: None,
    }
}

/// What `rollback_precheck` returns for an order of the burst.
fn baseline(o: &OrderRow) -> Value {
    let refund = o.total_cost.expect("an executed order has a cost");
    json!({
        "version": 1,
        "order_id": o.id,
        "user_id": o.user_id,
        "captured_at": "2026-11-25T13:10:00.000000+00:00",
        "order_status": o.status,
        "failure_reason": null,
        "transaction_id": o.transaction_id,
        "position_id": id(0x9051_0000, 1),
        "balance": "48250.00",
        "margin_used": "12650.00",
        "open_positions": 4,
        "expected_refund": refund.to_string(),
        "expected_margin_release": (refund / Decimal::from(10)).round_dp(2).to_string(),
        "group": {
            "order_ids": [o.id, id(0x0b5e_0000 + 99, 99)],
            "skipped": [],
            "expected_refund": (refund * Decimal::from(2)).to_string(),
            "expected_margin_release": (refund / Decimal::from(5)).round_dp(2).to_string()
        }
    })
}

fn precheck_ready(o: &OrderRow) -> Precheck {
    let cost = o.total_cost.expect("cost");
    Precheck {
        ready: true,
        error_code: None,
        checks: vec![
            check("order_exists", true, &format!("order of buy {} GBPUSD", o.quantity)),
            check("order_executed", true, "status executed"),
            check("position_open", true, "position 90510000-0000-4000-8000-000000000001 is open, margin 2530.00"),
            check("profile_accessible", true, "balance 48250.00, margin used 12650.00"),
            check("no_active_transactions", true, "0 order(s) of the user pending or executing"),
            check(
                "execution_transfers_unreversed",
                true,
                &format!("2 transfer(s), 0 reversed, refund {cost} of total cost {cost}"),
            ),
            check("user_ledger_consistent", true, "balance and margin agree with the ledger and positions"),
        ],
        baseline: Some(baseline(o)),
    }
}

fn precheck_not_ready(o: &OrderRow) -> Precheck {
    let cost = o.total_cost.expect("cost");
    Precheck {
        ready: false,
        error_code: None,
        checks: vec![
            check("order_exists", true, &format!("order of buy {} GBPUSD", o.quantity)),
            check("order_executed", true, "status executed"),
            check("position_open", true, "position 90510000-0000-4000-8000-000000000001 is open, margin 2530.00"),
            check("profile_accessible", true, "balance 48250.00, margin used 12650.00"),
            check("no_active_transactions", false, "2 order(s) of the user pending or executing"),
            check(
                "execution_transfers_unreversed",
                true,
                &format!("2 transfer(s), 0 reversed, refund {cost} of total cost {cost}"),
            ),
            check("user_ledger_consistent", true, "balance and margin agree with the ledger and positions"),
        ],
        baseline: Some(baseline(o)),
    }
}

/// A rollback that happened, and a post-check whose balance does not match the baseline.
fn rollback_with_mismatch(o: &OrderRow) -> RollbackAndPostcheck {
    let refund = o.total_cost.expect("cost");
    let expected_balance = dec(4_825_000, 2) + refund;
    let actual_balance = expected_balance - dec(10_000, 2);
    RollbackAndPostcheck {
        rollback: RollbackResult {
            success: true,
            error_code: None,
            message: None,
            mode: Some("single".into()),
            order_ids: Some(vec![o.id]),
            refunded: Some(refund),
            margin_released: Some((refund / Decimal::from(10)).round_dp(2)),
            transfers_reversed: Some(2),
            duration_us: Some(41_870),
            skipped: None,
            already_rolled_back: None,
            status: None,
            reply_lost: None,
            breaker_opened: false,
        },
        postcheck: Some(Postcheck {
            successful: false,
            error_code: None,
            mode: Some("single".into()),
            order_ids: Some(vec![o.id]),
            checks: vec![
                post(
                    "order_rolled_back",
                    true,
                    "the order is marked rolled back",
                    json!("rolled_back"),
                    json!("rolled_back"),
                ),
                post(
                    "failure_reason_preserved",
                    true,
                    "the original failure reason is untouched",
                    Value::Null,
                    Value::Null,
                ),
                post("positions_closed", true, "each position closed as rolled_back", json!(1), json!(1)),
                post(
                    "balance_restored",
                    false,
                    "baseline 48250.00 + refund",
                    json!(expected_balance.to_string()),
                    json!(actual_balance.to_string()),
                ),
                post("margin_released", true, "baseline 12650.00 - release", json!("10120.00"), json!("10120.00")),
                post("open_positions", true, "open positions after the rollback", json!(3), json!(3)),
                post("transfers_reversed", true, "every transfer has one mirror", json!(2), json!(2)),
                post("one_audit_row_per_order", true, "one audit row per order", json!(1), json!(1)),
                post("user_ledger_consistent", false, "balance and margin agree with the ledger", json!(0), json!(1)),
            ],
        }),
    }
}

fn metrics(alerts: Vec<Alert>) -> Metrics {
    Metrics {
        total: 14,
        succeeded: 12,
        failed: 2,
        orders_rolled_back: 40,
        operations: 3,
        success_rate_percent: Some(dec(8571, 2)),
        mean_ms: Some(dec(42_315, 3)),
        p95_ms: Some(dec(118_200, 3)),
        // Before the orders are loaded (13:08:02): they are not stale.
        last_rollback: Some(at(13, 7, 30)),
        recent: 12,
        alerts,
        recent_by_operation: Default::default(),
    }
}

fn per_minute(burst: bool) -> Vec<u64> {
    (0..60u64).map(|m| if burst && m >= 54 { [2, 5, 9, 3, 1, 2][(m - 54) as usize] } else { m % 7 / 5 }).collect()
}

fn quiet_dashboard() -> DashboardData {
    let mut m = metrics(vec![]);
    m.failed = 0;
    m.total = 12;
    m.success_rate_percent = Some(Decimal::from(100));
    m.recent = 2;
    DashboardData {
        metrics: m,
        per_minute: per_minute(false),
        in_flight: 0,
        audit_violations: Some(0),
        audit_at: Some(at(13, 7, 0)),
    }
}

fn alerting_dashboard() -> DashboardData {
    DashboardData {
        metrics: metrics(vec![
            Alert::RollbackFailed { count: 2 },
            Alert::DataInconsistency { violations: 1, failed_postchecks: 1 },
            Alert::RollbackBurst { count: 12, window_minutes: 10, threshold: 5 },
        ]),
        per_minute: per_minute(true),
        in_flight: 1,
        audit_violations: Some(1),
        audit_at: Some(at(13, 9, 0)),
    }
}

// ----------------------------------------------------------------------------------------
// Driving the app
// ----------------------------------------------------------------------------------------

/// The console as it starts: the incident declared at 13:08, on the rollback screen.
fn console(level: Level, size: (u16, u16)) -> Driver {
    Driver::new(TITLE, level, t0(), size)
}

// ----------------------------------------------------------------------------------------
// States
// ----------------------------------------------------------------------------------------

/// The first frame: the worker is still connecting.
fn connecting(size: (u16, u16)) -> Driver {
    let mut s = console(Level::Moderate, size);
    s.db(DbEvent::Connection(ConnState::Connecting { detail: "starting the sandbox".into() }));
    s.tick(t0() + Duration::seconds(1));
    s
}

/// Connected; the first page of orders has been asked for and not answered yet.
fn connected_waiting(size: (u16, u16)) -> Driver {
    let mut s = connecting(size);
    s.db(DbEvent::Target("sandbox".into()));
    let e = s.db(DbEvent::Connection(ConnState::Up { latency_ms: 2 }));
    assert!(e.commands.iter().any(|c| matches!(c, Command::LoadOrders { page: PageRequest::First, .. })));
    assert!(e.commands.contains(&Command::RefreshDashboard));
    s.db(DbEvent::Maintenance(maintenance_off()));
    s.tick(t0() + Duration::seconds(2));
    s
}

/// A page of orders, the dashboard's first figures, the cursor moved down onto the burst.
fn orders_loaded(size: (u16, u16)) -> Driver {
    let mut s = connected_waiting(size);
    s.answer_orders(page());
    s.db(DbEvent::Dashboard(quiet_dashboard()));
    s.tick(at(13, 10, 0));
    for _ in 0..3 {
        s.press('j');
    }
    s
}

fn prechecked(size: (u16, u16), ready: bool) -> Driver {
    let mut s = orders_loaded(size);
    let o = s.current();
    s.press('p');
    let (id, order, user) = s.last_precheck();
    assert_eq!((order, user), (o.id, o.user_id));
    let result = if ready { precheck_ready(&o) } else { precheck_not_ready(&o) };
    s.db(DbEvent::Precheck { id, order, user, result: Ok(result) });
    s
}

/// `r` on the order under the cursor, the pre-check passed, part of a reason typed.
fn reason_entry(size: (u16, u16), level: Level) -> Driver {
    let mut s = orders_loaded(size);
    s.app.incident.level = level;
    let o = s.current();
    s.press('r');
    let (id, order, user) = s.last_precheck();
    s.db(DbEvent::Precheck { id, order, user, result: Ok(precheck_ready(&o)) });
    s.typed("duplicate execution from deploy 4711");
    s
}

/// The reason given; the confirmation is shown.
fn confirm_single(size: (u16, u16), level: Level) -> Driver {
    let mut s = reason_entry(size, level);
    s.enter();
    if level == Level::Critical {
        s.typed("ROLL");
    }
    s
}

/// Six orders of the burst selected with space, previewed, a reason, the count being typed.
fn confirm_batch(size: (u16, u16)) -> Driver {
    let mut s = orders_loaded(size);
    for _ in 0..6 {
        s.press(' ');
    }
    s.press('b');
    let id = s.last_preview();
    let items: Vec<BatchItem> = s.app.orders.selection();
    let preview = BatchPreview {
        orders: 6,
        executed: 6,
        users: 6,
        total_refund: dec(35_425_000, 2),
        total_margin_release: dec(3_542_500, 2),
    };
    s.db(DbEvent::BatchPreview { id, result: Ok((preview, items)) });
    s.typed("duplicate executions from deploy 4711");
    s.enter();
    s.typed("6");
    s
}

/// The whole burst as a batch ("GBPUSD executed", A, b), 18 of 30 done.
fn batch_running(size: (u16, u16)) -> Driver {
    let mut s = orders_loaded(size);
    s.press('/');
    s.typed("GBPUSD executed");
    s.enter();
    let mut rows = burst();
    rows.reverse();
    s.answer_orders(rows.clone());
    s.press('A');
    s.press('b');
    let id = s.last_preview();
    let items: Vec<BatchItem> = rows.iter().map(|r| BatchItem { order_id: r.id, user_id: r.user_id }).collect();
    let preview = BatchPreview {
        orders: 30,
        executed: 30,
        users: 6,
        total_refund: dec(160_350_750, 2),
        total_margin_release: dec(16_035_075, 2),
    };
    s.db(DbEvent::BatchPreview { id, result: Ok((preview, items.clone())) });
    s.typed("duplicate executions from deploy 4711");
    s.enter();
    s.typed("30");
    s.tick(at(13, 11, 0));
    let e = s.enter();
    assert!(matches!(e.commands.as_slice(), [Command::RunBatch { .. }]), "{:?}", e.commands);
    let run = s.last_run();
    let recent: Vec<(BatchItem, Outcome)> = items
        .iter()
        .take(18)
        .enumerate()
        .map(|(i, item)| {
            // the newest outcome (pushed last, shown first) is a refusal
            let outcome = if i == 17 {
                Outcome::Refused { error_code: "not_rollbackable".into(), message: "position already closed".into() }
            } else {
                Outcome::RolledBack {
                    refunded: rows[i].total_cost.unwrap_or_default(),
                    margin_released: dec(1, 0),
                    attempts: 1,
                    reply_lost: false,
                }
            };
            (*item, outcome)
        })
        .collect();
    s.db(DbEvent::BatchProgress { id: run, done: 18, total: 30, rolled_back: 17, problems: 1, recent });
    s.tick(at(13, 11, 12));
    s
}

/// A single rollback done; its post-check found the balance off by 100.00.
fn postcheck_mismatch(size: (u16, u16)) -> Driver {
    let mut s = confirm_single(size, Level::Moderate);
    let o = s.current();
    s.tick(at(13, 10, 30));
    let e = s.enter();
    assert!(matches!(e.commands.as_slice(), [Command::Rollback { .. }]), "{:?}", e.commands);
    let id = s.last_run();
    s.tick(at(13, 10, 31));
    s.db(DbEvent::Rollback { id, result: Ok(rollback_with_mismatch(&o)) });
    // The orders reload the rollback asked for comes back with the order rolled back.
    let mut rows = page();
    for r in rows.iter_mut().filter(|r| r.id == o.id) {
        r.status = "rolled_back".into();
    }
    s.answer_orders(rows);
    s
}

fn alert_firing(size: (u16, u16)) -> Driver {
    let mut s = orders_loaded(size);
    s.db(DbEvent::Dashboard(alerting_dashboard()));
    // Shift-Tab from Orders focuses the Dashboard (on a narrow screen, it becomes the tab shown).
    s.key(KeyCode::BackTab);
    s
}

/// A burst in the dashboard's window: `per_operation` rollbacks of each operation.
fn burst_dashboard(per_operation: &[(Uuid, u64)]) -> DashboardData {
    let count: u64 = per_operation.iter().map(|(_, n)| n).sum();
    let mut d = quiet_dashboard();
    d.metrics.recent = count;
    d.metrics.recent_by_operation = per_operation.iter().copied().collect();
    d.metrics.alerts = vec![Alert::RollbackBurst { count, window_minutes: 10, threshold: 5 }];
    d.per_minute = per_minute(true);
    d
}

/// The batch of `batch_running` and the dashboard's figures with its 17 rollbacks, and
/// `others` from elsewhere; the Dashboard focused (on a narrow screen it is the tab shown).
fn batch_in_the_dashboard(size: (u16, u16), others: u64) -> Driver {
    let mut s = batch_running(size);
    let operation = s
        .sent
        .iter()
        .find_map(|c| match c {
            Command::RunBatch { operation, .. } => Some(*operation),
            _ => None,
        })
        .expect("the batch was sent");
    let mut per_operation = vec![(operation, 17)];
    if others > 0 {
        per_operation.push((id(0x0de1_0000, 1), others));
    }
    s.db(DbEvent::Dashboard(burst_dashboard(&per_operation)));
    for _ in 0..8 {
        if s.app.focus == incident_console::console::panes::Pane::Dashboard {
            break;
        }
        s.key(KeyCode::BackTab);
    }
    assert_eq!(s.app.focus, incident_console::console::panes::Pane::Dashboard);
    s
}

fn unreachable(size: (u16, u16)) -> Driver {
    let mut s = connecting(size);
    s.db(DbEvent::Connection(ConnState::Down {
        error: "connection refused (is PostgreSQL running on 127.0.0.1:5432?)".into(),
        retry_in: 8,
        since: t0() + Duration::seconds(4),
    }));
    s.tick(t0() + Duration::seconds(20));
    s
}

fn unreachable_after_load(size: (u16, u16)) -> Driver {
    let mut s = orders_loaded(size);
    s.db(DbEvent::Connection(ConnState::Down {
        error: "server closed the connection unexpectedly".into(),
        retry_in: 2,
        since: at(13, 9, 41),
    }));
    s
}

fn with_help(size: (u16, u16)) -> Driver {
    let mut s = orders_loaded(size);
    s.press('?');
    s
}

fn quit_while_running(size: (u16, u16)) -> Driver {
    let mut s = batch_running(size);
    let e = s.press('q');
    assert!(e.commands.is_empty(), "quitting asks first: {:?}", e.commands);
    s
}

fn maintenance_on(size: (u16, u16)) -> Driver {
    let mut s = orders_loaded(size);
    s.db(DbEvent::Maintenance(fixtures::maintenance_on(
        "rolling back the 13:02 burst",
        at(13, 9, 12),
        "incident_commander",
    )));
    s
}

// ----------------------------------------------------------------------------------------
// Rendering
// ----------------------------------------------------------------------------------------

/// Draws, snapshots as `{name}_{w}x{h}`, and returns the text for assertions.
fn snap(s: &Driver, name: &str) -> String {
    let size = s.app.size;
    let terminal = s.draw();
    insta::assert_snapshot!(format!("{name}_{}x{}", size.0, size.1), terminal.backend());
    screen_text(&terminal)
}

/// `shown` is `whole`, or a start of it ending in a visible '…': never silently cut.
fn shown_fairly(shown: &str, whole: &str) -> bool {
    shown == whole || (shown.ends_with('…') && whole.starts_with(shown.trim_end_matches('…')))
}

// ----------------------------------------------------------------------------------------
// The snapshots
// ----------------------------------------------------------------------------------------

#[test]
fn loading_while_connecting() {
    for size in SIZES {
        let s = connecting(size);
        let text = snap(&s, "loading_connecting");
        assert_has(&text, &["L2 MODERATE", "DB sandbox: starting the sandbox", "waiting for the database"]);
        if size.0 >= 120 {
            assert_has(&text, &["Assessment 0m / 15m"]);
        }
    }
}

#[test]
fn empty_connected_before_the_first_page() {
    for size in SIZES {
        let s = connected_waiting(size);
        assert!(s.app.orders_loading_first());
        let text = snap(&s, "empty");
        assert_has(&text, &["L2 MODERATE", "DB sandbox", "maintenance off", "loading orders", "counting"]);
        assert_lacks(&text, &["UNREACHABLE", "GBPUSD  buy"]);
    }
}

#[test]
fn empty_no_order_matches() {
    for size in SIZES {
        let mut s = connected_waiting(size);
        s.answer_orders(vec![]);
        let text = snap(&s, "empty_no_match");
        assert_has(&text, &["No orders match the filter", "0 match"]);
    }
}

#[test]
fn orders_loaded_with_the_cursor_moved() {
    for size in SIZES {
        let s = orders_loaded(size);
        assert_eq!(s.app.orders.cursor, 3);
        assert_eq!(s.app.orders.rows.len(), 35);
        let text = snap(&s, "orders_loaded");
        assert_has(&text, &["of 35", "GBPUSD", "executed", "EURUSD", "pending", "L2 MODERATE"]);
        // the row under the cursor is on screen
        assert_has(&text, &[&incident_console::console::widgets::short(s.current().id)]);
    }
}

/// More rows lie beyond the loaded window (and are being loaded): said on the pane's bottom
/// border, where it hides no column heading.
#[test]
fn more_rows_beyond_the_window() {
    for size in SIZES {
        let mut s = connected_waiting(size);
        let (page_id, request) = s.last_page();
        let count_id = s.last_count();
        s.db(DbEvent::Orders { id: page_id, page: request, rows: page(), has_more: true });
        s.db(DbEvent::OrderCount { id: count_id, count: 5000, capped: false });
        let text = snap(&s, "more_rows");
        let lines: Vec<&str> = text.lines().collect();
        let heading = lines.iter().find(|l| l.contains("symbol") && l.contains("quantity")).expect("the headings");
        // The transaction's id stays at every size (a group rollback needs it): at 80
        // columns the user's gives way for it.
        let in_pane = heading.split(['┃', '│']).nth(1).unwrap_or_default();
        assert!(in_pane.trim_end().ends_with(" tx"), "the last heading is whole:\n{text}");
        assert!(!heading.contains("more"), "{text}");
        // The window is short of the cursor's margin, so the next page is already asked for.
        let border = lines.iter().find(|l| l.contains("loading more…")).expect("the indicator");
        assert!(border.contains('└') || border.contains('┗'), "on the bottom border:\n{text}");
    }
}

/// Amounts come first: the price and transaction columns, then the symbol, give way so an
/// amount shows whole; whatever is still too wide is cut with a visible '…', never
/// silently (a silently cut amount reads as another amount).
#[test]
fn a_wide_amount_is_never_cut_silently() {
    for (exact, size, symbol_whole, whole) in [
        // Grouped, 20 characters: more than an 80-column pane gives after the other columns.
        ("123456789.12345678", (80, 24), false, false),
        ("123456789.12345678", (160, 48), true, true),
        ("123456789.12345678", (240, 48), true, true),
        // Wider than an 80-column pane can give: cut, visibly.
        ("123456789012.12345678", (80, 24), false, false),
    ] {
        let mut s = connected_waiting(size);
        let mut rows = page();
        rows[0].total_cost = Some(exact.parse().expect("a decimal"));
        rows[0].symbol = "BTCUSDT.PERP".into();
        s.answer_orders(rows);
        let text = s.screen();
        let row = text.lines().find(|l| l.contains("13:07:40")).expect("the row");
        let token = |start: &str| {
            row.split(|c: char| c.is_whitespace() || c == '┃')
                .find(|w| w.starts_with(start))
                .map(str::to_string)
                .unwrap_or_else(|| panic!("{start}… is on the row:\n{text}"))
        };
        // Grouped in thousands, every decimal kept.
        let exact = match exact {
            "123456789.12345678" => "123,456,789.12345678",
            _ => "123,456,789,012.12345678",
        };
        let (cost, symbol) = (token("123,"), token("BTC"));
        assert!(shown_fairly(&cost, exact) && shown_fairly(&symbol, "BTCUSDT.PERP"), "{size:?}:\n{text}");
        if whole {
            assert_eq!(cost, exact, "the amount whole at {size:?}:\n{text}");
        }
        assert_eq!(symbol == "BTCUSDT.PERP", symbol_whole, "{size:?}:\n{text}");
    }
}

/// A rollback committed by anyone after the rows and the pre-check were loaded (the
/// dashboard hears of it): both say they may be out of date; R reloads the rows.
#[test]
fn a_rollback_elsewhere_marks_the_orders_and_the_precheck_stale() {
    let mut s = prechecked((160, 48), true);
    let text = s.screen();
    assert!(!text.contains("stale") && !text.contains("Stale"), "{text}");
    let mut d = quiet_dashboard();
    d.metrics.last_rollback = Some(at(13, 11, 0));
    s.tick(at(13, 11, 1));
    s.db(DbEvent::Dashboard(d));
    let text = s.screen();
    assert!(text.contains("stale: R reloads"), "{text}");
    assert!(text.contains("Maybe stale: some order rolled back at 13:11:00 · p re-runs"), "{text}");
    assert!(text.contains(" READY "), "a rollback elsewhere does not say this order's READY is wrong:\n{text}");
    // R: the rows are loaded again, and are current; they show the pre-checked order was
    // the one rolled back: its READY is gone.
    let checked = s.current();
    s.press('R');
    let rows: Vec<_> = page()
        .into_iter()
        .map(|mut r| {
            if r.id == checked.id {
                r.status = "rolled_back".into();
                r.rolled_back_at = Some(at(13, 11, 0));
            }
            r
        })
        .collect();
    s.answer_orders(rows);
    let text = s.screen();
    assert!(!text.contains("stale: R reloads"), "{text}");
    assert!(text.contains(" STALE ") && !text.contains(" READY "), "{text}");
    assert!(text.contains("Stale: this order was rolled back at 13:11:00 · p re-runs"), "{text}");
    snap(&s, "precheck_stale_after_its_rollback");
}

#[test]
fn precheck_passed() {
    for size in SIZES {
        let s = prechecked(size, true);
        let text = snap(&s, "precheck_passed");
        assert_has(&text, &["READY", "PASS", "order_exists", "Pre-check · order 0b5e001c"]);
        assert_lacks(&text, &["NOT READY", "FAIL"]);
        if size.0 >= 120 {
            assert_has(&text, &["user_ledger_consistent", "Baseline: balance 48250.00", "group of", "94875.00"]);
        }
    }
}

#[test]
fn precheck_failed() {
    for size in SIZES {
        let s = prechecked(size, false);
        let text = snap(&s, "precheck_failed");
        assert_has(&text, &["NOT READY", "FAIL", "no_active_transactions"]);
    }
}

#[test]
fn rollback_reason_entry() {
    for size in SIZES {
        let s = reason_entry(size, Level::Moderate);
        let text = snap(&s, "rollback_reason");
        assert_has(&text, &["Reason (required)", "duplicate execution from deploy 4711", "typing the reason"]);
    }
}

#[test]
fn rollback_confirm_single() {
    for size in SIZES {
        let s = confirm_single(size, Level::Moderate);
        let text = snap(&s, "rollback_confirm_single");
        assert_has(&text, &["enter rolls back now", "duplicate execution from deploy 4711", "refund"]);
    }
}

#[test]
fn rollback_confirm_single_level3() {
    for size in SIZES {
        let s = confirm_single(size, Level::Critical);
        let text = snap(&s, "rollback_confirm_level3");
        assert_has(&text, &["L3 CRITICAL", "ROLLBACK", "ROLL"]);
    }
}

#[test]
fn rollback_confirm_batch_with_the_typed_count() {
    for size in SIZES {
        let s = confirm_batch(size);
        assert_eq!(s.app.flow.as_ref().and_then(|f| f.confirm_word.clone()).as_deref(), Some("6"));
        let text = snap(&s, "rollback_confirm_batch");
        assert_has(&text, &["batch of 6 selected order(s)", "Type 6 to roll back", "batch: 6 selected", "●"]);
    }
}

/// A batch of everything the filter matches says, before the reason, what the filter was
/// read as: "GBPUSD sell" is a symbol and a side, not two symbols.
#[test]
fn rollback_confirm_matching_batch_repeats_the_filter() {
    for size in SIZES {
        let mut s = orders_loaded(size);
        s.press('/');
        s.typed("GBPUSD EURUSD sell qty:>=20000 from:13:02 to:13:06");
        s.enter();
        let rows = burst();
        s.answer_orders(rows.clone());
        s.press('A');
        s.press('b');
        let id = s.last_preview();
        let items: Vec<BatchItem> = rows.iter().map(|r| BatchItem { order_id: r.id, user_id: r.user_id }).collect();
        let preview = BatchPreview {
            orders: 30,
            executed: 30,
            users: 6,
            total_refund: dec(160_350_750, 2),
            total_margin_release: dec(16_035_075, 2),
        };
        s.db(DbEvent::BatchPreview { id, result: Ok((preview, items)) });
        let text = snap(&s, "rollback_confirm_matching_batch");
        // Wrapped to the pane's width: each piece is on one line at every size.
        assert_has(&text, &["from: executed orders of", "GBPUSD or EURUSD", "side sell", "quantity ≥", "13:06:00"]);
    }
}

#[test]
fn rollback_in_progress_with_a_gauge() {
    for size in SIZES {
        let s = batch_running(size);
        let text = snap(&s, "rollback_in_progress");
        assert_has(&text, &["Rolling back", "18/30", "rolled back 17", "refused", "not_rollbackable", "12.0s"]);
    }
}

/// The batch ended; its proof found the audit rows' refund 0.01 short of the summary's and
/// one touched account off the ledger. Shown on the finished flow and, after esc, under
/// "Last batch".
#[test]
fn a_batch_whose_proof_failed_says_which_check_and_account() {
    for size in SIZES {
        let mut s = batch_running(size);
        let run = s.last_run();
        let summary = incident_console::core::batch::Summary {
            batch_id: id(0xba7c_0000, 1),
            total: 30,
            rolled_back: 30,
            already_rolled_back: 0,
            refused: vec![],
            failed: vec![],
            not_attempted: 0,
            unknown: vec![],
            reply_lost: 0,
            users: (1..=6).map(user).collect(),
            refunded: dec(160_350_750, 2),
            margin_released: dec(16_035_075, 2),
            retries: 0,
            elapsed_ms: 12_000,
            cancelled: false,
        };
        let operation = summary.batch_id;
        s.db(DbEvent::BatchDone { id: run, result: Ok(summary) });
        s.tick(at(13, 11, 13));
        let mut checks: Vec<Check> = ["orders_rolled_back", "audit_rows_match", "margin_matches", "users_match"]
            .iter()
            .map(|n| post(n, true, "as the run says", json!(30), json!(30)))
            .collect();
        checks.insert(
            2,
            post(
                "refund_matches",
                false,
                "the cash the audit rows give back is the run's refund",
                json!("1603507.50"),
                json!("1603507.49"),
            ),
        );
        let violations = vec![incident_console::core::contract::Violation {
            user_id: Some(user(3)),
            check_name: "balance_matches_ledger".into(),
            expected: Some(dec(1_250_000, 2)),
            actual: Some(dec(1_249_999, 2)),
        }];
        let proof = incident_console::core::batch::Proof { checks, accounts: 6, violations };
        s.db(DbEvent::BatchProof { operation, result: Ok(proof) });
        let text = snap(&s, "batch_proof_failed");
        assert_has(&text, &["PROOF FAILED", "refund_matches"]);
        s.esc();
        let text = snap(&s, "batch_proof_failed_kept");
        assert_has(&text, &["Last batch", "PROOF FAILED", "refund_matches"]);
    }
}

/// Below 120x30 the list and the pane below share the height: the list gets most of it
/// while it has the focus, the rollback flow gets most of it while one is open (its plan,
/// reason and typed count read whole), and the cursor's row stays on screen either way.
#[test]
fn the_list_gets_most_rows_until_a_rollback_opens() {
    for size in [(80, 24), (100, 30)] {
        let s = orders_loaded(size);
        let text = snap(&s, "layout_browsing");
        let listed = text.lines().filter(|l| l.contains(" GBPUSD ") || l.contains(" EURUSD ")).count();
        assert!(listed * 2 > usize::from(size.1) - 8, "{listed} orders listed at {size:?}:\n{text}");
        let s = confirm_batch(size);
        let text = snap(&s, "layout_rollback_open");
        assert_has(&text, &["from: 6 order(s) selected by hand", "Reason (required):", "Type 6 to roll back", "▶"]);
    }
}

/// Expected and actual amounts of the largest size numeric(20,8) holds, differing in the
/// last digit: on every screen size both show whole, or cut with a visible '…'.
#[test]
fn postcheck_amounts_are_never_cut_silently() {
    let (expected, actual) = ("123456789012.12345678", "123456789012.12345679");
    for size in [(80, 24), (100, 30), (160, 48)] {
        let mut s = confirm_single(size, Level::Moderate);
        let o = s.current();
        s.enter();
        let id = s.last_run();
        let mut result = rollback_with_mismatch(&o);
        let checks = &mut result.postcheck.as_mut().expect("a post-check").checks;
        let balance = checks.iter_mut().find(|c| c.check == "balance_restored").expect("balance_restored");
        balance.expected = Some(json!(expected));
        balance.actual = Some(json!(actual));
        s.db(DbEvent::Rollback { id, result: Ok(result) });
        let text = s.screen();
        let row = text.lines().find(|l| l.contains("FAIL balance")).unwrap_or_else(|| panic!("the row:\n{text}"));
        let amounts: Vec<&str> =
            row.split(|c: char| c.is_whitespace() || "┃│".contains(c)).filter(|w| w.starts_with("1234")).collect();
        assert_eq!(amounts.len(), 2, "{text}");
        for (shown, (whole, what)) in amounts.into_iter().zip([(expected, "expected"), (actual, "actual")]) {
            assert!(
                shown_fairly(shown, whole),
                "{what} {whole} shown as {shown} at {size:?}, not whole nor visibly cut:\n{text}"
            );
        }
        if size.0 >= 100 {
            assert!(row.contains(expected) && row.contains(actual), "both whole at {size:?}:\n{text}");
        }
    }
}

/// At 80x24 the post-check's last checks are below the pane: it says how many, and j / k
/// scroll them into view; another pane or a new result starts at the top again.
#[test]
fn the_postcheck_scrolls_at_80x24() {
    let mut s = postcheck_mismatch((80, 24));
    assert_eq!(s.app.focus, incident_console::console::panes::Pane::Postcheck);
    let text = s.screen();
    assert!(text.contains("0 above · 3 below (j/k)") && !text.contains("one_audit_row_per_order"), "{text}");
    for _ in 0..3 {
        s.press('j');
    }
    let text = s.screen();
    assert!(text.contains("3 above · 0 below") && text.contains("PASS one_audit_row_per_order"), "{text}");
    s.key(KeyCode::Tab);
    assert_eq!(s.app.detail_scroll, 0);
}

#[test]
fn postcheck_with_a_mismatch() {
    for size in SIZES {
        let s = postcheck_mismatch(size);
        let text = snap(&s, "postcheck_mismatch");
        assert_has(&text, &["FAILED", "FAIL", "balance_restored", "expected", "actual"]);
        // expected (baseline 48250.00 + refund 94875.00) and actual, both on screen
        assert_has(&text, &["143125.00", "143025.00"]);
        // the rollback's own amounts, whole
        assert_has(&text, &["refunded 94875.00", "margin released 9487.50"]);
    }
}

#[test]
fn alert_firing_on_the_dashboard() {
    for size in SIZES {
        let s = alert_firing(size);
        let text = snap(&s, "alert_firing");
        assert_has(&text, &["ALERT", "2 rollback(s) failed", "data inconsistency", "ledger audit: 1 violation(s)"]);
        if size.0 < 120 {
            // the Dashboard is the detail tab shown
            assert_has(&text, &["12 rollbacks in the last 10 minutes", "▶ Dashboard"]);
        }
    }
}

#[test]
fn database_unreachable() {
    for size in SIZES {
        let s = unreachable(size);
        let text = snap(&s, "db_unreachable");
        assert_has(&text, &["DB UNREACHABLE", "sandbox: connection refused", "waiting for the database"]);
        if size.0 >= 120 {
            assert_has(&text, &["retry 8s", "maintenance ?"]);
        }
    }
}

#[test]
fn database_unreachable_after_orders_loaded() {
    for size in SIZES {
        let s = unreachable_after_load(size);
        let text = snap(&s, "db_unreachable_after_load");
        // At 80 columns the end of a long error is cut; its start and the state are not.
        assert_has(&text, &["UNREACHABLE", "server closed", "GBPUSD"]);
    }
}

#[test]
fn help_open() {
    for size in SIZES {
        let s = with_help(size);
        let text = snap(&s, "help");
        assert_has(&text, &["Help", "any key closes", "General", "Rollback screen", "Incident screen", "Dialogs"]);
    }
}

/// The commander's own batch fills the burst window: expected, not an alarm. Five more
/// rollbacks from elsewhere are a burst of their own, and alert.
#[test]
fn the_commanders_batch_is_expected_and_a_burst_from_elsewhere_alerts() {
    for size in SIZES {
        let s = batch_in_the_dashboard(size, 4);
        let text = snap(&s, "dashboard_batch_expected");
        assert_has(&text, &["expected: your batch", "17 of the 21 rollbacks"]);
        assert_lacks(&text, &["ALERT"]);
        let s = batch_in_the_dashboard(size, 5);
        let text = s.screen();
        assert_has(&text, &["ALERT", "22 rollbacks in the last 10 minutes"]);
        assert_lacks(&text, &["expected: your batch"]);
    }
}

#[test]
fn quit_confirmation_while_a_rollback_runs() {
    for size in SIZES {
        let s = quit_while_running(size);
        assert!(s.app.quit_confirm && !s.app.quit);
        let text = snap(&s, "quit_confirm");
        assert_has(&text, &["A rollback is running. Quit anyway?", "y quit"]);
    }
}

#[test]
fn terminal_too_small() {
    for size in [(60, 20), (79, 24)] {
        let mut s = orders_loaded((80, 24));
        s.act(Action::Terminal(Event::Resize(size.0, size.1)));
        assert_eq!(s.app.size, size);
        let text = snap(&s, "too_small");
        assert_has(&text, &["Terminal too small", &format!("{}×{}", size.0, size.1)]);
    }
}

#[test]
fn maintenance_mode_on() {
    for size in SIZES {
        let s = maintenance_on(size);
        let text = snap(&s, "maintenance_on");
        assert_has(&text, &["MAINTENANCE ON since 13:09"]);
    }
}

// ----------------------------------------------------------------------------------------
// What the snapshots showed to be cut or garbled (ignored until fixed in src/ui)
// ----------------------------------------------------------------------------------------

#[test]

fn header_shows_phase_since_and_maintenance_at_80_columns() {
    let text = orders_loaded((80, 24)).screen();
    assert_has(&text, &["Assessment 2m / 15m"]);
    // Since when the database is down comes before the retry: at 80 columns the retry
    // gives way (the wide header has both, see `database_unreachable`).
    let text = unreachable((80, 24)).screen();
    assert_has(&text, &["DB UNREACHABLE since 13:08", "maintenance ?"]);
}

#[test]

fn the_level_label_survives_a_long_title_at_80_columns() {
    let mut s = orders_loaded((80, 24));
    s.app.incident.title = "Duplicate GBPUSD executions on the EU matching engine after deploy 4711".into();
    s.app.incident.level = Level::Critical;
    let text = s.screen();
    assert_has(&text, &["L3 CRITICAL"]);
}

#[test]

fn the_footer_shows_help_and_quit_at_80_columns() {
    let text = orders_loaded((80, 24)).screen();
    let footer = text.lines().last().unwrap_or_default().to_string();
    assert_has(&footer, &["help", "quit"]);
}

#[test]

fn help_lists_every_key_at_80x24() {
    let s = with_help((80, 24));
    let text = s.screen();
    // Each key with its label, in one piece: a key never wraps away from what it does.
    for group in incident_console::core::keys::HELP {
        assert_has(&text, &[group.title]);
        for section in group.sections {
            for (action, label) in section.entries {
                assert_has(&text, &[&format!("{} {label}", s.app.keymap.keys_for(*action))]);
            }
        }
    }
    assert_has(&text, &["config path"]);
}

#[test]

fn precheck_failure_in_the_last_check_and_the_baseline_are_visible_at_80x24() {
    let mut s = orders_loaded((80, 24));
    let o = s.current();
    s.press('p');
    let (id, order, user) = s.last_precheck();
    let mut result = precheck_ready(&o);
    result.ready = false;
    if let Some(last) = result.checks.last_mut() {
        last.passed = false;
        last.detail = Some("1 invariant(s) violated".into());
    }
    s.db(DbEvent::Precheck { id, order, user, result: Ok(result) });
    let text = s.screen();
    assert_has(&text, &["NOT READY", "FAIL user_ledger_consistent", "Baseline: balance 48250.00"]);
}

#[test]

fn every_failing_postcheck_row_is_visible_at_80x24() {
    let text = postcheck_mismatch((80, 24)).screen();
    assert_has(&text, &["FAIL balance_restored", "FAIL user_ledger_consistent"]);
}

#[test]

fn every_firing_alert_is_visible_on_the_wide_dashboard() {
    let text = alert_firing((160, 48)).screen();
    // (a long alert wraps at a word boundary, so its parts are checked apart)
    assert_has(&text, &["1 ledger violation(s), 1 failed", "post-check(s)", "12 rollbacks in the last 10 minutes"]);
    let text = batch_running((160, 48)).screen();
    assert_has(&text, &["no alerts"]);
}

#[test]

fn batch_outcome_label_and_detail_are_separated() {
    let text = batch_running((80, 24)).screen();
    assert_lacks(&text, &["rolled backrefund"]);
}

#[test]

fn the_quit_dialog_text_is_not_cut() {
    for size in SIZES {
        let text = quit_while_running(size).screen();
        assert_has(&text, &["orders in flight"]);
    }
}

/// `v` shows the whole of what is under the cursor, wrapped, never cut: the order with its
/// full ids, then a failed pre-check with every check's whole text.
#[test]
fn the_detail_of_an_order_and_of_a_precheck() {
    for size in SIZES {
        let mut s = prechecked(size, false);
        let o = s.current();
        s.focus(incident_console::console::panes::Pane::Orders);
        s.press('v');
        let text = snap(&s, "detail_order");
        assert_has(&text, &[&o.id.to_string(), &o.user_id.to_string(), "y copies the order id"]);
        s.press('q');
        assert!(s.app.details.is_none(), "any other key closes it");
        s.focus(incident_console::console::panes::Pane::Precheck);
        s.press('v');
        let text = snap(&s, "detail_precheck");
        assert_has(&text, &["Pre-check · y copies the order id", "FAIL no_active_transactions"]);
    }
}

/// The blast radius over the burst: executions per minute with the suspicion's minutes
/// marked, and the suspicion; enter makes it the filter and the selection.
#[test]
fn the_blast_radius_shows_the_burst_and_takes_it() {
    use incident_console::console::protocol::BlastData;
    use incident_console::core::blast::{Repeated, suspicions};
    for size in SIZES {
        let mut s = orders_loaded(size);
        let e = s.press('B');
        let [Command::BlastRadius { id }] = e.commands.as_slice() else { panic!("{:?}", e.commands) };
        let id = *id;
        // A quiet morning, then the burst: 30 orders in 4 minutes.
        let mut per_minute: Vec<(DateTime<Utc>, String, i64)> =
            (0..40).map(|m| (at(12, 30, 0) + Duration::minutes(m), "GBPUSD".to_string(), m % 3)).collect();
        for (m, n) in [(2, 9), (3, 9), (4, 8), (5, 4)] {
            per_minute.push((at(13, m, 0), "GBPUSD".to_string(), n));
        }
        let repeated: Vec<Repeated> = burst()
            .iter()
            .map(|r| Repeated {
                id: r.id,
                user_id: r.user_id,
                symbol: r.symbol.clone(),
                side: r.side.clone(),
                quantity: r.quantity,
                at: r.created_at,
            })
            .collect();
        let data = BlastData { per_minute, suspicions: suspicions(repeated, Duration::minutes(2)) };
        s.db(DbEvent::BlastRadius { id, result: Ok(data) });
        let text = snap(&s, "blast_radius");
        assert_has(&text, &["Blast radius", "▲", "GBPUSD 13:02:05", "30 executions"]);
        s.enter();
        assert!(s.app.blast.is_none());
        assert_eq!(s.app.orders.filter_text, "symbol:GBPUSD from:13:02 to:13:06");
        assert_eq!(s.app.orders.selected.len(), 30);
        assert!(s.screen().contains("Selected the 30 suspected repeated executions of GBPUSD"), "{}", s.screen());
    }
}

// ----------------------------------------------------------------------------------------
// Finding the burst in the list: sorted, repeats marked, orders per minute
// ----------------------------------------------------------------------------------------

/// The sort chooser on the filter line: every column with its digit, the current one with
/// its direction.
#[test]
fn the_sort_chooser_names_every_column() {
    for size in SIZES {
        let mut s = orders_loaded(size);
        s.press('S');
        let text = snap(&s, "orders_sort_chooser");
        assert_has(&text, &["sort by 1time↓ 2symbol 3side 4qty 5price 6status 7cost 8user", "again reverses it"]);
    }
}

/// At 80 columns, with costs of eight decimals and repeat marks held, the transaction's
/// id still shows: the price, the user and the marks give way first (as seen in the
/// sandbox, where they made the tx column go).
#[test]
fn the_tx_column_stays_at_80_columns_with_wide_costs_and_marks() {
    // Costs of growing width, eight decimals each: 662.55733522 to 662,557.33522000.
    for scale in [8, 7, 6, 5] {
        let mut s = connected_waiting((80, 24));
        let mut rows = page();
        for (i, r) in rows.iter_mut().enumerate() {
            r.total_cost = Some(
                Decimal::new(66_255_733_522 + i as i64, scale)
                    .round_dp_with_strategy(8, rust_decimal::RoundingStrategy::MidpointNearestEven),
            );
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let (page_id, _) = s.last_page();
        s.answer_orders(rows);
        let marks: Vec<(Uuid, i64)> = burst().iter().map(|r| (r.id, 2)).collect();
        s.db(DbEvent::RepeatMarks { id: page_id, rows: ids, marks });
        let text = s.screen();
        let heading = text.lines().find(|l| l.contains("symbol") && l.contains("quantity")).expect("the headings");
        let in_pane = heading.split(['┃', '│']).nth(1).unwrap_or_default();
        assert!(in_pane.trim_end().ends_with(" tx"), "scale {scale}:\n{text}");
    }
}

/// Sorted by quantity, largest first; the burst's repeated executions marked ×3; the
/// strip of orders per minute over the list with its peak named.
#[test]
fn sorted_by_quantity_with_repeats_marked_and_orders_per_minute() {
    use incident_console::core::orders::{OrderSort, SortColumn};
    for size in SIZES {
        let mut s = orders_loaded(size);
        s.press('S');
        s.press('4');
        let sort = OrderSort { column: SortColumn::Quantity, descending: true };
        assert_eq!(s.app.orders.sort, sort);
        let mut rows = page();
        rows.sort_by(|a, b| b.quantity.cmp(&a.quantity).then(b.id.cmp(&a.id)));
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let (page_id, _) = s.last_page();
        s.answer_orders(rows);
        // The burst's orders have two twins each; the others none.
        let marks: Vec<(Uuid, i64)> = burst().iter().map(|r| (r.id, 2)).collect();
        s.db(DbEvent::RepeatMarks { id: page_id, rows: ids, marks });
        s.press('m');
        let per_minute_id = s.last_sent("OrdersPerMinute", |c| match c {
            Command::OrdersPerMinute { id, .. } => Some(*id),
            _ => None,
        });
        let counts = [(12, 41, 1), (13, 0, 1), (13, 1, 1), (13, 2, 8), (13, 3, 9), (13, 4, 9), (13, 5, 4), (13, 7, 2)];
        let result = Ok(counts.iter().map(|&(h, m, n)| (at(h, m, 0), n)).collect());
        s.db(DbEvent::OrdersPerMinute { id: per_minute_id, result });
        let text = snap(&s, "orders_sorted_marked_per_minute");
        assert_has(&text, &["all orders, by qty ↓", "×3", "rep", "per min 12:41", "peak 9/min at 13:03"]);
        // Largest first: the 100,000 lots of the burst at the top.
        let first = text.lines().find(|l| l.contains('×')).unwrap_or_default();
        assert!(first.contains("100,000"), "{text}");
    }
}
