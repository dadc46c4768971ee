//! The console's worker under faults (issue 9): a request the server cancelled because
//! of a statement timeout is a failure with the server's words, not "Cancelled on the
//! server", which the console reserves for the operator's own cancel.

use std::time::Duration;

use crate::support::db::*;
use incident_console::console::protocol::{Command, ConnState, DbEvent};
use incident_console::console::worker::{self, WorkerTarget};
use incident_console::store::config::ConsoleConfig;
use sqlx::Connection;

#[tokio::test]
async fn a_statement_timeout_is_reported_as_a_failure_not_as_the_operators_cancel() {
    let t = test_db().await;
    let user = account(&t.pool, "100000").await;
    let order = executed(&t.pool, user, "1000", None).await;
    let settings = incident_console::store::connect::ConnectSettings {
        statement_timeout: Duration::from_millis(400),
        lock_timeout: Duration::ZERO,
        ..t.settings()
    };
    let hour = Duration::from_secs(3600);
    let config = ConsoleConfig { refresh: hour, audit: hour, ..ConsoleConfig::default() };
    let mut h = worker::spawn(WorkerTarget::Url(settings), config);
    let mut next = async |what: &str| match tokio::time::timeout(Duration::from_secs(20), h.events.recv()).await {
        Ok(Some(DbEvent::Connection(ConnState::Down { error, .. }))) => panic!("down waiting for {what}: {error}"),
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("the worker stopped"),
        Err(_) => panic!("no {what} within 20 s"),
    };
    while !matches!(next("the connection").await, DbEvent::Connection(ConnState::Up { .. })) {}

    h.commands.send(Command::Precheck { id: 1, order, user }).expect("send");
    let baseline = loop {
        if let DbEvent::Precheck { id: 1, result, .. } = next("the pre-check").await {
            break result.expect("pre-check").baseline.expect("baseline");
        }
    };
    // Another session holds the account: the rollback waits until its statement times out.
    let mut holder = t.conn().await;
    sqlx::raw_sql("BEGIN").execute(&mut holder).await.expect("begin");
    sqlx::query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE").bind(user).execute(&mut holder).await.expect("lock");
    h.commands
        .send(Command::Rollback {
            id: 2,
            order,
            user,
            reason: "duplicate execution".into(),
            baseline,
            group: false,
            operation: uuid::Uuid::new_v4(),
            waive_journal: false,
        })
        .expect("send");
    let outcome = loop {
        match next("the rollback's end").await {
            ev @ (DbEvent::Cancelled { id: 2 } | DbEvent::Failed { id: 2, .. } | DbEvent::Rollback { id: 2, .. }) => {
                break ev;
            }
            _ => continue,
        }
    };
    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.expect("rollback");
    let _ = holder.close().await;
    let _ = h.commands.send(Command::Shutdown);
    match outcome {
        DbEvent::Failed { error, .. } => assert!(error.contains("statement timeout"), "{error}"),
        DbEvent::Rollback { result, .. } => {
            let e = result.expect_err("the rollback cannot have succeeded");
            assert!(e.contains("statement timeout"), "{e}");
        }
        other => panic!("a statement timeout was reported as {other:?}"),
    }
    let status: String =
        sqlx::query_scalar("SELECT status FROM orders WHERE id = $1").bind(order).fetch_one(&t.pool).await.expect("x");
    assert_eq!(status, "executed", "nothing was changed");
}
