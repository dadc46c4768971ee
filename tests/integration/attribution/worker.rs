//! The console's database worker through a real PgBouncer, in session pooling (startup
//! `options` and `extra_float_digits` ignored) and in transaction pooling: it connects,
//! says in its header label how it learns of changes, pre-checks, rolls back, switches
//! maintenance mode, copies the journal, and sees a rollback and a maintenance switch made
//! elsewhere (LISTEN in session pooling, polling in transaction pooling); every row it
//! writes names the operator and the login.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use uuid::Uuid;

use super::pgbouncer::{Bouncer, PoolMode};
use crate::support::db::*;
use incident_console::console::protocol::{Command, ConnState, DbEvent};
use incident_console::console::worker::{self, WorkerTarget};
use incident_console::core::workflow::Level;
use incident_console::core::workflow::checklist::Checklist;
use incident_console::core::workflow::incident::Step;
use incident_console::store::config::ConsoleConfig;
use incident_console::store::connect::Pooling;
use incident_console::store::incidents::IncidentStore;

const REASON: &str = "duplicate executions of deploy 4711";

/// The next event `pick` takes, within `secs`; the others are dropped.
async fn next<T>(
    events: &mut UnboundedReceiver<DbEvent>,
    secs: u64,
    what: &str,
    pick: impl Fn(DbEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {secs} s"))
            .expect("the worker runs");
        if let DbEvent::Connection(ConnState::Down { error, .. }) = &ev {
            panic!("the worker lost the database waiting for {what}: {error}");
        }
        if let Some(t) = pick(ev) {
            return t;
        }
    }
}

/// Executed orders of the burst, oldest first: `(order, user)`.
async fn burst(t: &TestDb) -> Vec<(Uuid, Uuid)> {
    let sql =
        format!("SELECT id, user_id FROM orders WHERE {BURST_SQL} AND status = 'executed' ORDER BY created_at, id");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&t.pool).await.expect("burst")
}

async fn the_worker_through(mode: PoolMode) {
    let t = seeded().await;
    let name = format!("worker through {mode:?} pooling");
    let Some(b) = Bouncer::start(&t, mode, &[], &name) else { return };
    let pooling = if mode == PoolMode::Transaction { Pooling::Transaction } else { Pooling::Session };
    let settings = incident_console::store::connect::ConnectSettings {
        url: b.url("postgres"),
        operator: "dana".into(),
        pooling,
        ..t.settings()
    };
    // No periodic refresh within the test: what arrives came by LISTEN or by the poll.
    let hour = Duration::from_secs(3600);
    let config = ConsoleConfig { refresh: hour, audit: hour, ..ConsoleConfig::default() };
    let mut h = worker::spawn(WorkerTarget::Url(settings), config);
    let ev = &mut h.events;

    let label = next(ev, 20, "the target", |e| if let DbEvent::Target(l) = e { Some(l) } else { None }).await;
    assert_eq!(label.contains("tx pooler, polling"), mode == PoolMode::Transaction, "{label}");
    next(ev, 20, "the connection", |e| matches!(e, DbEvent::Connection(ConnState::Up { .. })).then_some(())).await;

    let orders = burst(&t).await;
    let (order, user) = orders[0];
    h.commands.send(Command::Precheck { id: 1, order, user }).expect("send");
    let pre = next(ev, 20, "the pre-check", |e| match e {
        DbEvent::Precheck { id: 1, result, .. } => Some(result),
        _ => None,
    })
    .await
    .expect("pre-check");
    assert!(pre.ready, "{pre:?}");
    let baseline = pre.baseline.expect("a baseline");
    h.commands
        .send(Command::Rollback {
            id: 2,
            order,
            user,
            reason: REASON.into(),
            baseline,
            group: false,
            operation: uuid::Uuid::new_v4(),
            waive_journal: false,
        })
        .expect("send");
    let done = next(ev, 30, "the rollback", |e| match e {
        DbEvent::Rollback { id: 2, result } => Some(result),
        _ => None,
    })
    .await
    .expect("rollback");
    assert!(done.rollback.success, "{done:?}");
    assert!(done.postcheck.as_ref().is_some_and(|p| p.successful), "{done:?}");

    h.commands
        .send(Command::SetMaintenance { id: 3, on: true, reason: "rolling back".into(), symbol: None })
        .expect("send");
    let probe = next(ev, 30, "maintenance on", |e| match e {
        DbEvent::MaintenanceSet { id: 3, result, .. } => Some(result),
        _ => None,
    })
    .await
    .expect("maintenance");
    assert!(probe.new_orders_refused, "{probe:?}");

    // The journal's copy goes through the pooler too, its hashes checked by the server.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = IncidentStore::new(dir.path().join("incidents"));
    let now = chrono::Utc::now();
    let mut inc = store.create("Pooled", Level::Moderate, "test", "dana", now, Checklist::shipped()).expect("create");
    inc.act(Step::Note { text: "through the pooler".into() }, "dana", now).expect("note");
    let path = dir.path().join("incidents").join(&inc.incident.id).join("journal.jsonl");
    assert!(path.is_file(), "{}", path.display());
    h.commands.send(Command::SyncJournal { incident: inc.incident.id.clone(), path }).expect("send");
    let copied = next(ev, 20, "the journal copy", |e| match e {
        DbEvent::JournalSynced(r) => Some(r),
        _ => None,
    })
    .await;
    let copied = copied.map(|c| (c.inserted, c.through));
    assert_eq!(copied, Ok((2, 2)), "the opening entry and the note, and the copy holds both");

    // Changes made elsewhere reach the worker: LISTEN, or behind a transaction pooler the poll.
    let (other, other_user) = orders[1];
    let r: serde_json::Value = sqlx::query_scalar("SELECT rollback_execute_order_atomic($1, $2, 'elsewhere')")
        .bind(other)
        .bind(other_user)
        .fetch_one(&t.pool)
        .await
        .expect("a rollback elsewhere");
    assert_eq!(r["success"], true, "{r}");
    next(ev, 6, "the dashboard after a rollback elsewhere", |e| match e {
        DbEvent::Dashboard(d) if d.metrics.orders_rolled_back >= 2 => Some(()),
        _ => None,
    })
    .await;
    let off: serde_json::Value = sqlx::query_scalar("SELECT set_maintenance_mode(false, 'switched off elsewhere')")
        .fetch_one(&t.pool)
        .await
        .expect("maintenance off elsewhere");
    assert_eq!(off["success"], true, "{off}");
    next(ev, 6, "maintenance switched off elsewhere", |e| match e {
        DbEvent::Maintenance(m) if !m.maintenance_mode => Some(()),
        _ => None,
    })
    .await;

    h.commands.send(Command::Shutdown).expect("send");
    tokio::time::timeout(Duration::from_secs(10), h.task).await.expect("the worker ends").expect("worker task");

    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT operator, db_user FROM order_audit_log WHERE action = 'order_rolled_back' AND order_id = $1",
    )
    .bind(order)
    .fetch_all(&t.pool)
    .await
    .expect("audit rows");
    assert_eq!(rows, [("dana (via postgres)".to_string(), "postgres".to_string())]);
    let log: Vec<(String, String)> =
        sqlx::query_as("SELECT operator, db_user FROM maintenance_log WHERE enabled ORDER BY id")
            .fetch_all(&t.pool)
            .await
            .expect("maintenance_log");
    assert_eq!(log, [("dana (via postgres)".to_string(), "postgres".to_string())]);
    let journal: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT copied_by FROM incident_events WHERE incident_id = $1")
            .bind(&inc.incident.id)
            .fetch_all(&t.pool)
            .await
            .expect("incident_events");
    assert_eq!(journal, ["postgres"]);
    assert_consistent(&t.pool).await;
    let bouncer_log = b.log();
    assert!(!bouncer_log.contains("unsupported startup parameter"), "{bouncer_log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_worker_works_through_session_pooling() {
    the_worker_through(PoolMode::Session).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_worker_works_through_transaction_pooling_and_polls() {
    the_worker_through(PoolMode::Transaction).await;
}
