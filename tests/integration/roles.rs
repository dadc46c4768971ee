//! Least privilege and a search path nobody can plant code in (issue 8, findings 1 and 8):
//! the database's owner cannot put a function in public for the SECURITY DEFINER functions
//! to run as the ledger owner; trading belongs to the engine role, the operator undoes and
//! proves; the maintenance probe runs the real execution path under every isolation level
//! and leaves nothing behind.

use crate::security::{connect_as, drop_role, login_role, sqlstate};
use crate::support::db::*;
use incident_console::store::db::{self, Isolation};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The attack of finding 1: a `format(text, numeric, numeric)` that books money when the
/// insufficient-funds branch of `execute_order_atomic` calls `format(…)` unqualified.
const PLANTED: &str = "CREATE FUNCTION public.format(text, numeric, numeric) RETURNS text \
     LANGUAGE sql AS $$ UPDATE public.profiles SET balance = balance + 5000000; SELECT 'planted'::text $$";

/// Makes `role` the owner of the test's database, as a site's own admin role would be.
async fn own_the_database(t: &TestDb, role: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER DATABASE {} OWNER TO {role}", t.name)))
        .execute(&t.pool)
        .await
        .expect("alter database owner");
}

/// Plants the function as the database's owner (not a superuser, not a member of any
/// incident role): the SQLSTATE it got, none when it was created.
async fn plant_as_database_owner(t: &TestDb, owner: &str) -> Option<String> {
    own_the_database(t, owner).await;
    let mut c = connect_as(t, owner).await;
    let r = sqlx::raw_sql(PLANTED).execute(&mut c).await;
    let _ = c.close().await;
    r.err().map(|e| sqlstate(&e).unwrap_or_else(|| format!("not a database error: {e}")))
}

/// An engine login places an order the user cannot pay for: the branch that calls format.
async fn oversized_order(t: &TestDb, engine: &str, user: Uuid) -> serde_json::Value {
    let mut c = connect_as(t, engine).await;
    let v: serde_json::Value =
        sqlx::query_scalar("SELECT execute_order_atomic($1, 'EURUSD', 'market', 'buy', 50000000, 1.1, $2, NULL)")
            .bind(user)
            .bind(Uuid::new_v4().to_string())
            .fetch_one(&mut c)
            .await
            .expect("execute as the engine");
    let _ = c.close().await;
    v
}

async fn release(t: &TestDb, roles: &[&str]) {
    let admin = admin_url();
    let mut c = PgConnection::connect(&admin).await.expect("admin");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER DATABASE {} OWNER TO CURRENT_USER", t.name)))
        .execute(&mut c)
        .await
        .expect("database back to the superuser");
    let _ = c.close().await;
    for r in roles {
        drop_role(t, r).await;
    }
}

#[tokio::test]
async fn the_database_owner_cannot_plant_a_function_the_ledger_would_run() {
    let t = test_db().await;
    let user = account(&t.pool, "1000").await;
    let owner = login_role(&t, "ic_dbowner", None).await;
    let engine = login_role(&t, "ic_engine", Some("incident_engine")).await;

    assert_eq!(plant_as_database_owner(&t, &owner).await.as_deref(), Some("42501"), "CREATE in public refused");
    let v = oversized_order(&t, &engine, user).await;
    assert_eq!(v["error_code"], "insufficient_funds", "{v}");
    assert_eq!(money_of(&t.pool, user).await.0, dec("1000"), "no money moved");
    assert_consistent(&t.pool).await;
    release(&t, &[&owner, &engine]).await;
}

/// The same attack on the schema as it was before migration 8: it works, so the test
/// above is a real one.
#[tokio::test]
async fn before_migration_8_the_same_attack_moved_money() {
    let t = test_db().await;
    db::undo_to(&t.pool, 7).await.expect("undo to 7");
    let user = account(&t.pool, "1000").await;
    let owner = login_role(&t, "ic_dbowner", None).await;
    let engine = login_role(&t, "ic_engine", Some("incident_operator")).await;
    assert_eq!(plant_as_database_owner(&t, &owner).await, None, "CREATE in public was allowed");
    let v = oversized_order(&t, &engine, user).await;
    // The execution's own text came from the planted function, which ran as the owner.
    assert_eq!(v["error_code"], "planted", "{v}");
    assert_eq!(money_of(&t.pool, user).await.0, dec("5001000"), "the planted function ran as the owner");
    release(&t, &[&owner, &engine]).await;
}

#[tokio::test]
async fn nobody_but_the_ledger_owner_may_create_in_public() {
    let t = test_db().await;
    let owner: String = sqlx::query_scalar("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'")
        .fetch_one(&t.pool)
        .await
        .expect("owner of public");
    assert_eq!(owner, "incident_owner");
    let may_create: Vec<String> = sqlx::query_scalar(
        "SELECT rolname::text FROM pg_roles \
         WHERE NOT rolsuper AND has_schema_privilege(oid, 'public', 'CREATE') ORDER BY 1",
    )
    .fetch_all(&t.pool)
    .await
    .expect("roles that may create in public");
    assert_eq!(may_create, vec!["incident_owner".to_string()]);
}

#[tokio::test]
async fn the_engine_trades_the_operator_undoes_and_neither_does_the_other() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let order = executed(&t.pool, user, "1000", None).await;
    let operator = login_role(&t, "ic_operator", Some("incident_operator")).await;
    let engine = login_role(&t, "ic_engine", Some("incident_engine")).await;
    let print = fingerprint(&t.pool).await;

    let mut op = connect_as(&t, &operator).await;
    for sql in [
        "SELECT execute_order_atomic($1, 'EURUSD', 'market', 'buy', 1, 1.1, 'k-operator', NULL)",
        "SELECT create_trading_account(gen_random_uuid(), 1000000)",
    ] {
        let e = sqlx::query(sql).bind(user).execute(&mut op).await.expect_err("an operator may not trade");
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}");
    }
    assert_eq!(fingerprint(&t.pool).await, print, "nothing changed");

    let mut en = connect_as(&t, &engine).await;
    let e = sqlx::query("SELECT rollback_execute_order_atomic($1, $2, 'the engine tries')")
        .bind(order)
        .bind(user)
        .execute(&mut en)
        .await
        .expect_err("the engine may not roll back");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    let v: serde_json::Value =
        sqlx::query_scalar("SELECT execute_order_atomic($1, 'EURUSD', 'market', 'buy', 1, 1.1, 'k-engine', NULL)")
            .bind(user)
            .fetch_one(&mut en)
            .await
            .expect("the engine trades");
    assert_eq!(v["success"], true, "{v}");
    let r = db::rollback_order(&mut op, order, user, "duplicate").await.expect("the operator rolls back");
    assert!(r.success, "{r:?}");
    let _ = op.close().await;
    let _ = en.close().await;
    assert_consistent(&t.pool).await;
    drop_role(&t, &operator).await;
    drop_role(&t, &engine).await;
}

#[tokio::test]
async fn an_operator_proves_maintenance_under_every_isolation_level_and_the_probe_leaves_nothing() {
    let t = test_db().await;
    account(&t.pool, "10000").await;
    let operator = login_role(&t, "ic_operator", Some("incident_operator")).await;
    let mut op = connect_as(&t, &operator).await;
    let print = fingerprint(&t.pool).await;

    for level in Isolation::ALL {
        let code = db::probe_new_orders(&mut op, level).await.expect("probe");
        assert_eq!(code.as_deref(), Some("account_not_found"), "off, {level}: the order would be taken");
    }
    let on = db::set_maintenance(&mut op, true, "probe test").await.expect("switch on");
    assert_eq!(on["success"], true, "{on}");
    for level in Isolation::ALL {
        let code = db::probe_new_orders(&mut op, level).await.expect("probe");
        assert_eq!(code.as_deref(), Some("maintenance_mode"), "on, {level}");
    }
    let verdict =
        incident_console::ops::maintenance::probe_new_orders(&db::Db::sessions(t.pool.clone())).await.expect("probe");
    assert_eq!(verdict.as_deref(), Some("maintenance_mode"));
    let n_probe_orders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders WHERE idempotency_key LIKE 'maintenance-probe-%'")
            .fetch_one(&t.pool)
            .await
            .expect("count");
    assert_eq!(n_probe_orders, 0);
    let _ = op.close().await;
    let after = fingerprint(&t.pool).await;
    assert_eq!(after, print, "the probes changed no money and no order");
    drop_role(&t, &operator).await;
}
