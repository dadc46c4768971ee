//! The console's worker under faults (issue 9): a request the server cancelled because
//! of a statement timeout is a failure with the server's words, not "Cancelled on the
//! server", which the console reserves for the operator's own cancel; a rollback whose
//! reply is lost after the commit is read back and reported done, not "Failed".

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

/// The console's rollback through a proxy that loses the reply once the server committed
/// it: the worker reads the order back and answers with the rollback (reply_lost said),
/// and the database holds it once, under the operation id, with no failure recorded.
#[tokio::test]
async fn a_lost_reply_to_the_workers_rollback_is_read_back_and_reported_done() {
    use crate::support::faults::{LostAckProxy, PrivateServer};
    let server = PrivateServer::start().await;
    let proxy = LostAckProxy::in_front_of(&server);
    let pool = server.pool().await;
    let (order, user): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, user_id FROM orders WHERE status = 'executed' AND {BURST_SQL} ORDER BY created_at, id LIMIT 1"
    )))
    .fetch_one(&pool)
    .await
    .expect("a burst order");
    let settings = incident_console::store::connect::ConnectSettings {
        url: proxy.url(),
        is_sandbox: false,
        operator: "worker-lost-ack".into(),
        application_name: "incident-console-test".into(),
        statement_timeout: Duration::from_secs(60),
        lock_timeout: Duration::from_secs(10),
        pooling: Default::default(),
    };
    let hour = Duration::from_secs(3600);
    let config = ConsoleConfig { refresh: hour, audit: hour, ..ConsoleConfig::default() };
    let mut h = worker::spawn(WorkerTarget::Url(settings), config);
    let mut next = async |what: &str| match tokio::time::timeout(Duration::from_secs(30), h.events.recv()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => panic!("the worker stopped"),
        Err(_) => panic!("no {what} within 30 s"),
    };
    while !matches!(next("the connection").await, DbEvent::Connection(ConnState::Up { .. })) {}
    h.commands.send(Command::Precheck { id: 1, order, user }).expect("send");
    let baseline = loop {
        if let DbEvent::Precheck { id: 1, result, .. } = next("the pre-check").await {
            break result.expect("pre-check").baseline.expect("baseline");
        }
    };
    let operation = uuid::Uuid::new_v4();
    proxy.drop_next_reply_containing(b"rollback_id", 1);
    h.commands
        .send(Command::Rollback {
            id: 2,
            order,
            user,
            reason: "duplicate execution".into(),
            baseline,
            group: false,
            operation,
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
    let _ = h.commands.send(Command::Shutdown);
    assert_eq!(proxy.dropped_after_commit(), 1, "the reply was lost after the commit: {:?}", proxy.drops());
    let DbEvent::Rollback { result: Ok(r), .. } = outcome else { panic!("not reported done: {outcome:?}") };
    assert!(r.rollback.success, "{r:?}");
    assert!(r.rollback.reply_lost.is_some(), "the report says the reply was lost: {r:?}");
    assert_eq!(r.rollback.order_ids.as_deref(), Some(&[order][..]));
    let (rows, refunded, failures): (i64, rust_decimal::Decimal, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE action = 'order_rolled_back' AND batch_id = $2), \
                coalesce(sum((details->>'refunded')::numeric) FILTER (WHERE action = 'order_rolled_back' AND batch_id = $2), 0), \
                count(*) FILTER (WHERE action = 'rollback_failed') \
         FROM order_audit_log WHERE order_id = $1",
    )
    .bind(order)
    .bind(operation)
    .fetch_one(&pool)
    .await
    .expect("audit rows");
    assert_eq!((rows, failures), (1, 0), "rolled back once under the operation id, no failure recorded");
    assert_eq!(r.rollback.refunded, Some(refunded), "the refund reported is the audit row's");
    assert!(r.postcheck.as_ref().is_some_and(|p| p.successful), "a post-check ran anew: {:?}", r.postcheck);
    println!(
        "FAULT console-worker-lost-ack: reported done reply_lost=true refunded={refunded} db.rows={rows} failures={failures}"
    );
}
