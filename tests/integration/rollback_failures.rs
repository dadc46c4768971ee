//! A rollback that did not get through is recorded (`rollback_failed`), where the metrics
//! count it, unless the operator cancelled it on purpose: a statement timeout or a cancel
//! from elsewhere is a failure like any other, in the CLI and in the console alike.

use std::time::Duration;

use crate::support::db::*;
use incident_console::ops::rollback::{RollbackRequest, rollback_and_prove};
use incident_console::store::db;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

async fn failures(t: &TestDb, order: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM order_audit_log WHERE order_id = $1 AND action = 'rollback_failed'")
        .bind(order)
        .fetch_one(&t.pool)
        .await
        .expect("count failures")
}

/// Another session holds the user's profile row, so the rollback waits on it.
async fn hold_profile(t: &TestDb, user: Uuid) -> PgConnection {
    let mut holder = PgConnection::connect(&t.url).await.expect("holder");
    sqlx::query("BEGIN").execute(&mut holder).await.expect("begin");
    sqlx::query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE").bind(user).execute(&mut holder).await.expect("lock");
    holder
}

async fn request(t: &TestDb) -> (RollbackRequest, Uuid) {
    let user = account(&t.pool, "10000").await;
    let order = executed(&t.pool, user, "1000", None).await;
    let pre = db::precheck(&t.pool, order, user).await.expect("precheck");
    let baseline = pre.baseline.expect("baseline");
    (
        RollbackRequest {
            order,
            user,
            reason: "duplicate".into(),
            baseline,
            group: false,
            operation: uuid::Uuid::new_v4(),
        },
        order,
    )
}

#[tokio::test]
async fn a_statement_timeout_is_a_recorded_failure() {
    let t = test_db().await;
    let (req, order) = request(&t).await;
    let _holder = hold_profile(&t, req.user).await;
    let mut conn = PgConnection::connect(&t.url).await.expect("connection");
    sqlx::query("SET statement_timeout = '300ms'").execute(&mut conn).await.expect("timeout");
    sqlx::query("SET lock_timeout = 0").execute(&mut conn).await.expect("no lock timeout");
    let (pool, mut conn) = (db::Db::sessions(t.pool.clone()), db::DbConn::own(conn, None));
    let e = rollback_and_prove(&pool, &mut conn, &req, &|| false).await.expect_err("it times out");
    assert_eq!(e.sqlstate(), Some("57014"), "{e}");
    assert_eq!(failures(&t, order).await, 1, "the timeout is recorded as a failure");
}

#[tokio::test]
async fn a_cancel_the_operator_asked_for_is_not_a_failure() {
    let t = test_db().await;
    let (req, order) = request(&t).await;
    let _holder = hold_profile(&t, req.user).await;
    let mut conn = PgConnection::connect(&t.url).await.expect("connection");
    let pid = db::backend_pid(&mut conn).await.expect("pid");
    let pool = t.pool.clone();
    let canceller = tokio::spawn(async move {
        let mut observer = PgConnection::connect_with(&pool.connect_options()).await.expect("observer");
        for _ in 0..200 {
            if db::is_waiting_for_lock(&mut observer, pid).await.unwrap_or(false) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        db::cancel_backend(&mut observer, pid).await.expect("cancel")
    });
    let (pool, mut conn) = (db::Db::sessions(t.pool.clone()), db::DbConn::own(conn, None));
    let e = rollback_and_prove(&pool, &mut conn, &req, &|| true).await.expect_err("it is cancelled");
    assert!(canceller.await.expect("canceller"), "the cancel reached the backend");
    assert_eq!(e.sqlstate(), Some("57014"), "{e}");
    assert_eq!(failures(&t, order).await, 0, "an operator's cancel is not a failure");
}
