//! The message templates against a realistic Level 3 incident: every template renders with
//! the facts in it, strictness, required fields, the customer leak check, user overrides,
//! and the clipboard sequences.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use incident_console::core::comms::{
    AuditResult, CheckLine, CheckResult, CommsError, Draft, JournalSummary, LeakKind, LevelChange, MaintenancePeriod,
    MaintenanceState, MessageContext, OpenItem, PhaseSpan, RoleAssignment, RollbackRecord, SentMessage, TemplateSource,
    TemplateStore, TimelineEntry, WAIVED_MARKER, osc52, osc52_tmux, refill,
};
use incident_console::core::workflow::{Level, Phase};
use rust_decimal::Decimal;
use serde_json::Value;

const ORDER_1: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
const ORDER_2: &str = "1b4e28ba-2fa1-11d2-883f-0016cb7ac2e1";
const USER_1: &str = "550e8400-e29b-41d4-a716-446655440000";
const USER_2: &str = "9a1f4c2e-0d7b-4f5e-8c3a-2b6d7e8f9a01";
const DB_HOST: &str = "pg-primary.trading.internal";

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, h, m, 0).single().unwrap_or_default()
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_default()
}

fn check(name: &str, passed: bool, detail: Option<&str>) -> CheckLine {
    CheckLine { check: name.into(), passed, detail: detail.map(Into::into) }
}

/// A Level 3 incident in Recovery at 09:20: raised from Level 2, maintenance mode on since
/// 08:05, two rollbacks (one refused), a clean ledger audit.
fn incident() -> MessageContext {
    let mut c = MessageContext::new(
        "INC-20261126-0748",
        "Duplicate executions after deploy 4.2",
        Level::Critical,
        at(7, 48),
        at(9, 20),
    );
    c.phase = Phase::Recovery;
    c.phase_since = at(8, 50);
    c.phases = vec![
        PhaseSpan { phase: Phase::Assessment, started_at: at(7, 48), ended_at: Some(at(8, 2)) },
        PhaseSpan { phase: Phase::Response, started_at: at(8, 2), ended_at: Some(at(8, 50)) },
        PhaseSpan { phase: Phase::Recovery, started_at: at(8, 50), ended_at: None },
    ];
    c.orders_affected = 37;
    c.users_affected = 12;
    c.rollbacks = vec![
        RollbackRecord {
            at: at(8, 55),
            order_id: ORDER_1.into(),
            user_id: USER_1.into(),
            scope: "transaction".into(),
            reason: "duplicate execution after deploy 4.2".into(),
            succeeded: true,
            outcome: "rolled_back".into(),
            outcome_recorded: true,
            orders_reversed: 3,
            refunded: dec("1520.25000000"),
            precheck: Some(CheckResult {
                passed: true,
                checks: vec![
                    check("order_exists", true, None),
                    check("no_active_transactions", true, Some("0 pending")),
                ],
            }),
            postcheck: Some(CheckResult {
                passed: true,
                checks: vec![check("balance_restored", true, Some("matches baseline"))],
            }),
        },
        RollbackRecord {
            at: at(9, 1),
            order_id: ORDER_2.into(),
            user_id: USER_2.into(),
            scope: "order".into(),
            reason: "duplicate execution after deploy 4.2".into(),
            succeeded: false,
            outcome: "already_rolled_back".into(),
            outcome_recorded: true,
            orders_reversed: 0,
            refunded: Decimal::ZERO,
            precheck: Some(CheckResult {
                passed: false,
                checks: vec![check("not_rolled_back", false, Some("status rolled_back"))],
            }),
            postcheck: None,
        },
    ];
    c.maintenance = MaintenanceState {
        on: true,
        since: Some(at(8, 5)),
        reason: Some("stop new orders during rollback".into()),
        symbols: vec![],
    };
    c.maintenance_periods =
        vec![MaintenancePeriod { from: at(8, 5), until: None, reason: "stop new orders during rollback".into() }];
    c.roles = vec![
        RoleAssignment { role: "Incident Commander".into(), name: "Ada Lovelace".into() },
        RoleAssignment { role: "Database Admin".into(), name: "Edgar Codd".into() },
    ];
    c.next_update_due = Some(at(9, 30));
    c.audit = Some(AuditResult { at: at(9, 12), violations: 0 });
    c.level_history = vec![LevelChange {
        at: at(7, 58),
        from: Level::Moderate,
        to: Level::Critical,
        reason: "data corruption: balances wrong".into(),
        operator: "ada".into(),
    }];
    c.timeline = vec![
        TimelineEntry {
            at: at(7, 48),
            operator: "ada".into(),
            kind: "incident".into(),
            text: "opened at Level 2".into(),
        },
        TimelineEntry {
            at: at(8, 5),
            operator: "ada".into(),
            kind: "maintenance".into(),
            text: "maintenance mode on, verified".into(),
        },
        TimelineEntry {
            at: at(8, 55),
            operator: "ada".into(),
            kind: "rollback".into(),
            text: format!("rolled back transaction of {ORDER_1}"),
        },
    ];
    c.messages_sent = vec![SentMessage {
        at: at(7, 52),
        template: "customer_notice".into(),
        path: Some("/data/INC/20261126T075200Z-customer_notice.md".into()),
    }];
    c.open_items = vec![OpenItem {
        phase: Phase::Recovery,
        item: "Restore gradually".into(),
        assignee: Some("Technical Lead".into()),
    }];
    c.journal = Some(JournalSummary { entries: 42, final_hash: "ab12cd34ef56".into(), verified: true });
    c.internal.order_ids = vec![ORDER_1.into(), ORDER_2.into(), "ORD-77123".into()];
    c.internal.user_ids = vec![USER_1.into(), USER_2.into()];
    c.internal.hosts = vec![DB_HOST.into()];
    c
}

fn filled() -> MessageContext {
    let mut c = incident();
    c.set_field("impact", format!("37 orders executed twice; first seen on order {ORDER_1} via {DB_HOST}"));
    c.set_field("estimated_resolution", "2 hours");
    c.set_field("customer_resolution", "2 hours");
    c.set_field("customer_impact", "Some orders placed this morning may have been executed twice.");
    c.set_field("conditions", "Duplicates stopped; 12 users affected.");
    c.set_field("actions", "Rolled back the bad burst.");
    c.set_field("needs", "Compliance to review the customer notice.");
    c.set_field("resolution_summary", "The faulty release was withdrawn.");
    c.set_field("summary", "A deploy executed orders twice.");
    c.set_field("root_cause", "Retry without idempotency key.");
    c.set_field("lessons_learned", "Test retries against the idempotency contract.");
    c
}

fn render(store: &TemplateStore, name: &str, ctx: &MessageContext) -> String {
    match store.render(name, &ctx.to_value()) {
        Ok(r) => r.text,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn assert_has(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "missing {n:?} in:\n{text}");
    }
}

#[test]
fn internal_alert_renders_the_incident() {
    let text = render(&TemplateStore::shipped(), "internal_alert", &filled());
    assert_has(
        &text,
        &[
            "INCIDENT ALERT - Level 3 (CRITICAL)",
            "INC-20261126-0748",
            "Duplicate executions after deploy 4.2",
            // Impact began not set: counted from the detection (the opening), and said so.
            "Time: 2026-11-26 09:20 UTC (detected 2026-11-26 07:48 UTC, 1h 32m ago)",
            "Affected so far: 37 orders, 12 users",
            "Status: Recovering - phase Recovery since 2026-11-26 08:50 UTC",
            "Maintenance mode: ON since 2026-11-26 08:05 UTC (stop new orders during rollback) - new orders are refused",
            "Rollbacks by this incident: 3 orders reversed, 1520.25 refunded (2 runs: 1 succeeded, 1 failed)",
            "Ledger audit (2026-11-26 09:12 UTC): consistent",
            "Next update: 2026-11-26 09:30 UTC (updates every 15 minutes)",
            "- Incident Commander: Ada Lovelace",
            "- Database Admin: Edgar Codd",
            "Estimated resolution: 2 hours",
            ORDER_1,
        ],
    );
    assert!(!text.contains("[to fill"), "{text}");
    assert!(!text.contains("Detected:"), "{text}");
    // Impact began set: counted from it, the detection on a line of its own.
    let mut c = filled();
    c.times.impact_began = Some((at(7, 10), "commander".into()));
    let text = render(&TemplateStore::shipped(), "internal_alert", &c);
    assert_has(
        &text,
        &[
            "Time: 2026-11-26 09:20 UTC (impact began 2026-11-26 07:10 UTC, 2h 10m ago)\nDetected: 2026-11-26 07:48 UTC\n",
        ],
    );
}

#[test]
fn customer_notice_renders_and_mentions_maintenance() {
    let mut c = filled();
    c.times.impact_began = Some((at(7, 10), "commander".into()));
    let r = TemplateStore::shipped().render_for_copy("customer_notice", &c.to_value(), &[]);
    let text = match r {
        Ok(r) => r.text,
        Err(e) => panic!("{e}"),
    };
    assert_has(
        &text,
        &[
            "[URGENT] Service Notice - Order Execution Platform",
            "Since 2026-11-26 07:10 UTC, we have been experiencing technical difficulties",
            "New order processing has been temporarily suspended since 2026-11-26 08:05 UTC",
            "- New order placement is temporarily unavailable",
            "Some orders placed this morning may have been executed twice.",
            "We expect to resolve this within 2 hours and will provide updates every 15 minutes.",
            "Trade-X-Pro-Global Support Team",
        ],
    );
}

#[test]
fn customer_notice_without_maintenance_and_at_level_1() {
    let mut c = filled();
    c.maintenance = MaintenanceState::default();
    c.level = Level::Minor;
    let text = render(&TemplateStore::shipped(), "customer_notice", &c);
    assert_has(
        &text,
        &[
            "[NOTICE] Service Notice",
            "Our team is working to resolve the issue.",
            "keep you informed as the situation changes",
        ],
    );
    assert!(!text.contains("suspended"), "{text}");
    // Impact began not set: no start is claimed (the opening is not when customers were hit).
    assert!(text.contains("We are currently experiencing") && !text.contains("Since "), "{text}");
    assert!(!text.contains("temporarily unavailable"), "{text}");
}

#[test]
fn one_symbols_maintenance_is_said_in_the_alert_the_update_and_the_customer_notice() {
    let mut c = filled();
    c.maintenance = MaintenanceState { symbols: vec!["GBPUSD".into()], ..MaintenanceState::default() };
    let alert = render(&TemplateStore::shipped(), "internal_alert", &c);
    assert!(alert.contains("Maintenance mode: ON for GBPUSD only - new orders of GBPUSD are refused"), "{alert}");
    let update = render(&TemplateStore::shipped(), "status_update", &c);
    assert!(update.contains("- Maintenance mode: ON for GBPUSD only"), "{update}");
    let notice = render(&TemplateStore::shipped(), "customer_notice", &c);
    assert!(notice.contains("New orders for GBPUSD have been temporarily suspended"), "{notice}");
    assert!(notice.contains("- New orders for GBPUSD are temporarily unavailable"), "{notice}");
    assert!(!notice.contains("New order placement is temporarily unavailable"), "{notice}");
}

#[test]
fn status_update_renders_conditions_actions_needs_and_next_update() {
    let text = render(&TemplateStore::shipped(), "status_update", &filled());
    assert_has(
        &text,
        &[
            "STATUS UPDATE - INC-20261126-0748 - Level 3 (CRITICAL)",
            "phase Recovery since 2026-11-26 08:50 UTC (30m of 3h 00m)",
            "**Conditions**",
            "Duplicates stopped; 12 users affected.",
            "**Actions**",
            "Rolled back the bad burst.",
            "- Rollbacks: 1 succeeded, 1 failed (3 orders reversed, 1520.25 refunded)",
            "**Needs**",
            "Compliance to review the customer notice.",
            "**Next update:** 2026-11-26 09:30 UTC",
            "Incident Commander: Ada Lovelace",
        ],
    );
    // Open: how long, and the impact counted from the detection (impact began unset).
    assert!(text.contains("; incident open for "), "{text}");
    assert!(text.contains("impact so far ") && text.contains("(from detection (impact began not set))"), "{text}");

    // Impact began set and the incident closed: the update says so, not "open".
    let mut c = filled();
    c.times.impact_began = Some((at(7, 2), "commander".into()));
    c.closed = Some((at(9, 45), "all reversed".into()));
    let text = render(&TemplateStore::shipped(), "status_update", &c);
    assert!(text.contains("incident closed at 2026-11-26 09:45 UTC"), "{text}");
    assert!(!text.contains("incident open"), "{text}");
    assert!(text.contains("(from impact began)"), "{text}");
    assert!(text.contains("**Next update:** none: the incident is closed"), "{text}");
}

#[test]
fn resolution_notice_states_data_integrity() {
    let mut c = filled();
    c.maintenance = MaintenanceState::default();
    c.resolved_at = Some(at(9, 40));
    let r = TemplateStore::shipped().render_for_copy("resolution_notice", &c.to_value(), &[]);
    let text = match r {
        Ok(r) => r.text,
        Err(e) => panic!("{e}"),
    };
    assert_has(
        &text,
        &[
            "[RESOLVED] Service Notice",
            "that we detected at 2026-11-26 07:48 UTC have been resolved as of 2026-11-26 09:40 UTC.",
            "The faulty release was withdrawn.",
            "Orders that were executed in error (3 in total) have been reversed",
            "Order placement is available again.",
            "Data integrity: a full audit of our account ledger, completed at 2026-11-26 09:12 UTC, found no inconsistencies",
        ],
    );
    c.times.impact_began = Some((at(7, 10), "commander".into()));
    let text = render(&TemplateStore::shipped(), "resolution_notice", &c);
    assert_has(&text, &["that began at 2026-11-26 07:10 UTC have been resolved as of 2026-11-26 09:40 UTC."]);
}

#[test]
fn resolution_notice_reports_discrepancies_honestly() {
    let mut c = filled();
    c.audit = Some(AuditResult { at: at(9, 12), violations: 4 });
    let text = render(&TemplateStore::shipped(), "resolution_notice", &c);
    assert_has(&text, &["found 4 discrepancies"]);
    assert!(!text.contains("no inconsistencies"), "{text}");
}

#[test]
fn resolution_notice_without_an_audit_is_an_error_naming_it() {
    let mut c = filled();
    c.audit = None;
    let err = TemplateStore::shipped()
        .render("resolution_notice", &c.to_value())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("missing variable `audit"), "{err}");
}

#[test]
fn post_incident_report_covers_everything() {
    let text = render(&TemplateStore::shipped(), "post_incident_report", &filled());
    assert_has(
        &text,
        &[
            "# Post-incident report - INC-20261126-0748",
            "| Level | Level 3 (CRITICAL) |",
            "| Commander | Ada Lovelace |",
            "| Impact began | not set |",
            "| Detected | 2026-11-26 07:48 UTC (incident opened) |",
            "| Duration | 1h 32m from detection (impact began not set) (still open) |",
            "| Closed | not closed |",
            "A deploy executed orders twice.",
            "Retry without idempotency key.",
            // level history
            "- 2026-11-26 07:58:00 UTC: Level 2 (MODERATE) -> Level 3 (CRITICAL) by ada: data corruption: balances wrong",
            // time in each phase
            "| Assessment | 2026-11-26 07:48 UTC | 2026-11-26 08:02 UTC | 14m | 15m |",
            "| Response | 2026-11-26 08:02 UTC | 2026-11-26 08:50 UTC | 48m | 45m (exceeded) |",
            "| Recovery | 2026-11-26 08:50 UTC | (current) | 30m | 3h 00m |",
            // rollbacks with pre- and post-checks
            &format!("### 1. 2026-11-26 08:55:00 UTC - order {ORDER_1}\n\n- Scope: transaction\n- User: {USER_1}"),
            "- Outcome: rolled_back (3 orders reversed, 1520.25 refunded)",
            "- Pre-check: ready",
            "  - [x] no_active_transactions: 0 pending",
            "- Post-check: successful",
            "  - [x] balance_restored: matches baseline",
            &format!("### 2. 2026-11-26 09:01:00 UTC - order {ORDER_2}\n\n- Scope: order"),
            "- Outcome: already_rolled_back",
            "- Pre-check: NOT ready",
            "  - [ ] not_rolled_back: status rolled_back",
            "- Post-check: not run",
            // maintenance periods
            "- 2026-11-26 08:05 UTC to still on (1h 15m): stop new orders during rollback",
            // messages sent
            "- 2026-11-26 07:52:00 UTC: customer_notice (`/data/INC/20261126T075200Z-customer_notice.md`)",
            // audit, open items, lessons, timeline, hash
            "The ledger audit at 2026-11-26 09:12 UTC found no inconsistencies",
            "- [ ] Recovery: Restore gradually (assigned to Technical Lead)",
            "Test retries against the idempotency contract.",
            "- 2026-11-26 08:05:00 UTC [ada] maintenance: maintenance mode on, verified",
            "Journal: 42 entries, final hash `ab12cd34ef56` (chain verified).",
        ],
    );
}

#[test]
fn post_incident_report_with_empty_lists() {
    let mut c = filled();
    c.rollbacks.clear();
    c.maintenance_periods.clear();
    c.messages_sent.clear();
    c.open_items.clear();
    c.level_history.clear();
    c.audit = None;
    let text = render(&TemplateStore::shipped(), "post_incident_report", &c);
    assert_has(
        &text,
        &[
            "No rollbacks were executed.",
            "Maintenance mode was not used.",
            "No messages were recorded.",
            "None: every item was ticked or skipped with a reason.",
            "Level 3 (CRITICAL) throughout",
            "The ledger audit was NOT run",
        ],
    );
}

#[test]
fn a_missing_variable_fails_with_its_name() {
    let store = TemplateStore::shipped();
    let mut v = filled().to_value();
    if let Value::Object(o) = &mut v {
        o.remove("company");
    }
    let err = store.render("customer_notice", &v).err();
    assert!(matches!(&err, Some(CommsError::MissingVariable { variable, .. }) if variable == "company"), "{err:?}");
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("missing variable `company`"), "{msg}");
    assert!(msg.contains("customer_notice.md.j2"), "{msg}");

    let mut v = filled().to_value();
    if let Some(Value::Object(r)) = v.get_mut("rollbacks") {
        r.remove("refunded_total");
    }
    let msg = store.render("internal_alert", &v).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("`rollbacks.refunded_total`"), "{msg}");

    // Every template fails on an empty context rather than printing holes.
    for info in store.list() {
        let err = store.render(&info.name, &serde_json::json!({})).err();
        assert!(matches!(err, Some(CommsError::MissingVariable { .. })), "{}: {err:?}", info.name);
    }
}

#[test]
fn required_fields_are_listed_and_copy_refused_until_filled_or_waived() {
    let store = TemplateStore::shipped();
    let mut c = incident();
    let required: Vec<(String, Vec<String>)> = store.list().into_iter().map(|i| (i.name, i.required)).collect();
    assert_eq!(
        required,
        vec![
            ("internal_alert".to_string(), vec!["impact".to_string(), "estimated_resolution".to_string()]),
            ("status_update".to_string(), vec!["conditions".into(), "actions".into(), "needs".into()]),
            ("customer_notice".to_string(), vec!["customer_impact".into(), "customer_resolution".into()]),
            ("resolution_notice".to_string(), vec!["resolution_summary".into()]),
            ("post_incident_report".to_string(), vec!["summary".into(), "root_cause".into(), "lessons_learned".into()]),
        ]
    );

    assert_eq!(
        store.missing_fields("internal_alert", &c.to_value()).ok(),
        Some(vec!["impact".into(), "estimated_resolution".into()])
    );
    // The preview renders, with the holes visible.
    let preview = store.render("internal_alert", &c.to_value());
    let preview = match preview {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(preview.missing, vec!["impact".to_string(), "estimated_resolution".to_string()]);
    assert!(!store.blockers(&preview, &preview.text, &[]).is_clear());
    assert!(preview.text.contains("Impact: [to fill: impact]"), "{}", preview.text);

    let err = store.render_for_copy("internal_alert", &c.to_value(), &[]).err();
    assert!(
        matches!(&err, Some(CommsError::FieldsMissing { fields, .. }) if fields == &["impact", "estimated_resolution"])
    );
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("impact, estimated_resolution"), "{msg}");

    c.set_field("impact", "orders executed twice");
    let err = store.render_for_copy("internal_alert", &c.to_value(), &[]).err();
    assert!(matches!(&err, Some(CommsError::FieldsMissing { fields, .. }) if fields == &["estimated_resolution"]));

    c.waive("estimated_resolution");
    let r = store.render_for_copy("internal_alert", &c.to_value(), &[]);
    let r = match r {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(r.waived, vec!["estimated_resolution".to_string()]);
    assert!(r.text.contains(&format!("Estimated resolution: {WAIVED_MARKER}")), "{}", r.text);
    assert!(store.blockers(&r, &r.text, &[]).is_clear());
}

#[test]
fn customer_notice_never_leaks_order_or_user_ids() {
    let store = TemplateStore::shipped();
    let ctx = filled();
    let internal: Vec<String> = ctx.internal_values();
    // The context carries the ids (the internal alert and the report show them) ...
    let alert = render(&store, "internal_alert", &ctx);
    assert!(alert.contains(ORDER_1));
    let report = render(&store, "post_incident_report", &ctx);
    assert!(report.contains(USER_2));
    // ... but the shipped customer templates print none of them.
    for name in ["customer_notice", "resolution_notice"] {
        let r = store.render_for_copy(name, &ctx.to_value(), &internal);
        let text = match r {
            Ok(r) => r.text,
            Err(e) => panic!("{name}: {e}"),
        };
        for id in internal.iter().chain([&"ORD-77123".to_string()]) {
            assert!(!text.to_lowercase().contains(&id.to_lowercase()), "{name} leaks {id}:\n{text}");
        }
    }

    // A person types an order id into a customer field: copying is refused, naming it.
    let mut c = filled();
    c.set_field("customer_impact", format!("Your order {ORDER_2} was executed twice."));
    let err = store.render_for_copy("customer_notice", &c.to_value(), &[]).err();
    match &err {
        Some(CommsError::Leak { leaks, .. }) => {
            assert!(leaks.iter().any(|l| l.found == ORDER_2 && l.kind == LeakKind::InternalValue), "{leaks:?}");
        }
        other => panic!("expected a leak error, got {other:?}"),
    }
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains(ORDER_2), "{msg}");

    // A user id, a non-UUID order reference from the caller's list, a host, an address.
    for (typed, expect) in [
        (format!("Account {USER_1} is affected."), USER_1.to_string()),
        ("Reference ORD-77123 is affected.".to_string(), "ORD-77123".to_string()),
        (format!("The database {DB_HOST} failed."), DB_HOST.to_string()),
        ("Traffic from 10.20.0.5 was blocked.".to_string(), "10.20.0.5".to_string()),
    ] {
        let mut c = filled();
        c.internal = Default::default();
        c.rollbacks.clear();
        c.set_field("customer_impact", typed.clone());
        let caller = vec!["ORD-77123".to_string()];
        let err = store.render_for_copy("customer_notice", &c.to_value(), &caller).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains(&expect), "{typed}: {msg}");
    }

    // The preview shows the leak without refusing, so the console can highlight it.
    let mut c = filled();
    c.set_field("customer_resolution", format!("2 hours ({USER_1})"));
    let r = store.render("customer_notice", &c.to_value());
    assert!(r.is_ok_and(|r| !r.leaks.is_empty()));
}

#[test]
fn internal_templates_are_not_leak_checked() {
    let r = TemplateStore::shipped().render_for_copy("internal_alert", &filled().to_value(), &[ORDER_1.to_string()]);
    assert!(r.is_ok_and(|r| r.text.contains(ORDER_1) && r.leaks.is_empty()));
}

#[test]
fn a_user_template_overrides_the_shipped_one() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("customer_notice.md.j2"),
        "{#-\ntitle: Our notice\naudience: internal\nrequired: headline\n-#}\nHEADLINE {{ fields.headline }} at {{ generated_at }}\n",
    )?;
    std::fs::write(
        dir.path().join("regulator_notice.md.j2"),
        "{# title: Regulator\naudience: internal #}\nTo the regulator: {{ incident.id }}\n",
    )?;
    std::fs::write(dir.path().join("no_header.md.j2"), "plain {{ incident.id }}\n")?;
    std::fs::write(dir.path().join("broken.md.j2"), "{# title: Broken\naudience: internal #}\n{% if %}\n")?;
    std::fs::write(dir.path().join("README.txt"), "not a template")?;
    let store = incident_console::store::config::load_templates(Some(dir.path()))?;

    let info = store.info("customer_notice")?;
    assert_eq!(info.title, "Our notice");
    assert_eq!(info.source, TemplateSource::User(dir.path().join("customer_notice.md.j2")));
    assert_eq!(info.required, vec!["headline".to_string()]);
    // An override of a customer template stays a customer template (leak-checked).
    assert_eq!(info.audience.as_str(), "customer");

    let mut c = filled();
    c.set_field("headline", "All good");
    let text = store.render_for_copy("customer_notice", &c.to_value(), &[])?.text;
    assert_eq!(text, "HEADLINE All good at 2026-11-26 09:20 UTC\n");

    let names: Vec<String> = store.list().into_iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        [
            "internal_alert",
            "status_update",
            "customer_notice",
            "resolution_notice",
            "post_incident_report",
            "broken",
            "no_header",
            "regulator_notice"
        ]
    );
    assert_eq!(store.render("regulator_notice", &c.to_value())?.text, "To the regulator: INC-20261126-0748\n");
    assert_eq!(store.info("no_header")?.audience.as_str(), "customer");
    let err = store.render("broken", &c.to_value()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("broken.md.j2") && err.contains("syntax error"), "{err}");
    // The shipped ones are untouched.
    assert_eq!(store.info("internal_alert")?.source, TemplateSource::Shipped);

    // No directory: just the shipped templates.
    let none = incident_console::store::config::load_templates(Some(&dir.path().join("missing")))?;
    assert_eq!(none.list().len(), 5);
    Ok(())
}

#[test]
fn edits_survive_refilling() {
    let store = TemplateStore::shipped();
    let mut c = filled();
    let first = render(&store, "status_update", &c);
    // The person rewrites the needs line and adds a note at the end.
    let edited = first.replace("Compliance to review the customer notice.", "Compliance (Grace) to review by 09:35.")
        + "\nNote: call the exchange.\n";
    let draft = Draft { base: first, edited };
    // Later: a rollback more, next update moved.
    c.now = at(9, 31);
    c.next_update_due = Some(at(9, 45));
    c.rollbacks[1].succeeded = true;
    c.rollbacks[1].outcome = "rolled_back".into();
    let second = render(&store, "status_update", &c);
    let merged = refill(&draft, &second);
    assert_has(
        &merged,
        &[
            "Compliance (Grace) to review by 09:35.",
            "Note: call the exchange.",
            "**Next update:** 2026-11-26 09:45 UTC",
            "- Rollbacks: 2 succeeded, 0 failed",
        ],
    );
    assert!(!merged.contains("Compliance to review the customer notice."), "{merged}");
    assert!(!merged.contains("09:30 UTC"), "{merged}");
}

#[test]
fn osc52_exact_sequences() {
    let text = "Level 3 – ünïcode\n";
    // base64 of the UTF-8 bytes of the text.
    let b64 = "TGV2ZWwgMyDigJMgw7xuw69jb2RlCg==";
    assert_eq!(osc52(text), format!("\x1b]52;c;{b64}\x07"));
    assert_eq!(osc52_tmux(text), format!("\x1bPtmux;\x1b\x1b]52;c;{b64}\x07\x1b\\"));
    assert_eq!(osc52(text).as_bytes(), [b"\x1b]52;c;".as_slice(), b64.as_bytes(), b"\x07"].concat());
    assert_eq!(
        osc52_tmux(text).as_bytes(),
        [b"\x1bPtmux;\x1b\x1b]52;c;".as_slice(), b64.as_bytes(), b"\x07\x1b\\"].concat()
    );
}

#[test]
fn public_domains_from_the_config_may_appear_in_customer_text_and_no_other_host() {
    let mut c = filled();
    c.set_field("customer_impact", "See status.example.com for updates; db7.prod.internal was restarted.");
    let plain = TemplateStore::shipped();
    let rendered = plain.render("customer_notice", &c.to_value()).unwrap_or_else(|e| panic!("{e}"));
    let hosts = |store: &TemplateStore| -> Vec<String> {
        store.blockers(&rendered, &rendered.text, &c.internal_values()).leaks.iter().map(|l| l.found.clone()).collect()
    };
    // Without public domains both host names are internal details.
    let both = hosts(&plain);
    assert!(both.iter().any(|h| h.contains("status.example.com")), "{both:?}");
    assert!(both.iter().any(|h| h.contains("db7.prod.internal")), "{both:?}");
    // With the company's domain configured, only the internal host is refused.
    let configured = TemplateStore::shipped().with_public_domains(vec!["example.com".into()]);
    let left = hosts(&configured);
    assert!(!left.iter().any(|h| h.contains("example.com")), "{left:?}");
    assert!(left.iter().any(|h| h.contains("db7.prod.internal")), "{left:?}");
    // The copy rule is the same one: render_for_copy refuses for the internal host.
    let err = configured.render_for_copy("customer_notice", &c.to_value(), &[]).err();
    assert!(matches!(err, Some(CommsError::Leak { .. })), "{err:?}");
}
