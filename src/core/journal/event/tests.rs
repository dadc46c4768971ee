//! Each kind writes exactly the members it always had, reads back to itself, and anything
//! not written exactly so stays unknown, as read.

use super::*;
use chrono::TimeZone;
use serde_json::json;

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(0x0192_5d3e_0000_7000_8000_0000_0000_0000 | n)
}

/// One event of every variant but `Unknown`, with the data the journal has always held
/// for it (keys sorted, as the canonical form writes them).
fn samples() -> Vec<(Event, &'static str)> {
    let since = Utc.with_ymd_and_hms(2026, 11, 26, 3, 15, 0).single().unwrap_or_default();
    vec![
        (
            Event::IncidentOpened(IncidentOpened {
                id: "INC-1".into(),
                title: "Duplicates".into(),
                level: Level::Critical,
                reason: "burst".into(),
            }),
            r#"{"id":"INC-1","level":3,"reason":"burst","title":"Duplicates"}"#,
        ),
        (
            Event::LevelChanged(LevelChanged { from: Level::Minor, to: Level::Moderate, reason: "spread".into() }),
            r#"{"from":1,"reason":"spread","to":2}"#,
        ),
        (
            Event::PhaseChanged(PhaseChanged { from: Phase::Recovery, to: Phase::PostIncident }),
            r#"{"from":"recovery","to":"post_incident"}"#,
        ),
        (
            Event::ItemTicked(ItemTicked { item: "detect".into(), auto: true, approved_by: None }),
            r#"{"auto":true,"item":"detect"}"#,
        ),
        (
            Event::ItemTicked(ItemTicked {
                item: "approval".into(),
                auto: false,
                approved_by: Some("J. Doe, CTO".into()),
            }),
            r#"{"approved_by":"J. Doe, CTO","auto":false,"item":"approval"}"#,
        ),
        (
            Event::ItemSkipped(ItemSkipped { item: "classify".into(), reason: "by phone".into() }),
            r#"{"item":"classify","reason":"by phone"}"#,
        ),
        (
            Event::ItemAssigned(ItemAssigned { item: "preserve_state".into(), role: Role::DatabaseAdmin }),
            r#"{"item":"preserve_state","role":"database_admin"}"#,
        ),
        (
            Event::RoleAssigned(RoleAssigned { role: Role::CommunicationsLead, person: "Zoë".into() }),
            r#"{"person":"Zoë","role":"communications_lead"}"#,
        ),
        (Event::Note(Note { text: "a\n\"b\"".into(), system: false }), r#"{"text":"a\n\"b\""}"#),
        (Event::Note(Note { text: "left open".into(), system: true }), r#"{"system":true,"text":"left open"}"#),
        (Event::FieldSet(FieldSet { name: "impact".into(), value: "60".into() }), r#"{"name":"impact","value":"60"}"#),
        (Event::FieldWaived(FieldWaived { name: "eta".into() }), r#"{"name":"eta"}"#),
        (
            Event::Precheck(Precheck { order: uuid(1), user: uuid(2), ready: false, failed: vec!["x".into()] }),
            r#"{"failed":["x"],"order":"01925d3e-0000-7000-8000-000000000001","ready":false,"user":"01925d3e-0000-7000-8000-000000000002"}"#,
        ),
        (
            Event::Rollback(Rollback {
                mode: "batch".into(),
                order: None,
                user: None,
                orders: 59,
                users: 11,
                refunded: "98765.4320".into(),
                success: false,
                detail: "stopped".into(),
                reason: "burst".into(),
                operation: None,
                user_ids: vec![],
            }),
            r#"{"detail":"stopped","mode":"batch","order":null,"orders":59,"reason":"burst","refunded":"98765.4320","success":false,"user":null,"users":11}"#,
        ),
        (
            Event::Rollback(Rollback {
                mode: "single".into(),
                order: Some(uuid(1)),
                user: Some(uuid(2)),
                orders: 1,
                users: 1,
                refunded: "6.666".into(),
                success: true,
                detail: "rolled back".into(),
                reason: "dup".into(),
                operation: Some(uuid(9)),
                user_ids: vec![],
            }),
            r#"{"detail":"rolled back","mode":"single","operation":"01925d3e-0000-7000-8000-000000000009","order":"01925d3e-0000-7000-8000-000000000001","orders":1,"reason":"dup","refunded":"6.666","success":true,"user":"01925d3e-0000-7000-8000-000000000002","users":1}"#,
        ),
        (
            Event::Rollback(Rollback {
                mode: "batch".into(),
                order: None,
                user: None,
                orders: 3,
                users: 2,
                refunded: "9.5".into(),
                success: true,
                detail: "3 rolled back".into(),
                reason: "dup".into(),
                operation: Some(uuid(9)),
                user_ids: vec![uuid(2), uuid(3)],
            }),
            r#"{"detail":"3 rolled back","mode":"batch","operation":"01925d3e-0000-7000-8000-000000000009","order":null,"orders":3,"reason":"dup","refunded":"9.5","success":true,"user":null,"user_ids":["01925d3e-0000-7000-8000-000000000002","01925d3e-0000-7000-8000-000000000003"],"users":2}"#,
        ),
        (
            Event::RollbackSettled(RollbackSettled {
                operation: uuid(9),
                orders: 2,
                refunded: "4.25".into(),
                was: "no outcome".into(),
                user_ids: vec![uuid(2)],
            }),
            r#"{"operation":"01925d3e-0000-7000-8000-000000000009","orders":2,"refunded":"4.25","user_ids":["01925d3e-0000-7000-8000-000000000002"],"was":"no outcome"}"#,
        ),
        (
            Event::RollbackIntended(RollbackIntended {
                operation: uuid(9),
                mode: "batch".into(),
                order: None,
                user: None,
                orders: 69,
                refund: "1234.5".into(),
                reason: "burst".into(),
            }),
            r#"{"mode":"batch","operation":"01925d3e-0000-7000-8000-000000000009","order":null,"orders":69,"reason":"burst","refund":"1234.5","user":null}"#,
        ),
        (
            Event::Postcheck(Postcheck { order: uuid(1), successful: true, failed: vec![] }),
            r#"{"failed":[],"order":"01925d3e-0000-7000-8000-000000000001","successful":true}"#,
        ),
        (
            Event::Maintenance(Maintenance { on: true, reason: "burst".into(), verified: true, symbol: None }),
            r#"{"on":true,"reason":"burst","verified":true}"#,
        ),
        (
            Event::Maintenance(Maintenance {
                on: true,
                reason: "burst".into(),
                verified: true,
                symbol: Some("GBPUSD".into()),
            }),
            r#"{"on":true,"reason":"burst","symbol":"GBPUSD","verified":true}"#,
        ),
        (
            Event::MaintenanceSeen(MaintenanceSeen {
                on: false,
                reason: "by hand".into(),
                by: Some("carol".into()),
                since: Some(since),
            }),
            r#"{"by":"carol","on":false,"reason":"by hand","seen_in_database":true,"since":"2026-11-26T03:15:00Z","verified":false}"#,
        ),
        (
            Event::MaintenanceSeen(MaintenanceSeen { on: true, reason: "x".into(), by: None, since: None }),
            r#"{"by":null,"on":true,"reason":"x","seen_in_database":true,"since":null,"verified":false}"#,
        ),
        (Event::Audit(Audit { violations: 0 }), r#"{"violations":0}"#),
        (
            Event::MessageCopied(MessageCopied {
                template: "customer_notice".into(),
                audience: "customer".into(),
                path: "/m/c.md".into(),
            }),
            r#"{"audience":"customer","path":"/m/c.md","template":"customer_notice"}"#,
        ),
        (
            Event::ReportWritten(ReportWritten { path: "/r.md".into(), hash: "ab".into() }),
            r#"{"hash":"ab","path":"/r.md"}"#,
        ),
        (
            Event::TimeSet(TimeSet {
                which: crate::core::workflow::incident::times::TimeKind::ImpactBegan,
                at: since,
                source: "commander".into(),
            }),
            r#"{"at":"2026-11-26T03:15:00Z","source":"commander","which":"impact_began"}"#,
        ),
        (Event::IncidentClosed(IncidentClosed { reason: "all clear".into() }), r#"{"reason":"all clear"}"#),
    ]
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn every_kind_writes_the_members_it_always_had_and_reads_back_to_itself() {
    for (event, expected) in samples() {
        let data = event.data();
        assert_eq!(serde_json::to_string(&data).unwrap_or_default(), expected, "{event:?}");
        let read = Event::from_parts(event.kind(), parse(expected));
        assert_eq!(read, event, "{expected}");
    }
}

#[test]
fn every_kind_is_named_as_the_journal_names_it() {
    let samples = samples();
    let mut kinds: Vec<&str> = samples.iter().map(|(e, _)| e.kind()).collect();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "incident_opened",
            "level_changed",
            "phase_changed",
            "item_ticked",
            "item_skipped",
            "item_assigned",
            "role_assigned",
            "note",
            "field_set",
            "field_waived",
            "precheck",
            "rollback",
            "rollback_settled",
            "rollback_intended",
            "postcheck",
            "maintenance",
            "audit",
            "message_copied",
            "report_written",
            "time_set",
            "incident_closed"
        ]
    );
}

#[test]
fn unknown_kinds_are_kept_as_read() {
    let data = json!({ "minutes": 12, "nested": { "b": [1, null], "a": 1.5 } });
    let e = Event::from_parts("sla_breached", data.clone());
    assert_eq!(e.kind(), "sla_breached");
    assert_eq!(e.data(), data);
    let Event::Unknown(u) = &e else { panic!("expected unknown, got {e:?}") };
    assert_eq!((u.kind(), u.data()), ("sla_breached", &data));
    assert_eq!(Unknown::of(&e), Some(u));
    assert_eq!(Note::of(&e), None);
}

#[test]
fn data_not_written_exactly_stays_unknown_and_unchanged() {
    let cases = [
        // A member added by a newer version, or one missing.
        ("note", json!({ "text": "x", "pinned": true })),
        ("note", json!({})),
        // `system` is only ever written when true.
        ("note", json!({ "text": "x", "system": false })),
        ("item_ticked", json!({ "item": "detect" })),
        // A time not as this version writes it (an offset), or a time this version has no name for.
        ("time_set", json!({ "at": "2026-11-26T03:15:00+00:00", "source": "commander", "which": "detected" })),
        ("time_set", json!({ "at": "2026-11-26T03:15:00Z", "source": "commander", "which": "noticed" })),
        // Values in another form than this version writes.
        (
            "precheck",
            json!({ "order": "01925D3E-0000-7000-8000-000000000001", "user": "01925d3e-0000-7000-8000-000000000002", "ready": true, "failed": [] }),
        ),
        ("level_changed", json!({ "from": 1, "to": 2.0, "reason": "x" })),
        ("level_changed", json!({ "from": 1, "to": 7, "reason": "x" })),
        (
            "rollback",
            json!({ "detail": "d", "mode": "single", "order": null, "orders": 1, "reason": "r", "refunded": 1.5, "success": true, "user": null, "users": 1 }),
        ),
        // `operation` is written only when known: a null one is not this version's form.
        (
            "rollback",
            json!({ "detail": "d", "mode": "single", "operation": null, "order": null, "orders": 1, "reason": "r", "refunded": "1.5", "success": true, "user": null, "users": 1 }),
        ),
        (
            "rollback_intended",
            json!({ "mode": "single", "operation": "not-a-uuid", "order": null, "orders": 1, "reason": "r", "refund": "1", "user": null }),
        ),
        ("item_assigned", json!({ "item": "x", "role": "Database Admin" })),
        ("phase_changed", json!({ "from": "assessment", "to": "post-incident" })),
        // Neither maintenance form: seen in the database yet verified, or a seen member alone.
        (
            "maintenance",
            json!({ "on": true, "reason": "r", "verified": true, "seen_in_database": true, "by": null, "since": null }),
        ),
        ("maintenance", json!({ "on": true, "reason": "r", "verified": false, "by": "x" })),
        ("maintenance", json!({ "on": true, "reason": "r", "verified": false, "seen_in_database": true })),
        (
            "maintenance",
            json!({ "on": true, "reason": "r", "verified": false, "seen_in_database": true, "by": null, "since": "2026-11-26T03:15:00+00:00" }),
        ),
        ("audit", json!({ "violations": -1 })),
        ("audit", json!([0])),
    ];
    for (kind, data) in cases {
        let e = Event::from_parts(kind, data.clone());
        assert!(matches!(e, Event::Unknown(_)), "{kind} {data}: {e:?}");
        assert_eq!((e.kind(), e.data()), (kind, data));
    }
}

#[test]
fn the_two_maintenance_forms_are_told_apart() {
    let plain = Event::from_parts("maintenance", json!({ "on": false, "reason": "r", "verified": false }));
    assert!(matches!(plain, Event::Maintenance(Maintenance { on: false, verified: false, .. })), "{plain:?}");
    let seen =
        json!({ "on": true, "reason": "r", "verified": false, "seen_in_database": true, "by": "x", "since": null });
    let seen = Event::from_parts("maintenance", seen);
    assert!(
        matches!(&seen, Event::MaintenanceSeen(MaintenanceSeen { on: true, by: Some(b), since: None, .. }) if b == "x")
    );
    assert!(Maintenance::of(&seen).is_none() && MaintenanceSeen::of(&seen).is_some());
}
