//! Fixed data the in-process console tests share: one clock (2026-11-25, the incident
//! declared at 13:08), ids whose first eight hex digits (what the console shows) are chosen,
//! a burst of identical GBPUSD orders, and the worker's answers about them (pre-check,
//! rollback with post-check, maintenance state). Data that only one module's screens show
//! (its snapshots depend on every character) stays in that module.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use incident_console::core::contacts::Contact;
use incident_console::core::contract::{
    Check, MaintenanceState, OrderRow, Postcheck, Precheck, RollbackAndPostcheck, RollbackResult,
};

/// The incident's title in the tests that open one.
pub const TITLE: &str = "Duplicate GBPUSD executions after deploy 4711";

/// The operator who opens the incident and writes its journal.
pub const OPERATOR: &str = "alice";
/// The incident of the console's snapshots: an id of the form new incidents get, fixed.
pub const INCIDENT_ID: &str = "INC-20261125-1308-k7m2p9qx";

/// A time on the day of the incident, 2026-11-25, UTC.
pub fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, h, m, s).single().expect("a valid time")
}

/// The incident was declared at 13:08.
pub fn t0() -> DateTime<Utc> {
    at(13, 8, 0)
}

/// An id whose first eight hex digits (what the console shows) are `head`, with the version
/// and variant bits of a v4 UUID.
pub fn id(head: u32, tail: u32) -> Uuid {
    Uuid::from_u128((u128::from(head) << 96) | 0x4000_8000_0000_0000_0000 | u128::from(tail))
}

/// Order `i` of a burst: identical GBPUSD buys created one second apart, backwards from
/// 13:06 (so newest first as `i` grows), five users, two orders per transaction group.
pub fn row(i: u32) -> OrderRow {
    let created = at(13, 6, 0) - Duration::seconds(i64::from(i));
    OrderRow {
        id: id(0x0b5e_0000 + i, i),
        user_id: id(0x7e57_a000 + i % 5, i % 5),
        symbol: "GBPUSD".into(),
        side: "buy".into(),
        order_type: "market".into(),
        quantity: Decimal::from(10_000),
        price: Some(Decimal::new(12_650, 4)),
        status: "executed".into(),
        transaction_id: Some(id(0x7a00_0000 + i / 2, i / 2)),
        total_cost: Some(Decimal::new(1_265_000, 2)),
        commission: Some(Decimal::new(250, 2)),
        failure_reason: None,
        rolled_back_reason: None,
        created_at: created,
        executed_at: Some(created),
        rolled_back_at: None,
    }
}

/// Orders `range` of the burst, in that order.
pub fn rows(range: std::ops::Range<u32>) -> Vec<OrderRow> {
    range.map(row).collect()
}

/// A named check of a pre- or post-check, with a detail and nothing expected.
pub fn check(name: &str, passed: bool, detail: &str) -> Check {
    Check { check: name.into(), passed, detail: Some(detail.into()), expected: None, actual: None, violations: None }
}

/// The baseline `rollback_precheck` captures for an order of the burst.
pub fn baseline(o: &OrderRow) -> Value {
    json!({
        "version": 1,
        "order_id": o.id,
        "user_id": o.user_id,
        "captured_at": "2026-11-25T13:10:00+00:00",
        "order_status": "executed",
        "failure_reason": null,
        "transaction_id": o.transaction_id,
        "balance": "48250.00",
        "margin_used": "12650.00",
        "open_positions": 4,
        "expected_refund": "12650.00",
        "expected_margin_release": "1265.00",
        "group": {"order_ids": [o.id], "skipped": [], "expected_refund": "12650.00", "expected_margin_release": "1265.00"}
    })
}

/// A pre-check of `o`; when not `ready`, its `no_active_transactions` check failed.
pub fn precheck(o: &OrderRow, ready: bool) -> Precheck {
    Precheck {
        ready,
        error_code: None,
        checks: vec![
            check("order_executed", true, "status executed"),
            check("no_active_transactions", ready, "0 order(s) of the user pending or executing"),
        ],
        baseline: Some(baseline(o)),
    }
}

/// `o` rolled back alone; its post-check passed, or found the balance not restored.
pub fn rolled_back(o: &OrderRow, postcheck_passes: bool) -> RollbackAndPostcheck {
    RollbackAndPostcheck {
        rollback: RollbackResult {
            success: true,
            error_code: None,
            message: None,
            mode: Some("single".into()),
            order_ids: Some(vec![o.id]),
            refunded: o.total_cost,
            margin_released: Some(Decimal::new(126_500, 2)),
            transfers_reversed: Some(2),
            duration_us: Some(30_000),
            skipped: None,
            already_rolled_back: None,
            status: None,
            reply_lost: None,
            breaker_opened: false,
        },
        postcheck: Some(Postcheck {
            successful: postcheck_passes,
            error_code: None,
            mode: Some("single".into()),
            order_ids: Some(vec![o.id]),
            checks: vec![
                check("order_rolled_back", true, "detail"),
                check("balance_restored", postcheck_passes, "detail"),
            ],
        }),
    }
}

/// Maintenance mode off, as `system_settings` says when nobody switched it.
pub fn maintenance_off() -> MaintenanceState {
    MaintenanceState {
        maintenance_mode: false,
        maintenance_reason: None,
        maintenance_since: None,
        maintenance_by: None,
        symbols: Vec::new(),
        breaker: None,
    }
}

/// Maintenance mode on since `since`, switched by `by` for `reason`.
pub fn maintenance_on(reason: &str, since: DateTime<Utc>, by: &str) -> MaintenanceState {
    MaintenanceState {
        maintenance_mode: true,
        maintenance_reason: Some(reason.into()),
        maintenance_since: Some(since),
        maintenance_by: Some(by.into()),
        symbols: Vec::new(),
        breaker: None,
    }
}

/// A `[[contact]]` entry of the config file.
pub fn contact(role: &str, name: &str, phone: &str, email: Option<&str>) -> Contact {
    Contact { role: role.into(), name: name.into(), phone: Some(phone.into()), email: email.map(Into::into) }
}
