//! Locks any login can take (issue 8, "go looking for the next ones"): advisory locks need
//! no privilege, so when trading and the maintenance switch synchronised on advisory lock
//! 4242001, any login (a viewer, a role in no group at all) could hold it and stop every
//! execution, and stop the switch the incident commander needs. The gate is now a table
//! lock on system_settings, which only its owner (the contract functions) can take in a
//! mode that conflicts.

use crate::security::{connect_as, drop_role, login_role, sqlstate};
use crate::support::db::*;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

async fn execute_as(c: &mut PgConnection, user: Uuid) -> Result<serde_json::Value, sqlx::Error> {
    sqlx::query_scalar("SELECT execute_order_atomic($1, 'EURUSD', 'market', 'buy', 10, 1.1, $2, NULL)")
        .bind(user)
        .bind(Uuid::new_v4().to_string())
        .fetch_one(c)
        .await
}

async fn switch(c: &mut PgConnection, on: bool) -> Result<serde_json::Value, sqlx::Error> {
    sqlx::query_scalar("SELECT set_maintenance_mode($1, 'lock squatting test')").bind(on).fetch_one(c).await
}

/// Every lock a role without any grant can hold on the gate, held at once.
const SQUAT: &[&str] = &[
    "SELECT pg_advisory_lock(4242001)",
    "SELECT pg_advisory_lock_shared(4242001)",
    "BEGIN",
    "SELECT pg_advisory_xact_lock(4242001)",
];

#[tokio::test]
async fn a_login_without_any_grant_blocks_neither_trading_nor_the_maintenance_switch() {
    let t = test_db().await;
    let user = account(&t.pool, "100000").await;
    let nobody = login_role(&t, "ic_nobody", None).await;
    let viewer = login_role(&t, "ic_viewer", Some("incident_viewer")).await;
    let engine = login_role(&t, "ic_engine", Some("incident_engine")).await;
    let operator = login_role(&t, "ic_operator", Some("incident_operator")).await;

    let mut squatter = connect_as(&t, &nobody).await;
    for sql in SQUAT {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql)).execute(&mut squatter).await.expect(sql);
    }
    // A viewer holds what its SELECT right lets it hold on the table.
    let mut v = connect_as(&t, &viewer).await;
    sqlx::raw_sql("BEGIN; LOCK TABLE system_settings IN ACCESS SHARE MODE; SELECT * FROM system_settings")
        .execute(&mut v)
        .await
        .expect("a viewer reads the settings in a transaction");
    let e = sqlx::raw_sql("SAVEPOINT s; LOCK TABLE system_settings IN ROW SHARE MODE")
        .execute(&mut v)
        .await
        .expect_err("a viewer may not take the gate's lock");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    sqlx::raw_sql("ROLLBACK TO SAVEPOINT s").execute(&mut v).await.expect("rollback to savepoint");

    let mut en = connect_as(&t, &engine).await;
    let mut op = connect_as(&t, &operator).await;
    for c in [&mut en, &mut op] {
        sqlx::raw_sql("SET lock_timeout = '3s'").execute(&mut *c).await.expect("lock timeout");
    }
    let r = execute_as(&mut en, user).await.expect("an execution is not held up by anyone's advisory lock");
    assert_eq!(r["success"], true, "{r}");
    let r = switch(&mut op, true).await.expect("the switch is not held up by anyone's advisory lock");
    assert_eq!(r["success"], true, "{r}");
    let r = execute_as(&mut en, user).await.expect("refused, not blocked");
    assert_eq!(r["error_code"], "maintenance_mode", "{r}");
    let r = switch(&mut op, false).await.expect("switch off");
    assert_eq!(r["success"], true, "{r}");
    let r = execute_as(&mut en, user).await.expect("trading again");
    assert_eq!(r["success"], true, "{r}");

    for c in [squatter, v, en, op] {
        let _ = c.close().await;
    }
    assert_consistent(&t.pool).await;
    for r in [&nobody, &viewer, &engine, &operator] {
        drop_role(&t, r).await;
    }
}

#[tokio::test]
async fn an_execution_in_flight_still_holds_the_switch_until_it_commits() {
    // The gate still does its job: the switch waits for an execution that has begun, and
    // an execution that begins after the switch committed is refused (READ COMMITTED; the
    // other levels are in execution.rs).
    let t = test_db().await;
    let user = account(&t.pool, "100000").await;
    let mut en = t.conn().await;
    sqlx::raw_sql("BEGIN").execute(&mut en).await.expect("begin");
    let r = execute_as(&mut en, user).await.expect("execute in an open transaction");
    assert_eq!(r["success"], true, "{r}");

    let mut op = t.conn().await;
    sqlx::raw_sql("SET lock_timeout = '500ms'").execute(&mut op).await.expect("lock timeout");
    let e = switch(&mut op, true).await.expect_err("the switch waits for the execution in flight");
    assert_eq!(sqlstate(&e).as_deref(), Some("55P03"), "{e}");
    sqlx::raw_sql("COMMIT").execute(&mut en).await.expect("commit");
    sqlx::raw_sql("SET lock_timeout = 0").execute(&mut op).await.expect("no timeout");
    let r = switch(&mut op, true).await.expect("switch");
    assert_eq!(r["success"], true, "{r}");
    let r = execute_as(&mut en, user).await.expect("refused");
    assert_eq!(r["error_code"], "maintenance_mode", "{r}");
    let _ = (en.close().await, op.close().await);
}
