//! Notifications any login can send (issue 8, the adversarial pass): `pg_notify` needs no
//! privilege, so anyone may flood the channels the console listens on. The worker must
//! coalesce them: a flood costs one refresh, and a pre-check asked for meanwhile is
//! answered at once.

use std::time::{Duration, Instant};

use crate::security::{connect_as, drop_role, login_role};
use crate::support::db::*;
use incident_console::console::protocol::{Command, ConnState, DbEvent};
use incident_console::console::worker::{self, WorkerTarget};
use incident_console::store::config::ConsoleConfig;
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_notifications_from_anyone_does_not_stall_the_console() {
    let t = seeded().await;
    let hour = Duration::from_secs(3600);
    let config = ConsoleConfig { refresh: hour, audit: hour, ..ConsoleConfig::default() };
    let mut h = worker::spawn(WorkerTarget::Url(t.settings()), config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(
        tokio::time::timeout(Duration::from_secs(20), h.events.recv()).await,
        Ok(Some(DbEvent::Connection(ConnState::Up { .. })))
    ) {
        assert!(Instant::now() < deadline, "the worker never connected");
    }
    // Let the listener subscribe before the flood.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let nobody = login_role(&t, "ic_flood", None).await;
    let mut c = connect_as(&t, &nobody).await;
    for channel in ["maintenance_mode", "order_audit"] {
        sqlx::query("SELECT count(pg_notify($1, g::text)) FROM generate_series(1, 50000) g")
            .bind(channel)
            .execute(&mut c)
            .await
            .expect("any login may notify");
    }
    let (order, user): (uuid::Uuid, uuid::Uuid) =
        sqlx::query_as("SELECT id, user_id FROM orders WHERE status = 'executed' ORDER BY id LIMIT 1")
            .fetch_one(&t.pool)
            .await
            .expect("an order");
    let asked = Instant::now();
    h.commands.send(Command::Precheck { id: 7, order, user }).expect("send");
    let answered = loop {
        let left = Duration::from_secs(10).saturating_sub(asked.elapsed());
        match tokio::time::timeout(left, h.events.recv()).await {
            Ok(Some(DbEvent::Precheck { id: 7, .. })) => break asked.elapsed(),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the worker stopped"),
            Err(_) => panic!("no pre-check within 10 s of a flood of 100,000 notifications"),
        }
    };
    // And the flood is one refresh, not one per notification: count what follows it.
    let mut maintenance_reads = 0;
    while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(2), h.events.recv()).await {
        if matches!(ev, DbEvent::Maintenance(_)) {
            maintenance_reads += 1;
        }
    }
    eprintln!("pre-check answered {answered:?} after the flood; {maintenance_reads} maintenance reads");
    assert!(maintenance_reads <= 3, "{maintenance_reads} maintenance reads for one flood");
    let _ = h.commands.send(Command::Shutdown);
    let _ = c.close().await;
    drop_role(&t, &nobody).await;
}
