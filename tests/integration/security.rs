//! Who may do what, against a real PostgreSQL: privileges of the contract roles, the
//! TEMP-table shadowing attack on the SECURITY DEFINER functions, the catalog facts the
//! design promises, and the append-only / at-most-once guards that even the superuser
//! cannot get past with plain DML.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::db::*;
use incident_console::store::db;
use serde_json::Value;
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

/// The nine functions of DESIGN.md's contract table: signature as `to_regprocedure`
/// takes it, the argument list and the result as PostgreSQL prints them.
const CONTRACT: [(&str, &str, &str); 9] = [
    ("create_trading_account(uuid,numeric)", "p_user_id uuid, p_initial_deposit numeric", "jsonb"),
    (
        "execute_order_atomic(uuid,text,text,text,numeric,numeric,text,uuid)",
        "p_user_id uuid, p_symbol text, p_order_type text, p_side text, p_quantity numeric, p_price numeric, \
         p_idempotency_key text, p_transaction_id uuid DEFAULT NULL::uuid",
        "jsonb",
    ),
    (
        "rollback_execute_order_atomic(uuid,uuid,text)",
        "p_order_id uuid, p_user_id uuid, p_rollback_reason text",
        "jsonb",
    ),
    ("rollback_order_execution(uuid,uuid,text)", "p_order_id uuid, p_user_id uuid, p_rollback_reason text", "jsonb"),
    ("rollback_precheck(uuid,uuid)", "p_order_id uuid, p_user_id uuid", "jsonb"),
    ("rollback_postcheck(uuid,uuid,jsonb)", "p_order_id uuid, p_user_id uuid, p_baseline jsonb", "jsonb"),
    ("check_active_transactions(uuid)", "p_user_id uuid", "integer"),
    ("ledger_audit()", "", "TABLE(user_id uuid, check_name text, expected numeric, actual numeric)"),
    ("set_maintenance_mode(boolean,text)", "p_enabled boolean, p_reason text", "jsonb"),
];

/// SQLSTATE of a failed statement.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error().and_then(|d| d.code()).map(|c| c.into_owned())
}

/// A login role with a unique name, optionally a member of `member_of`.
pub(crate) async fn login_role(t: &TestDb, prefix: &str, member_of: Option<&str>) -> String {
    let name = format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..12]);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {name} LOGIN PASSWORD 'irrelevant'")))
        .execute(&t.pool)
        .await
        .expect("create role");
    if let Some(group) = member_of {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("GRANT {group} TO {name}")))
            .execute(&t.pool)
            .await
            .expect("grant membership");
    }
    name
}

/// Best effort: roles are cluster-wide, so a test cleans up after itself. A session's
/// temporary objects are dropped by its backend just after the client leaves, so retry.
pub(crate) async fn drop_role(t: &TestDb, name: &str) {
    for _ in 0..40 {
        let r = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS {name}"))).execute(&t.pool).await;
        if r.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub(crate) async fn connect_as(t: &TestDb, role: &str) -> PgConnection {
    let mut c = PgConnection::connect(&t.url_as(role, "irrelevant")).await.expect("login as test role");
    let who: String = sqlx::query_scalar("SELECT session_user::text").fetch_one(&mut c).await.expect("session_user");
    assert_eq!(who, role, "the connection must really be the test role, not the superuser");
    c
}

/// Runs `sql` (with the given uuid/text binds) and returns its SQLSTATE; panics if it succeeds.
async fn denied(c: &mut PgConnection, sql: &'static str, order: Uuid, user: Uuid) -> String {
    let q = sqlx::query(sql);
    // Bind only as many parameters as the statement has.
    let q = if sql.contains("$2") {
        q.bind(order).bind(user)
    } else if sql.contains("$1") {
        q.bind(user)
    } else {
        q
    };
    match q.execute(&mut *c).await {
        Ok(_) => panic!("statement should have been refused: {sql}"),
        Err(e) => sqlstate(&e).unwrap_or_else(|| panic!("not a database error for {sql}: {e}")),
    }
}

/// A book with two users, executed orders (one in a transaction group) and one rollback.
struct Book {
    user: Uuid,
    order: Uuid,
    grouped: Uuid,
}

async fn book(t: &TestDb) -> Book {
    let user = account(&t.pool, "10000").await;
    let other = account(&t.pool, "5000").await;
    let order = executed(&t.pool, user, "1000", None).await;
    let grouped = executed(&t.pool, user, "500", Some(Uuid::new_v4())).await;
    let done = executed(&t.pool, other, "200", None).await;
    let r = db::rollback_order(&t.pool, done, other, "fat finger").await.expect("rollback");
    assert!(r.success, "{r:?}");
    Book { user, order, grouped }
}

#[tokio::test]
async fn a_role_outside_the_contract_roles_can_do_nothing() {
    let t = test_db().await;
    let b = book(&t).await;
    let print = fingerprint(&t.pool).await;
    let role = login_role(&t, "ic_nobody", None).await;
    let mut c = connect_as(&t, &role).await;

    for sql in [
        "SELECT rollback_execute_order_atomic($1, $2, 'attack')",
        "SELECT rollback_order_execution($1, $2, 'attack')",
        "SELECT execute_order_atomic($2, 'EURUSD', 'market', 'buy', 1, 1.1, 'k-attack', $1)",
        "SELECT create_trading_account($1, 1000000)",
        "SELECT set_maintenance_mode(true, 'attack')",
        "SELECT rollback_with_postcheck($1, $2, 'attack', '{}'::jsonb, false)",
        "SELECT record_rollback_failure($1, $2, 'rollback_failed', '{}'::jsonb)",
        "SELECT rollback_precheck($1, $2)",
        "SELECT * FROM ledger_audit()",
        // Internal helpers are not callable either.
        "SELECT _rollback_locked_orders($2, ARRAY[$1]::uuid[], 'attack', 'single', NULL, now())",
        // The tables, directly.
        "SELECT * FROM orders",
        "SELECT * FROM profiles",
        "SELECT * FROM ledger_transfers",
        "SELECT * FROM order_audit_log",
        "UPDATE profiles SET balance = balance + 1000000 WHERE id = $1",
        "UPDATE orders SET status = 'rolled_back' WHERE id = $1 AND user_id = $2",
        "DELETE FROM positions WHERE order_id = $1 AND user_id = $2",
        "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind) \
         VALUES ($1, 'house_clearing', 'user_cash', 1000000, 'deposit')",
        "INSERT INTO order_audit_log (order_id, user_id, action, rollback_id, operator) \
         VALUES ($1, $2, 'rollback_failed', gen_random_uuid(), 'x')",
        "TRUNCATE order_audit_log",
        "UPDATE system_settings SET maintenance_mode = false",
    ] {
        let code = denied(&mut c, sql, b.order, b.user).await;
        // Since migration 14 such a role cannot see schema public at all: its functions
        // and tables do not exist for it (42883, 42P01); named with the schema, 42501.
        assert!(["42501", "42883", "42P01"].contains(&code.as_str()), "{sql}: {code}");
    }
    for sql in ["SELECT public.rollback_precheck($1, $2)", "SELECT * FROM public.orders"] {
        assert_eq!(denied(&mut c, sql, b.order, b.user).await, "42501", "{sql}");
    }
    let _ = c.close().await;
    assert_eq!(fingerprint(&t.pool).await, print, "nothing may have changed");
    assert!(!db::maintenance_state(&t.pool).await.expect("state").maintenance_mode);
    drop_role(&t, &role).await;
}

#[tokio::test]
async fn a_viewer_can_check_and_read_but_not_roll_back() {
    let t = test_db().await;
    let b = book(&t).await;
    let print = fingerprint(&t.pool).await;
    let role = login_role(&t, "ic_viewer", Some("incident_viewer")).await;
    let mut c = connect_as(&t, &role).await;

    let pre = db::precheck(&mut c, b.order, b.user).await.expect("a viewer may run the pre-check");
    assert!(pre.ready, "{pre:?}");
    assert_eq!(pre.figures().expect("figures").expected_refund, dec("22.22"));
    let violations = db::ledger_audit(&mut c).await.expect("a viewer may run the audit");
    assert!(violations.is_empty(), "{violations:?}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&mut c).await.expect("select orders");
    assert_eq!(n, 3);
    let active: i32 = sqlx::query_scalar("SELECT check_active_transactions($1)")
        .bind(b.user)
        .fetch_one(&mut c)
        .await
        .expect("check_active_transactions");
    assert_eq!(active, 0);

    for sql in [
        "SELECT rollback_execute_order_atomic($1, $2, 'viewer tries')",
        "SELECT rollback_order_execution($1, $2, 'viewer tries')",
        "SELECT rollback_with_postcheck($1, $2, 'viewer tries', '{}'::jsonb, false)",
        "SELECT execute_order_atomic($2, 'EURUSD', 'market', 'buy', 1, 1.1, 'k-viewer', $1)",
        "SELECT create_trading_account($1, 1000000)",
        "SELECT set_maintenance_mode(true, 'viewer tries')",
        "SELECT record_rollback_failure($1, $2, 'rollback_failed', '{}'::jsonb)",
        "UPDATE orders SET status = 'rolled_back' WHERE id = $1 AND user_id = $2",
        "UPDATE profiles SET balance = balance + 1 WHERE id = $1",
        "INSERT INTO order_audit_log (order_id, user_id, action, rollback_id, operator) \
         VALUES ($1, $2, 'rollback_failed', gen_random_uuid(), 'x')",
        "DELETE FROM ledger_transfers WHERE user_id = $1",
    ] {
        let code = denied(&mut c, sql, b.order, b.user).await;
        assert_eq!(code, "42501", "{sql}");
    }
    // Neither the order nor its group was touched.
    let pre = db::precheck(&mut c, b.grouped, b.user).await.expect("pre-check");
    assert!(pre.ready, "{pre:?}");
    let _ = c.close().await;
    assert_eq!(fingerprint(&t.pool).await, print, "nothing may have changed");
    assert_eq!(db::rollback_audit_rows(&t.pool, b.order).await.expect("rows"), 0);
    drop_role(&t, &role).await;
}

#[tokio::test]
async fn temp_tables_cannot_shadow_the_book_for_the_rollback_functions() {
    let t = test_db().await;
    let b = book(&t).await;
    let role = login_role(&t, "ic_attacker", Some("incident_operator")).await;
    // The attacker's own real account, made by the superuser, with a real executed order.
    let attacker = account(&t.pool, "1000").await;
    let real_order = executed(&t.pool, attacker, "100", None).await;
    let attacker_money = money_of(&t.pool, attacker).await;
    let print = fingerprint(&t.pool).await;
    let audit_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_audit_log").fetch_one(&t.pool).await.expect("count");

    let mut c = connect_as(&t, &role).await;
    let forged = Uuid::new_v4();
    let forged_tx = Uuid::new_v4();
    let forged_position = Uuid::new_v4();
    sqlx::raw_sql(
        "CREATE TEMP TABLE profiles (LIKE public.profiles INCLUDING ALL);
         CREATE TEMP TABLE orders (LIKE public.orders INCLUDING DEFAULTS);
         CREATE TEMP TABLE positions (LIKE public.positions INCLUDING DEFAULTS);
         CREATE TEMP TABLE ledger_transfers (LIKE public.ledger_transfers INCLUDING DEFAULTS INCLUDING IDENTITY);
         CREATE TEMP TABLE order_audit_log (LIKE public.order_audit_log INCLUDING DEFAULTS INCLUDING IDENTITY);
         -- so that a function running as another role could read and write them
         GRANT ALL ON pg_temp.profiles, pg_temp.orders, pg_temp.positions, pg_temp.ledger_transfers,
             pg_temp.order_audit_log TO PUBLIC;
         SET search_path = pg_temp, public;",
    )
    .execute(&mut c)
    .await
    .expect("an operator may create temporary tables");
    sqlx::query("INSERT INTO pg_temp.profiles (id, balance, margin_used) VALUES ($1, 0, 1000000)")
        .bind(attacker)
        .execute(&mut c)
        .await
        .expect("forged profile");
    sqlx::query(
        "INSERT INTO pg_temp.orders (id, user_id, symbol, order_type, side, quantity, price, status, transaction_id, \
             idempotency_key, commission, execution_price, total_cost, executed_at, position_id) \
         VALUES ($1, $2, 'EURUSD', 'market', 'buy', 1000000, 1.1, 'executed', $3, 'forged', 1000, 1.1, 1000000, \
             now() - interval '1 minute', $4)",
    )
    .bind(forged)
    .bind(attacker)
    .bind(forged_tx)
    .bind(forged_position)
    .execute(&mut c)
    .await
    .expect("forged order");
    sqlx::query(
        "INSERT INTO pg_temp.positions (id, user_id, order_id, symbol, side, quantity, entry_price, margin_used, \
             transaction_id) VALUES ($1, $2, $3, 'EURUSD', 'buy', 1000000, 1.1, 1000000, $4)",
    )
    .bind(forged_position)
    .bind(attacker)
    .bind(forged)
    .bind(forged_tx)
    .execute(&mut c)
    .await
    .expect("forged position");
    sqlx::query(
        "INSERT INTO pg_temp.ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id) \
         VALUES ($1, 'user_cash', 'user_margin', 1000000, 'margin_lock', $2), \
                ($1, 'user_cash', 'house_commission', 1000, 'commission', $2)",
    )
    .bind(attacker)
    .bind(forged)
    .execute(&mut c)
    .await
    .expect("forged transfers");
    // Unqualified names now resolve to the forgeries in this session.
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = $1")
        .bind(forged)
        .fetch_one(&mut c)
        .await
        .expect("the session sees its forgery");
    assert_eq!(seen, 1, "the shadowing is in place");

    for (function, sql) in [
        ("single", "SELECT rollback_execute_order_atomic($1, $2, 'please refund')"),
        ("group", "SELECT rollback_order_execution($1, $2, 'please refund')"),
    ] {
        let r: Value =
            sqlx::query_scalar(sql).bind(forged).bind(attacker).fetch_one(&mut c).await.expect("rollback call");
        assert_eq!(r["success"], false, "{function}: {r}");
        assert_eq!(r["error_code"], "order_not_found", "{function}: {r}");
    }
    let pre = db::precheck(&mut c, forged, attacker).await.expect("precheck");
    assert!(!pre.ready, "the pre-check must not see the forged order: {pre:?}");
    assert!(pre.checks.iter().any(|c| c.check == "order_exists" && !c.passed), "{pre:?}");

    assert_eq!(fingerprint(&t.pool).await, print, "no real row may have changed");
    assert_eq!(money_of(&t.pool, attacker).await, attacker_money);
    let after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_audit_log").fetch_one(&t.pool).await.expect("count");
    assert_eq!(after, audit_rows, "no real audit row written");
    assert_eq!(db::rollback_audit_rows(&t.pool, forged).await.expect("rows"), 0);

    // Planting an object in public, where the functions' search_path would find it, fails.
    let err = sqlx::raw_sql(
        "CREATE FUNCTION public.incident_planted(p_amount numeric) RETURNS numeric LANGUAGE sql AS $$ SELECT 0::numeric $$",
    )
    .execute(&mut c)
    .await
    .expect_err("CREATE on schema public is revoked");
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    let err = sqlx::raw_sql("CREATE TABLE public.orders_copy (id uuid)")
        .execute(&mut c)
        .await
        .expect_err("CREATE on schema public is revoked");
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");

    // With the forgeries still in place, the same role rolls back its real order: the
    // functions act on the real book and leave the temporary tables alone.
    let r = db::rollback_order(&mut c, real_order, attacker, "real mistake").await.expect("real rollback");
    assert!(r.success, "{r:?}");
    assert_eq!(money_of(&t.pool, attacker).await, (dec("1000"), dec("0")));
    let forged_status: String = sqlx::query_scalar("SELECT status FROM pg_temp.orders WHERE id = $1")
        .bind(forged)
        .fetch_one(&mut c)
        .await
        .expect("forged order still there");
    assert_eq!(forged_status, "executed");
    let temp_audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_temp.order_audit_log").fetch_one(&mut c).await.expect("count");
    assert_eq!(temp_audit, 0);
    let db_user: String =
        sqlx::query_scalar("SELECT db_user FROM order_audit_log WHERE order_id = $1 AND action = 'order_rolled_back'")
            .bind(real_order)
            .fetch_one(&t.pool)
            .await
            .expect("real audit row");
    assert_eq!(db_user, role, "the audit row names the login role that did it");
    // The other user's book was never touched.
    assert_eq!(db::rollback_audit_rows(&t.pool, b.order).await.expect("rows"), 0);
    let _ = c.close().await;
    assert_consistent(&t.pool).await;
    drop_role(&t, &role).await;
}

#[tokio::test]
async fn the_catalog_shows_pinned_search_paths_no_public_execute_and_a_nologin_owner() {
    let t = test_db().await;

    // The contract functions exist with their exact signatures, and are SECURITY DEFINER.
    for (signature, arguments, result) in CONTRACT {
        let row = sqlx::query(
            "SELECT p.prosecdef, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), n.nspname::text \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE p.oid = to_regprocedure($1)",
        )
        .bind(format!("public.{signature}"))
        .fetch_optional(&t.pool)
        .await
        .expect("catalog query")
        .unwrap_or_else(|| panic!("{signature} does not exist"));
        assert!(row.get::<bool, _>(0), "{signature} must be SECURITY DEFINER");
        assert_eq!(row.get::<String, _>(1), arguments, "{signature}: argument list");
        assert_eq!(row.get::<String, _>(2), result, "{signature}: result type");
        assert_eq!(row.get::<String, _>(3), "public");
    }

    // Every SECURITY DEFINER function of public pins its search_path with pg_temp last.
    let rows = sqlx::query(
        "SELECT p.oid::regprocedure::text, \
                (SELECT c FROM unnest(p.proconfig) AS c WHERE c LIKE 'search_path=%') \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'public' AND p.prosecdef ORDER BY 1",
    )
    .fetch_all(&t.pool)
    .await
    .expect("security definer functions");
    let definers: BTreeSet<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
    for (signature, _, _) in CONTRACT {
        assert!(definers.contains(signature), "{signature} missing from the SECURITY DEFINER functions: {definers:?}");
    }
    for r in &rows {
        let name: String = r.get(0);
        let setting: Option<String> = r.get(1);
        let setting = setting.unwrap_or_else(|| panic!("{name} has no search_path setting"));
        let path: Vec<&str> =
            setting.trim_start_matches("search_path=").split(',').map(|s| s.trim().trim_matches('"')).collect();
        assert_eq!(path.last().copied(), Some("pg_temp"), "{name}: {setting}");
        assert_eq!(path.iter().filter(|s| **s == "pg_temp").count(), 1, "{name}: {setting}");
    }

    // No function of public is executable by PUBLIC: checked through the pseudo-role and
    // through the ACL itself (a NULL proacl means the default, which grants PUBLIC EXECUTE).
    let public_exec: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'public' AND ( \
             has_function_privilege('public'::name, p.oid, 'EXECUTE') \
             OR EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a \
                        WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')) \
         ORDER BY 1",
    )
    .fetch_all(&t.pool)
    .await
    .expect("public execute");
    assert!(public_exec.is_empty(), "executable by PUBLIC: {public_exec:?}");
    let n_functions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
    )
    .fetch_one(&t.pool)
    .await
    .expect("count");
    assert!(n_functions >= 9, "the query above looked at {n_functions} functions");

    // Every function (and every table of the book) is owned by a role that cannot log in.
    let owners: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, r.rolname::text, r.rolcanlogin \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_roles r ON r.oid = p.proowner \
         WHERE n.nspname = 'public' \
         UNION ALL \
         SELECT c.oid::regclass::text, r.rolname::text, r.rolcanlogin \
         FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner \
         WHERE c.oid IN ('public.profiles'::regclass, 'public.orders'::regclass, 'public.positions'::regclass, \
                         'public.order_audit_log'::regclass, 'public.ledger_transfers'::regclass, \
                         'public.daily_pnl_tracking'::regclass, 'public.system_settings'::regclass, \
                         'public.maintenance_log'::regclass, 'public.instruments'::regclass)",
    )
    .fetch_all(&t.pool)
    .await
    .expect("owners");
    assert!(owners.len() >= 9 + 9);
    for (object, owner, can_login) in &owners {
        assert!(!can_login, "{object} is owned by {owner}, which can log in");
    }

    // Exactly the contract's grants: the viewer runs the read-only checks, the operator
    // also the money paths; nobody but the owner runs the internal helpers.
    let viewer = [
        // four-eyes approval (migration 19): whether work needs a second person, and the
        // policy with what this login has left of its budget
        "approval_needed",
        "approval_policy_show",
        "check_active_transactions",
        "incident_events_max_seq",
        "ledger_audit",
        "ledger_audit_full",
        "ledger_audit_users",
        // releases (migration 17): the catalog, drift, a rollback's pre-check, the verify
        // script (undone)
        "release_catalog",
        "release_drift",
        "release_revert_precheck",
        "release_verify_current",
        "rollback_postcheck",
        "rollback_precheck",
        // what this session's rows will say (name, login): every client checks it
        "session_operator",
    ];
    assert_eq!(executable_by(&t, "incident_viewer").await, viewer);
    let mut operator: Vec<&str> = viewer.to_vec();
    operator.extend([
        // accounts the console leaves out of its lists and metrics: the operator's to make
        "create_drill_account",
        "ledger_audit_checkpoint",
        "probe_new_orders",
        "record_incident_events",
        // a rollback done without the incident's journal, on the record first (migration 15)
        "record_journal_waiver",
        "record_rollback_failure",
        "rollback_execute_order_atomic",
        "rollback_order_execution",
        "rollback_with_postcheck",
        "set_maintenance_mode",
        // one symbol's maintenance and its probe (migration 16)
        "set_symbol_maintenance",
        "probe_new_orders",
        // a release rollback (archived, proved) and its idempotency probe (migration 17)
        "release_rollback",
        "release_probe_idempotency",
        // the circuit breaker (migration 18): a person opens and closes it
        "open_breaker",
        "close_breaker",
        // four-eyes approval (migration 19): one person asks, another decides, the asker
        // may withdraw; the policy is the owner's (set_approval_policy is not here)
        "request_approval",
        "decide_approval",
        "cancel_approval",
        // many orders per call and per transaction, each in a subtransaction (migration 20)
        "rollback_orders",
    ]);
    operator.sort_unstable();
    assert_eq!(executable_by(&t, "incident_operator").await, operator);
    // Trading is the engine's alone.
    assert_eq!(executable_by(&t, "incident_engine").await, ["create_trading_account", "execute_order_atomic"]);
}

/// Names of the functions of public that `role` may execute.
async fn executable_by(t: &TestDb, role: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = 'public' AND has_function_privilege($1::name, p.oid, 'EXECUTE') ORDER BY 1",
    )
    .bind(role)
    .fetch_all(&t.pool)
    .await
    .expect("executable functions")
}

/// Runs each statement as the superuser; each must fail and leave the table as it was.
async fn assert_append_only(t: &TestDb, table: &str) {
    let content = format!("SELECT md5(string_agg(x::text, ';' ORDER BY x.id)) || count(*) FROM {table} x");
    let before: String =
        sqlx::query_scalar(sqlx::AssertSqlSafe(content.clone())).fetch_one(&t.pool).await.expect("content");
    for statement in [
        format!("UPDATE {table} SET created_at = created_at - interval '1 day'"),
        format!("UPDATE {table} SET user_id = user_id WHERE false"),
        format!("DELETE FROM {table}"),
        format!("DELETE FROM {table} WHERE id = (SELECT min(id) FROM {table})"),
        format!("TRUNCATE {table}"),
        format!("TRUNCATE {table} CASCADE"),
    ] {
        let err = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&t.pool)
            .await
            .expect_err("the table is append-only, even for the superuser");
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{statement}: {err}");
        assert!(err.to_string().contains("append-only"), "{statement}: {err}");
    }
    let after: String = sqlx::query_scalar(sqlx::AssertSqlSafe(content)).fetch_one(&t.pool).await.expect("content");
    assert_eq!(after, before, "{table} must be unchanged");
}

#[tokio::test]
async fn the_audit_log_and_the_ledger_refuse_update_delete_and_truncate_even_for_the_superuser() {
    let t = test_db().await;
    let b = book(&t).await;
    let r = db::rollback_order(&t.pool, b.order, b.user, "duplicate execution").await.expect("rollback");
    assert!(r.success, "{r:?}");
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM order_audit_log").fetch_one(&t.pool).await.expect("n");
    assert_eq!(audit, 2, "one audit row per rollback");
    let print = fingerprint(&t.pool).await;

    assert_append_only(&t, "order_audit_log").await;
    assert_append_only(&t, "ledger_transfers").await;

    assert_eq!(fingerprint(&t.pool).await, print);
    assert_eq!(db::rollback_audit_rows(&t.pool, b.order).await.expect("rows"), 1);
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn a_transfer_cannot_be_reversed_twice_even_by_a_direct_insert() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let order = executed(&t.pool, user, "1000", None).await;
    let r = db::rollback_order(&t.pool, order, user, "duplicate").await.expect("rollback");
    assert!(r.success, "{r:?}");
    assert_eq!(r.transfers_reversed, Some(2));
    let print = fingerprint(&t.pool).await;

    let originals: Vec<i64> = sqlx::query_scalar(
        "SELECT t.id FROM ledger_transfers t \
         WHERE t.order_id = $1 AND t.reverses_id IS NULL \
           AND EXISTS (SELECT 1 FROM ledger_transfers r WHERE r.reverses_id = t.id) ORDER BY t.id",
    )
    .bind(order)
    .fetch_all(&t.pool)
    .await
    .expect("reversed transfers");
    assert_eq!(originals.len(), 2, "margin lock and commission were reversed");
    for original in originals {
        let err = sqlx::query(
            "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, reverses_id) \
             SELECT user_id, credit_account, debit_account, amount, 'reversal', order_id, id \
             FROM ledger_transfers WHERE id = $1",
        )
        .bind(original)
        .execute(&t.pool)
        .await
        .expect_err("a second reversal must be impossible");
        let e = err.as_database_error().expect("database error");
        assert_eq!(e.code().as_deref(), Some("23505"), "{err}");
        assert_eq!(e.constraint(), Some("ledger_reversed_at_most_once"), "{err}");
    }
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_eq!(money_of(&t.pool, user).await, (dec("10000"), dec("0")));
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn a_balance_cannot_go_negative_even_for_the_owner_of_the_tables() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let _order = executed(&t.pool, user, "1000", None).await;
    let print = fingerprint(&t.pool).await;
    for (sql, constraint) in [
        // money columns are of the domain money_nonneg (numeric(20,8), never negative)
        ("UPDATE profiles SET balance = -1", "money_nonneg_check"),
        ("UPDATE profiles SET balance = -0.00000001 WHERE id = $1", "money_nonneg_check"),
        ("UPDATE profiles SET margin_used = -1 WHERE id = $1", "money_nonneg_check"),
    ] {
        // As the superuser, and as the owner of the tables (inside a transaction that is
        // rolled back, so the SET ROLE does not leak into the pool).
        for as_owner in [false, true] {
            let mut tx = t.pool.begin().await.expect("begin");
            if as_owner {
                sqlx::raw_sql("SET LOCAL ROLE incident_owner").execute(&mut *tx).await.expect("set role");
            }
            let q = sqlx::query(sql);
            let q = if sql.contains("$1") { q.bind(user) } else { q };
            let err = q.execute(&mut *tx).await.expect_err("a negative balance must be refused");
            let e = err.as_database_error().expect("database error");
            assert_eq!(e.code().as_deref(), Some("23514"), "{sql}: {err}");
            assert_eq!(e.constraint(), Some(constraint), "{sql}: {err}");
            tx.rollback().await.expect("rollback");
        }
    }
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_eq!(money_of(&t.pool, user).await, (dec("9977.78"), dec("22")));
}

#[tokio::test]
async fn a_position_cannot_belong_to_another_users_order() {
    let t = test_db().await;
    let alice = account(&t.pool, "10000").await;
    let mallory = account(&t.pool, "10000").await;
    let order = executed(&t.pool, alice, "1000", None).await;
    let print = fingerprint(&t.pool).await;
    let attempts = [
        // a second position for alice's order, owned by mallory
        "INSERT INTO positions (user_id, order_id, symbol, side, quantity, entry_price, margin_used) \
         VALUES ($2, $1, 'EURUSD', 'buy', 1, 1.1, 0)",
        // handing alice's position to mallory
        "UPDATE positions SET user_id = $2 WHERE order_id = $1",
        // handing alice's order to mallory
        "UPDATE orders SET user_id = $2 WHERE id = $1",
    ];
    for sql in attempts {
        let err = sqlx::query(sql).bind(order).bind(mallory).execute(&t.pool).await.expect_err(sql);
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert!(matches!(code.as_deref(), Some("23514" | "23505")), "{sql}: {err}");
    }
    assert_eq!(fingerprint(&t.pool).await, print);
}
