//! Round trip of typed events: what the incident decides is appended, and reading the
//! journal back gives the very same typed events (none falls back to unknown), whatever the
//! texts, numbers, ids and times in them.

use chrono::{DateTime, TimeZone, Utc};
use incident_console::core::workflow::checklist::Checklist;
use incident_console::core::workflow::incident::{Observation, Role, Step};
use incident_console::core::workflow::{Level, Phase};
use incident_console::store::incidents::{IncidentStore, fold};
use incident_console::store::journal::Event;
use proptest::prelude::*;
use uuid::Uuid;

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..32_503_680_000, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| Utc.timestamp_opt(secs, nanos).single().unwrap_or_default())
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

/// Any text, control characters and all: observations carry what the database said.
fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}|[\\x00-\\x7f]{0,8}"
}

/// Text a person may type (the workflow refuses the rest, which is its own test's business).
fn typed() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 .,:\"\\\\éß€—]{1,24}"
}

fn observation() -> impl Strategy<Value = Observation> {
    prop_oneof![
        (uuid(), uuid(), any::<bool>(), prop::collection::vec(text(), 0..3))
            .prop_map(|(order, user, ready, failed)| Observation::Precheck { order, user, ready, failed }),
        (
            (text(), prop::option::of(uuid()), prop::option::of(uuid()), any::<u64>(), any::<u64>()),
            ("-?[0-9]{1,12}(\\.[0-9]{1,6})?", any::<bool>(), text(), text(), prop::option::of(uuid()))
        )
            .prop_map(
                |((mode, order, user, orders, users), (refunded, success, detail, reason, operation))| {
                    Observation::Rollback {
                        mode,
                        order,
                        user,
                        orders,
                        users,
                        refunded,
                        success,
                        detail,
                        reason,
                        operation,
                    }
                }
            ),
        (
            (uuid(), text(), prop::option::of(uuid()), prop::option::of(uuid())),
            (any::<u64>(), "-?[0-9]{1,12}(\\.[0-9]{1,6})?", text())
        )
            .prop_map(|((operation, mode, order, user), (orders, refund, reason))| {
                Observation::RollbackIntended { operation, mode, order, user, orders, refund, reason }
            }),
        (uuid(), any::<bool>(), prop::collection::vec(text(), 0..3))
            .prop_map(|(order, successful, failed)| Observation::Postcheck { order, successful, failed }),
        (any::<bool>(), text(), any::<bool>()).prop_map(|(on, reason, verified)| Observation::Maintenance {
            on,
            reason,
            verified
        }),
        (any::<bool>(), text(), prop::option::of(text()), prop::option::of(time()))
            .prop_map(|(on, reason, by, since)| Observation::MaintenanceSeen { on, reason, by, since }),
        any::<u64>().prop_map(|violations| Observation::Audit { violations }),
        (text(), text(), text()).prop_map(|(template, audience, path)| Observation::MessageCopied {
            template,
            audience,
            path
        }),
        (text(), text()).prop_map(|(path, hash)| Observation::ReportWritten { path, hash }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let item = prop::sample::select(Checklist::shipped().items().iter().map(|i| i.id.clone()).collect::<Vec<_>>());
    let role = prop::sample::select(Role::ALL.to_vec());
    prop_oneof![
        3 => observation().prop_map(Step::Observe),
        1 => (1u8..=3, typed()).prop_map(|(n, reason)| Step::SetLevel {
            to: Level::from_number(n).unwrap_or(Level::Critical),
            reason
        }),
        1 => prop::sample::select(Phase::ALL.to_vec()).prop_map(|to| Step::Advance { to }),
        1 => item.clone().prop_map(|item| Step::Tick { item }),
        1 => (item.clone(), typed()).prop_map(|(item, reason)| Step::Skip { item, reason }),
        1 => (item, role.clone()).prop_map(|(item, role)| Step::AssignItem { item, role }),
        1 => (role, typed()).prop_map(|(role, person)| Step::AssignRole { role, person }),
        1 => "[a-zA-Z0-9 \n.\"\\\\€]{1,60}".prop_map(|text| Step::Note { text }),
        1 => ("[a-z_]{1,12}", typed()).prop_map(|(name, value)| Step::SetField { name, value }),
        1 => "[a-z_]{1,12}".prop_map(|name| Step::Waive { name }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn decided_events_read_back_as_the_same_typed_values(
        level in 1u8..=3,
        steps in prop::collection::vec(step(), 1..16),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = IncidentStore::new(dir.path().to_path_buf());
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 3, 0, 0).single().expect("time");
        let level = Level::from_number(level).unwrap_or(Level::Critical);
        let mut inc = store.create("Round trip", level, "test", "alice", now, Checklist::shipped()).expect("create");
        let mut appended: Vec<Event> = inc.entries().expect("entries").into_iter().map(|e| e.event).collect();
        for step in steps {
            let Ok(decided) = inc.incident.decide(step.clone(), &inc.checklist) else { continue };
            let entries = inc.act(step, "alice", now).expect("act");
            let written: Vec<&Event> = entries.iter().map(|e| &e.event).collect();
            prop_assert_eq!(written, decided.iter().collect::<Vec<_>>());
            appended.extend(decided);
        }
        let entries = inc.entries().expect("entries");
        prop_assert_eq!(&fold(&entries).expect("fold"), &inc.incident);
        let read: Vec<Event> = entries.into_iter().map(|e| e.event).collect();
        prop_assert!(read.iter().all(|e| !matches!(e, Event::Unknown(_))), "{:?}", read);
        prop_assert_eq!(read, appended);
    }
}
