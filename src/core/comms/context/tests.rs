//! The message context's template variables.

use super::*;
use chrono::TimeZone;
use std::str::FromStr;

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0).single().unwrap_or_default()
}

#[test]
fn formats() {
    assert_eq!(time(at(7, 48)), "2026-11-26 07:48 UTC");
    assert_eq!(duration(Duration::minutes(12)), "12m");
    assert_eq!(duration(Duration::minutes(65)), "1h 05m");
    assert_eq!(duration(Duration::minutes(1440 + 180)), "1d 3h 00m");
    assert_eq!(duration(Duration::minutes(-3)), "0m");
    assert_eq!(money(Decimal::from_str("12.50000000").unwrap_or_default()), "12.50");
    assert_eq!(money(Decimal::from_str("3").unwrap_or_default()), "3.00");
    assert_eq!(money(Decimal::from_str("0.00012345").unwrap_or_default()), "0.00012345");
}

#[test]
fn absent_facts_are_undefined_not_null() {
    let ctx = MessageContext::new("INC-1", "t", Level::Minor, at(7, 0), at(7, 10));
    let v = ctx.to_value();
    assert!(v.get("audit").is_none());
    assert!(v.get("next_update_due").is_none(), "Level 1 updates on change");
    assert!(v.get("commander").is_none());
    assert!(v["maintenance"].get("since").is_none());
    assert_eq!(v["update_every"], "on change");
    assert_eq!(v["incident"]["status"], "Investigating");
}

#[test]
fn level3_cadence_and_counts() {
    let mut ctx = MessageContext::new("INC-1", "t", Level::Critical, at(7, 48), at(7, 50));
    ctx.rollbacks.push(RollbackRecord {
        at: at(8, 0),
        order_id: "o".into(),
        user_id: "u".into(),
        scope: "order".into(),
        reason: "r".into(),
        succeeded: true,
        outcome: "rolled_back".into(),
        outcome_recorded: true,
        orders_reversed: 2,
        refunded: Decimal::from_str("10.5").unwrap_or_default(),
        precheck: None,
        postcheck: None,
    });
    let v = ctx.to_value();
    assert_eq!(v["next_update_due"], "2026-11-26 08:03 UTC");
    assert_eq!(v["next_customer_notice_due"], "2026-11-26 07:53 UTC");
    assert_eq!(v["update_every_minutes"], 15);
    assert_eq!(v["rollbacks"]["orders_reversed"], 2);
    assert_eq!(v["rollbacks"]["refunded_total"], "10.50");
    assert_eq!(ctx.internal_values(), vec!["o".to_string(), "u".to_string()]);
}

/// A batch that did not complete (a refusal, an unknown outcome, an interruption) still
/// moved the money of the orders it did roll back: the totals count them. An intent with
/// no outcome counts nothing (its figures are what it meant to do).
#[test]
fn totals_count_what_incomplete_rollbacks_moved_and_not_what_intents_meant() {
    let mut ctx = MessageContext::new("INC-1", "t", Level::Moderate, at(7, 48), at(7, 50));
    let record = |succeeded: bool, recorded: bool, orders: u64, refunded: &str| RollbackRecord {
        at: at(8, 0),
        order_id: String::new(),
        user_id: String::new(),
        scope: "batch".into(),
        reason: "r".into(),
        succeeded,
        outcome: String::new(),
        outcome_recorded: recorded,
        orders_reversed: orders,
        refunded: Decimal::from_str(refunded).unwrap_or_default(),
        precheck: None,
        postcheck: None,
    };
    ctx.rollbacks.push(record(true, true, 2, "10.5"));
    ctx.rollbacks.push(record(false, true, 57, "1000.25"));
    ctx.rollbacks.push(record(false, false, 60, "0"));
    let v = ctx.to_value();
    assert_eq!(v["rollbacks"]["orders_reversed"], 59);
    assert_eq!(v["rollbacks"]["refunded_total"], "1010.75");
    assert_eq!(v["rollbacks"]["unrecorded"], 1);
}

#[test]
fn times_count_the_duration_from_impact_began_else_from_the_detection_and_say_which() {
    // Opened at 00:25, the burst began at 13:02 the day before.
    let opened = Utc.with_ymd_and_hms(2026, 11, 26, 0, 25, 0).single().unwrap_or_default();
    let mut ctx = MessageContext::new("INC-1", "t", Level::Critical, opened, opened + Duration::minutes(4));
    let v = ctx.to_value();
    assert!(v["times"].get("impact_began").is_none(), "never guessed");
    assert_eq!(v["times"]["detected"], "2026-11-26 00:25 UTC");
    assert_eq!(v["times"]["detected_source"], "incident opened");
    assert_eq!(v["times"]["duration"], "4m");
    assert_eq!(v["times"]["duration_from"], "detection (impact began not set)");
    assert_eq!(v["incident"]["closed"], false);

    let began = Utc.with_ymd_and_hms(2026, 11, 25, 13, 2, 0).single().unwrap_or_default();
    ctx.times.impact_began = Some((began, "commander".into()));
    ctx.times.resolved = Some(opened + Duration::minutes(2));
    ctx.closed = Some((opened + Duration::minutes(3), "all clear".into()));
    let v = ctx.to_value();
    assert_eq!(v["times"]["impact_began"], "2026-11-25 13:02 UTC");
    assert_eq!(v["times"]["duration_from"], "impact began");
    // 13:02 to 00:27 the next day: it stops at the resolution, not at now.
    assert_eq!(v["times"]["duration"], "11h 25m");
    assert_eq!(v["times"]["duration_ended"], true);
    assert_eq!((v["incident"]["closed"].clone(), v["incident"]["status"].clone()), (json!(true), json!("Closed")));
    assert_eq!(v["incident"]["close_reason"], "all clear");
}
