//! Four-eyes approval (migration 19) and the breaker (migration 18) attacked by operators
//! with logins of their own: older snapshots (REPEATABLE READ, SERIALIZABLE) and many
//! connections of one login racing its budget; a lock any login can take on another's
//! budget; another login's operation id, forged or squatted; a request changed after it was
//! filed; planted objects and temporary tables; internal functions called directly; the
//! approval tables written directly; a connection killed mid-rollback; a group and a batch at
//! Level 3; the drill exemption; a breaker closed while it opens, and its approval used by two
//! sessions at once; a journal copy that names a level no rollback can read; text a
//! terminal acts on. Each test asserts what must hold, so it stays a regression test.
//!
//! Holes found and fixed in migration 19's files (not yet released):
//! - `approvals::nobody_decides_their_own_request_not_with_another_login_under_the_same_name`:
//!   a second login claiming the requester's name ("alice (via a2)" beside "alice (via a)")
//!   approved the request: the names were compared whole, login included.
//! - `repeatable_read_and_serializable_snapshots_do_not_stretch_a_budget`: calls of one
//!   login whose snapshots were taken before the others committed each read the budget
//!   unspent: six orders went through a budget of three under REPEATABLE READ.
//! - `a_lock_any_login_can_take_holds_up_no_logins_rollbacks`: the budget was serialized by
//!   an advisory lock keyed by the login's name; any login (a role in no group at all) could
//!   hold it and stop every unapproved rollback of that login.
//! - `another_login_cannot_squat_the_operation_a_batch_runs_under`: a login that filed a
//!   request under the operation id another login's batch was running under (it is in the
//!   audit log) made the rest of that batch refused.
//! - `closing_the_breaker_while_another_session_opens_it_still_needs_the_approval`: a close
//!   that read the breaker closed waited for an opening and then closed it, at Level 3,
//!   without an approval.
//! - `an_approval_to_close_the_breaker_is_used_once_even_by_two_sessions_at_once`: a second
//!   session that claimed the approval before the first committed closed the breaker again
//!   after it was reopened.
//! - `a_level_no_rollback_can_read_in_a_journal_copy_stops_no_rollback`: an operator who
//!   copied a journal entry whose level was not a number made every rollback of every login
//!   fail (a cast in the level check), while the policy was on.
//! - `an_approval_covers_the_releases_and_the_breaker_opening_it_was_asked_for`: an approval
//!   to roll back to a release also reverted a release deployed after the approval, and
//!   (accepting drift) discarded a change made by hand after it; an approval to close the
//!   breaker closed a later opening the approver never saw.
//!
//! Decided, and held by a test: a "batch" sent as single rollbacks under a new operation id
//! each (or none) is that many single rollbacks, allowed at Level 3 within the login's
//! budget of operations (`single_limit`); the server cannot tell them from separate work.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::approvals::*;
use crate::security::{connect_as, drop_role, login_role, sqlstate};
use crate::support::db::*;
use incident_console::core::workflow::Level;
use incident_console::store::db;

/// Runs `sql`; its SQLSTATE when it failed.
pub(crate) async fn attempt(c: &mut PgConnection, sql: &str) -> Option<String> {
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut *c).await {
        Ok(_) => None,
        Err(e) => Some(sqlstate(&e).unwrap_or_else(|| format!("not a database error: {e}"))),
    }
}

/// The backend of a connection.
pub(crate) async fn pid_of(c: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut *c).await.expect("pid")
}

/// Waits until backend `pid` waits for a lock.
pub(crate) async fn wait_for_lock_wait(t: &TestDb, pid: i32) {
    for _ in 0..400 {
        let waiting: bool =
            sqlx::query_scalar("SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1")
                .bind(pid)
                .fetch_optional(&t.pool)
                .await
                .expect("pg_stat_activity")
                .unwrap_or(false);
        if waiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("backend {pid} never waited for a lock");
}

/// Rolls back each order of `which` on a connection of its own of `role`, all at once, in
/// transactions of `isolation` whose snapshots are all taken before the first call; a
/// serialization failure is retried as a client does. The answers, in order.
async fn race(t: &TestDb, role: &str, isolation: &str, b: &Book, which: std::ops::Range<usize>) -> Vec<Value> {
    let barrier = Arc::new(tokio::sync::Barrier::new(which.len()));
    let mut tasks = Vec::new();
    for i in which {
        let mut c = connect_as(t, role).await;
        let barrier = barrier.clone();
        let (order, user) = (b.orders[i], b.users[i]);
        let isolation = isolation.to_string();
        tasks.push(tokio::spawn(async move {
            let mut first = true;
            for _ in 0..50 {
                run(&mut c, &format!("BEGIN ISOLATION LEVEL {isolation}")).await;
                run(&mut c, "SELECT 1").await; // the snapshot, before any call committed
                if first {
                    barrier.wait().await;
                    first = false;
                }
                let answer = match try_rollback(&mut c, order, user, "race").await {
                    Ok(v) => v,
                    Err(e) if sqlstate(&e).as_deref() == Some("40001") => {
                        run(&mut c, "ROLLBACK").await;
                        continue;
                    }
                    Err(e) => panic!("rollback: {e}"),
                };
                match attempt(&mut c, "COMMIT").await {
                    None => {
                        let _ = c.close().await;
                        return answer;
                    }
                    Some(code) if code == "40001" => continue,
                    Some(code) => panic!("commit: {code}"),
                }
            }
            panic!("50 serialization failures in a row");
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn repeatable_read_and_serializable_snapshots_do_not_stretch_a_budget() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 3, "single_limit": 100})).await;
    let b = book(&t, 18).await;
    let mut rolled_back = Vec::new();
    let mut roles = Vec::new();
    for (n, isolation) in ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"].into_iter().enumerate() {
        let role = login_role(&t, "aadv_race", Some("incident_operator")).await;
        let range = n * 6..n * 6 + 6;
        let answers = race(&t, &role, isolation, &b, range.clone()).await;
        let mut done = 0;
        for (i, v) in range.clone().zip(&answers) {
            if v["success"] == true {
                done += 1;
                rolled_back.push(i);
            } else {
                refused(v, "approval_required");
            }
        }
        assert_eq!(done, 3, "{isolation}: exactly the budget of three goes through: {answers:?}");
        let charged: (i64, rust_decimal::Decimal) = sqlx::query_as(
            "SELECT coalesce(sum(orders), 0)::bigint, coalesce(sum(refunded), 0) FROM unapproved_rollbacks WHERE login = $1",
        )
        .bind(&role)
        .fetch_one(&t.pool)
        .await
        .expect("charged");
        assert_eq!(charged, (3, dec("6.666")), "{isolation}: the budget counts what went through");
        roles.push(role);
    }
    b.assert_rolled_back(&t, &rolled_back).await;
    for role in roles {
        drop_role(&t, &role).await;
    }
}

#[tokio::test]
async fn a_lock_any_login_can_take_holds_up_no_logins_rollbacks() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true})).await;
    let b = book(&t, 1).await;
    let (victim, mut v) = login(&t, "aadv_victim", "incident_operator").await;
    let nobody = login_role(&t, "aadv_nobody", None).await;
    let mut squatter = connect_as(&t, &nobody).await;
    // Advisory locks need no privilege: any login can hold any key, this one the key the
    // budget of the victim's login was serialized on.
    let key = format!("SELECT pg_advisory_lock(hashtext('approval_budget'), hashtext('{victim}'))");
    assert_eq!(attempt(&mut squatter, &key).await, None);
    // Another operator holds what its rights let it hold on the approval tables: nothing
    // that conflicts (reading takes ACCESS SHARE).
    let (m_name, mut m) = login(&t, "aadv_m", "incident_operator").await;
    run(&mut m, "BEGIN").await;
    run(&mut m, "SELECT count(*) FROM approval_requests, approval_policy, circuit_breaker").await;
    for sql in [
        "LOCK TABLE approval_requests IN SHARE MODE",
        "LOCK TABLE approval_policy IN ROW SHARE MODE",
        "LOCK TABLE circuit_breaker IN SHARE ROW EXCLUSIVE MODE",
        "LOCK TABLE approval_budget_locks IN ACCESS SHARE MODE",
        "SELECT * FROM approval_requests FOR SHARE",
        "SELECT * FROM approval_policy FOR KEY SHARE",
        "SELECT * FROM approval_budget_locks FOR UPDATE",
    ] {
        run(&mut m, "SAVEPOINT s").await;
        assert_eq!(attempt(&mut m, sql).await.as_deref(), Some("42501"), "{sql}");
        run(&mut m, "ROLLBACK TO SAVEPOINT s").await;
    }
    run(&mut v, "SET lock_timeout = '2s'").await;
    let answer = try_rollback(&mut v, b.orders[0], b.users[0], "not held up").await;
    let answer = answer.unwrap_or_else(|e| panic!("the victim's rollback waited for the squatter: {e}"));
    ok(&answer);
    run(&mut m, "COMMIT").await;
    b.assert_rolled_back(&t, &[0]).await;
    cleanup(&t, vec![(victim, v), (nobody, squatter), (m_name, m)]).await;
}

#[tokio::test]
async fn another_logins_approved_operation_is_useless_to_a_forger() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 4).await;
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "aadv_b", "incident_operator").await;
    let (m_name, mut m) = login(&t, "aadv_m", "incident_operator").await;
    let op = Uuid::new_v4();
    let shown = refunded_of(&t, &b.orders[..3]).await;
    let id = request_id(&request_orders(&mut a, "batch", op, (&b.orders[..3], &b.users[..3]), "dup", shown, 2).await);
    ok(&decide(&mut bb, id, true, "ok").await);

    // Mallory reads the operation id (viewers read the requests) and runs under it: in the
    // scope with its reason, outside it, in a transaction, in a pooler-style SET LOCAL.
    operation(&mut m, Some(op)).await;
    refused(&rollback(&mut m, b.orders[0], b.users[0], "dup").await, "approval_required");
    refused(&rollback(&mut m, b.orders[3], b.users[3], "dup").await, "approval_required");
    operation(&mut m, None).await;
    run(&mut m, "BEGIN").await;
    sqlx::query("SELECT set_config('incident.batch_id', $1, true)")
        .bind(op.to_string())
        .execute(&mut m)
        .await
        .expect("set local");
    refused(&rollback(&mut m, b.orders[1], b.users[1], "dup").await, "approval_required");
    run(&mut m, "COMMIT").await;
    // The approver may not use what it approved either.
    operation(&mut bb, Some(op)).await;
    refused(&rollback(&mut bb, b.orders[2], b.users[2], "dup").await, "approval_required");
    // Malformed operation ids are no operation: the budget applies (one order).
    for forged in [format!("{op} "), op.to_string().to_uppercase().replace('-', ""), "' OR true --".into()] {
        sqlx::query("SELECT set_config('incident.batch_id', $1, false)")
            .bind(&forged)
            .execute(&mut m)
            .await
            .expect("set");
        let _ = rollback(&mut m, b.orders[3], b.users[3], "dup").await;
    }
    assert_eq!(count(&t, "SELECT count(*) FROM approval_log WHERE action = 'used'").await, 0);
    b.assert_rolled_back(&t, &[3]).await;
    cleanup(&t, vec![(a_name, a), (b_name, bb), (m_name, m)]).await;
}

#[tokio::test]
async fn another_login_cannot_squat_the_operation_a_batch_runs_under() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 3})).await;
    let b = book(&t, 3).await;
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    let (m_name, mut m) = login(&t, "aadv_m", "incident_operator").await;
    let op = Uuid::new_v4();
    operation(&mut a, Some(op)).await;
    ok(&rollback(&mut a, b.orders[0], b.users[0], "small batch").await);
    // Mallory reads the batch's operation from the audit log and files a request under it.
    let seen: Option<Uuid> = sqlx::query_scalar("SELECT batch_id FROM order_audit_log WHERE order_id = $1")
        .bind(b.orders[0])
        .fetch_one(&mut m)
        .await
        .expect("read the audit log");
    assert_eq!(seen, Some(op));
    let v = request_orders(&mut m, "batch", op, (&b.orders[1..2], &b.users[1..2]), "squat", dec("2.222"), 1).await;
    refused(&v, "invalid_argument");
    // The batch goes on.
    ok(&rollback(&mut a, b.orders[1], b.users[1], "small batch").await);
    ok(&rollback(&mut a, b.orders[2], b.users[2], "small batch").await);
    b.assert_rolled_back(&t, &[0, 1, 2]).await;
    cleanup(&t, vec![(a_name, a), (m_name, m)]).await;
}

#[tokio::test]
async fn a_request_cannot_be_changed_after_it_is_filed_nor_its_group_grown() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 2).await;
    let user = account(&t.pool, "1000").await;
    let tx = Uuid::new_v4();
    let group = [executed(&t.pool, user, "10", Some(tx)).await, executed(&t.pool, user, "10", Some(tx)).await];
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "aadv_b", "incident_operator").await;
    let op = Uuid::new_v4();
    let shown = refunded_of(&t, &group).await;
    let id = request_id(&request_orders(&mut a, "group", op, (&group, &[user, user]), "group dup", shown, 2).await);

    // The operator writes the tables directly: no privilege.
    for sql in [
        format!("INSERT INTO approval_orders VALUES ('{id}', '{}', '{}')", b.orders[0], b.users[0]),
        format!("UPDATE approval_requests SET decision = 'approved', decided_at = now() WHERE id = '{id}'"),
        format!("UPDATE approval_requests SET requested_login = 'someone' WHERE id = '{id}'"),
        format!("DELETE FROM approval_orders WHERE request_id = '{id}'"),
        format!("INSERT INTO approval_log (request_id, action, operator) VALUES ('{id}', 'approved', 'x')"),
        "DELETE FROM unapproved_rollbacks".into(),
        "INSERT INTO unapproved_rollbacks (orders, refunded) VALUES (-100, -1000)".into(),
        "UPDATE approval_policy SET enabled = false".into(),
        "TRUNCATE approval_log".into(),
    ] {
        assert_eq!(attempt(&mut a, &sql).await.as_deref(), Some("42501"), "{sql}");
    }
    // Even the superuser cannot edit the record: append-only.
    for sql in [
        format!("UPDATE approval_orders SET order_id = '{}' WHERE request_id = '{id}'", b.orders[0]),
        format!("DELETE FROM approval_orders WHERE request_id = '{id}'"),
        "UPDATE approval_log SET action = 'approved'".into(),
        "DELETE FROM approval_log".into(),
        "DELETE FROM approval_requests".into(),
        "DELETE FROM unapproved_rollbacks".into(),
        "DELETE FROM approval_policy".into(),
    ] {
        let e = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone())).execute(&t.pool).await.expect_err(&sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(count(&t, &format!("SELECT count(*) FROM approval_orders WHERE request_id = '{id}'")).await, 2);

    ok(&decide(&mut bb, id, true, "the group is a duplicate").await);
    // The engine executes a third order in the group after the approval: the group grew, so
    // the approval no longer covers it.
    let third = executed(&t.pool, user, "10", Some(tx)).await;
    let before = money_of(&t.pool, user).await;
    operation(&mut a, Some(op)).await;
    let v = group_rollback(&mut a, group[0], user, "group dup").await;
    refused(&v, "approval_required");
    assert!(v["message"].as_str().unwrap_or("").contains("outside the approved scope"), "{v}");
    assert_eq!(money_of(&t.pool, user).await, before);
    // The two approved orders one by one are in scope; the third is not.
    ok(&rollback(&mut a, group[0], user, "group dup").await);
    ok(&rollback(&mut a, group[1], user, "group dup").await);
    refused(&rollback(&mut a, third, user, "group dup").await, "approval_required");
    for o in group {
        assert_eq!(db::rollback_audit_rows(&t.pool, o).await.expect("rows"), 1);
    }
    assert_eq!(db::rollback_audit_rows(&t.pool, third).await.expect("rows"), 0);
    assert_consistent(&t.pool).await;
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}

#[tokio::test]
async fn planted_functions_and_temporary_tables_change_no_decision() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 3).await;
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    ok(&rollback(&mut a, b.orders[0], b.users[0], "spends the budget").await);

    for sql in [
        "CREATE FUNCTION public._claim_approval(uuid, text[], text) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$",
        "CREATE TABLE public.approval_budget (login text)",
        "CREATE SCHEMA approvals_evil",
    ] {
        assert_eq!(attempt(&mut a, sql).await.as_deref(), Some("42501"), "{sql}");
    }
    let op = Uuid::new_v4();
    let planted = format!(
        "CREATE TEMP TABLE approval_policy AS SELECT * FROM public.approval_policy;
         UPDATE pg_temp.approval_policy SET enabled = false, batch_orders = 1000000;
         CREATE TEMP TABLE approval_requests AS SELECT * FROM public.approval_requests WITH NO DATA;
         INSERT INTO pg_temp.approval_requests (id, operation_id, kind, level, reason, scope_hash, requested_by,
             requested_login, expires_at, decision, decided_at)
         VALUES (gen_random_uuid(), '{op}', 'batch', 1, 'planted', 'x', 'x', session_user, now() + interval '1 day',
             'approved', now());
         CREATE TEMP TABLE unapproved_rollbacks (id bigint, at timestamptz, login text, operation uuid, orders int,
             refunded numeric);
         CREATE TEMP TABLE profiles (id uuid, is_drill boolean);
         INSERT INTO pg_temp.profiles VALUES ('{}', true), ('{}', true);
         CREATE FUNCTION pg_temp._claim_approval(uuid, text[], text) RETURNS jsonb LANGUAGE sql
             AS $$ SELECT jsonb_build_object('approval_id', gen_random_uuid(), 'reason', 'planted', 'used', true) $$;
         CREATE FUNCTION pg_temp._approval_reasons(text, integer, numeric, integer, uuid) RETURNS jsonb
             LANGUAGE sql AS $$ SELECT '[]'::jsonb $$;
         CREATE FUNCTION pg_temp._open_incident_level() RETURNS integer LANGUAGE sql AS $$ SELECT 0 $$;
         GRANT ALL ON pg_temp.approval_policy, pg_temp.approval_requests, pg_temp.unapproved_rollbacks,
             pg_temp.profiles TO PUBLIC;
         SET search_path = pg_temp, public;",
        b.users[1], b.users[2]
    );
    run(&mut a, &planted).await;
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM approval_requests")
        .fetch_one(&mut a)
        .await
        .expect("the session sees its forgery");
    assert_eq!(seen, 1);
    for with_op in [None, Some(op)] {
        operation(&mut a, with_op).await;
        let v = rollback(&mut a, b.orders[1], b.users[1], "planted").await;
        refused(&v, "approval_required");
        let v = sqlx::query_scalar::<_, Value>("SELECT rollback_with_postcheck($1, $2, 'planted', '{}'::jsonb, false)")
            .bind(b.orders[2])
            .bind(b.users[2])
            .fetch_one(&mut a)
            .await
            .expect("rollback_with_postcheck");
        refused(&v["rollback"], "approval_required");
    }
    let policy: Value =
        sqlx::query_scalar("SELECT public.approval_policy_show()").fetch_one(&mut a).await.expect("show");
    assert_eq!(policy["enabled"], true, "{policy}");
    b.assert_rolled_back(&t, &[0]).await;
    cleanup(&t, vec![(a_name, a)]).await;
}

#[tokio::test]
async fn an_operator_cannot_call_the_internal_functions() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true})).await;
    let b = book(&t, 1).await;
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    let (o, u) = (b.orders[0], b.users[0]);
    let calls = [
        format!("SELECT _claim_approval('{o}', ARRAY['batch'], NULL)"),
        "SELECT _mark_approval_used(jsonb_build_object('approval_id', gen_random_uuid(), 'used', false))".into(),
        format!("SELECT _rollback_locked_orders('{u}', ARRAY['{o}']::uuid[], 'x', 'single', NULL, now())"),
        "SELECT _release_rollback_unguarded('base', 'x', false, false, NULL)".into(),
        "SELECT _switch_breaker(false, 'x', 'person')".into(),
        "SELECT _approval_reasons('single', 1, 1, 1, NULL)".into(),
        "SELECT * FROM _unapproved_used(10)".into(),
        "SELECT _open_incident_level()".into(),
        "SELECT set_approval_policy('{\"enabled\": false}')".into(),
        "SELECT * FROM unapproved_rollbacks".into(),
    ];
    for sql in calls {
        assert_eq!(attempt(&mut a, &sql).await.as_deref(), Some("42501"), "{sql}");
    }
    b.assert_rolled_back(&t, &[]).await;
    cleanup(&t, vec![(a_name, a)]).await;
}

#[tokio::test]
async fn a_connection_killed_mid_rollback_under_an_approval_leaves_nothing_and_the_retry_goes_through_once() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 2).await;
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "aadv_b", "incident_operator").await;
    let op = Uuid::new_v4();
    let shown = refunded_of(&t, &b.orders).await;
    let id = request_id(&request_orders(&mut a, "batch", op, (&b.orders, &b.users), "killed", shown, 2).await);
    ok(&decide(&mut bb, id, true, "ok").await);

    // The profile row is held, so the rollback stops after its approval was claimed and its
    // reversal transfers written, when it updates the balance.
    let mut holder = t.conn().await;
    run(&mut holder, "BEGIN").await;
    sqlx::query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE")
        .bind(b.users[0])
        .execute(&mut holder)
        .await
        .expect("hold the profile");
    let mut victim = connect_as(&t, &a_name).await;
    operation(&mut victim, Some(op)).await;
    let pid = pid_of(&mut victim).await;
    let (o, u) = (b.orders[0], b.users[0]);
    let task = tokio::spawn(async move { try_rollback(&mut victim, o, u, "killed").await });
    wait_for_lock_wait(&t, pid).await;
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&t.pool).await.expect("kill");
    assert!(killed);
    assert!(task.await.expect("task").is_err(), "the killed call answers nothing");
    run(&mut holder, "ROLLBACK").await;
    b.assert_rolled_back(&t, &[]).await;
    assert_eq!(log_of(&t, id).await, ["requested", "approved"], "not used");

    operation(&mut a, Some(op)).await;
    ok(&rollback(&mut a, b.orders[0], b.users[0], "killed").await);
    ok(&rollback(&mut a, b.orders[1], b.users[1], "killed").await);
    refused(&rollback(&mut a, b.orders[0], b.users[0], "killed").await, "already_rolled_back");
    b.assert_rolled_back(&t, &[0, 1]).await;
    assert_eq!(log_of(&t, id).await, ["requested", "approved", "used"]);
    assert_eq!(count(&t, "SELECT count(*) FROM unapproved_rollbacks").await, 0);
    let _ = holder.close().await;
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}

#[tokio::test]
async fn at_level_3_a_group_needs_its_whole_approval_and_rotating_operations_stay_within_the_budget() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "single_limit": 2})).await;
    let b = book(&t, 3).await;
    let user = account(&t.pool, "1000").await;
    let tx = Uuid::new_v4();
    let group = [executed(&t.pool, user, "10", Some(tx)).await, executed(&t.pool, user, "10", Some(tx)).await];
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "aadv_b", "incident_operator").await;
    let _level3 = open_incident(&t, Level::Critical).await;

    // A group approval for half the group does not cover the group.
    let op = Uuid::new_v4();
    let shown = refunded_of(&t, &group[..1]).await;
    let id = request_id(&request_orders(&mut a, "group", op, (&group[..1], &[user]), "half", shown, 3).await);
    ok(&decide(&mut bb, id, true, "ok").await);
    operation(&mut a, Some(op)).await;
    refused(&group_rollback(&mut a, group[0], user, "half").await, "approval_required");
    let v = sqlx::query_scalar::<_, Value>("SELECT rollback_with_postcheck($1, $2, 'half', '{}'::jsonb, true)")
        .bind(group[0])
        .bind(user)
        .fetch_one(&mut a)
        .await
        .expect("rollback_with_postcheck");
    refused(&v["rollback"], "approval_required");
    assert_eq!(money_of(&t.pool, user).await, (dec("999.5556"), dec("0.44")), "the group untouched");

    // A "batch" sent as singles under a new operation each (or none) is a series of single
    // rollbacks: allowed at Level 3, and capped by the login's budget of operations.
    for (i, op) in [Some(Uuid::new_v4()), None, Some(Uuid::new_v4())].into_iter().enumerate() {
        operation(&mut a, op).await;
        let v = rollback(&mut a, b.orders[i], b.users[i], "rotating").await;
        if i < 2 {
            ok(&v);
        } else {
            refused(&v, "approval_required");
        }
    }
    b.assert_rolled_back(&t, &[0, 1]).await;
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}

#[tokio::test]
async fn the_drill_exemption_cannot_be_given_to_a_real_account() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 2).await;
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    // The operator makes a drill account with a real account's id: refused, nothing marked.
    for deposit in ["0", "5"] {
        let v: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT create_drill_account($1, {deposit})")))
            .bind(b.users[0])
            .fetch_one(&mut a)
            .await
            .expect("create_drill_account");
        refused(&v, "account_exists");
    }
    let e = sqlx::query("UPDATE profiles SET is_drill = true WHERE id = $1")
        .bind(b.users[0])
        .execute(&mut a)
        .await
        .expect_err("no privilege");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    assert_eq!(count(&t, "SELECT count(*) FROM profiles WHERE is_drill").await, 0);
    ok(&rollback(&mut a, b.orders[0], b.users[0], "budget").await);
    refused(&rollback(&mut a, b.orders[1], b.users[1], "budget").await, "approval_required");

    // A drill account's own orders are practice: not charged, whatever the budget says.
    let drill = Uuid::new_v4();
    let v: Value = sqlx::query_scalar("SELECT create_drill_account($1, 1000)")
        .bind(drill)
        .fetch_one(&mut a)
        .await
        .expect("create_drill_account");
    ok(&v);
    let practice = [executed(&t.pool, drill, "10", None).await, executed(&t.pool, drill, "10", None).await];
    for o in practice {
        ok(&rollback(&mut a, o, drill, "practice").await);
    }
    assert_eq!(money_of(&t.pool, drill).await, (dec("1000"), dec("0")));
    let charged: i64 = count(&t, "SELECT coalesce(sum(orders), 0)::bigint FROM unapproved_rollbacks").await;
    assert_eq!(charged, 1, "only the real account's order");
    b.assert_rolled_back(&t, &[0]).await;
    cleanup(&t, vec![(a_name, a)]).await;
}

/// Characters a terminal acts on, or that hide or reorder text.
const BAD: [char; 6] = ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}', '\u{200b}', '\u{0}'];

fn clean(what: &str, text: &str) {
    for bad in BAD {
        assert!(!text.contains(bad), "{what}: {bad:?} kept in {text:?}");
    }
}

#[tokio::test]
async fn text_a_terminal_acts_on_is_stored_printable() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 2).await;
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "aadv_b", "incident_operator").await;
    run(&mut a, "SET incident.operator = E'eve\\x1b[2J\\u202e'").await;
    let reason = "dup\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}\u{200b} burst";
    let preview = json!({ "\u{1b}[2Jkey": ["a\u{9b}b", { "n": "\u{202e}x" }], "total": "11.11" });
    let op = Uuid::new_v4();
    let shown = refunded_of(&t, &b.orders).await;
    let v: Value = sqlx::query_scalar("SELECT request_approval('batch', $1, $2, $3, NULL, $4, $5, 2, 'INC-1', $6)")
        .bind(op)
        .bind(&b.orders[..])
        .bind(&b.users[..])
        .bind(reason)
        .bind(shown)
        .bind(&preview)
        .fetch_one(&mut a)
        .await
        .expect("request");
    let id = request_id(&v);
    // An incident id with an escape in it is refused.
    let v: Value =
        sqlx::query_scalar("SELECT request_approval('batch', $1, $2, $3, NULL, 'x', $4, 2, E'INC-1\\x1b[2J', NULL)")
            .bind(Uuid::new_v4())
            .bind(&b.orders[..])
            .bind(&b.users[..])
            .bind(shown)
            .fetch_one(&mut a)
            .await
            .expect("request");
    refused(&v, "invalid_argument");
    ok(&decide(&mut bb, id, true, "ok\u{1b}[31m\u{202e}").await);

    let stored: (String, String, String, String) = sqlx::query_as(
        "SELECT reason, preview::text, requested_by, decision_reason FROM approval_requests WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&t.pool)
    .await
    .expect("request row");
    let preview_back: Value = serde_json::from_str(&stored.1).expect("json");
    clean("reason", &stored.0);
    clean("preview", &format!("{preview_back:?}"));
    clean("requested_by", &stored.2);
    clean("decision_reason", &stored.3);
    assert!(stored.0.contains("pwned") && stored.0.ends_with(" burst"), "still readable: {}", stored.0);
    let logged: Vec<(Option<String>, String, String)> =
        sqlx::query_as("SELECT reason, detail::text, operator FROM approval_log WHERE request_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&t.pool)
            .await
            .expect("log");
    for (r, detail, operator) in &logged {
        clean("log reason", r.as_deref().unwrap_or(""));
        clean("log detail", &format!("{:?}", serde_json::from_str::<Value>(detail).expect("json")));
        clean("log operator", operator);
    }

    // The rollback's reason is compared as stored: the same text, escapes and all, matches.
    operation(&mut a, Some(op)).await;
    ok(&rollback(&mut a, b.orders[0], b.users[0], reason).await);
    let on_order: String = sqlx::query_scalar("SELECT rolled_back_reason FROM orders WHERE id = $1")
        .bind(b.orders[0])
        .fetch_one(&t.pool)
        .await
        .expect("order");
    clean("rolled_back_reason", &on_order);
    // A refusal's text names nothing a terminal acts on either.
    let v = rollback(&mut a, b.orders[1], b.users[1], "another\u{1b}[2J reason").await;
    refused(&v, "approval_required");
    clean("refusal", &v.to_string());
    b.assert_rolled_back(&t, &[0]).await;
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}

#[tokio::test]
async fn closing_the_breaker_while_another_session_opens_it_still_needs_the_approval() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true})).await;
    let _level3 = open_incident(&t, Level::Critical).await;
    let (o_name, mut opener) = login(&t, "aadv_o", "incident_operator").await;
    let (a_name, a) = login(&t, "aadv_a", "incident_operator").await;
    assert!(!breaker_open(&t).await);

    // The opening is in flight (not committed) when the close reads the breaker.
    run(&mut opener, "BEGIN").await;
    open_breaker(&mut opener).await;
    let mut closer = a;
    let pid = pid_of(&mut closer).await;
    let task = tokio::spawn(async move {
        let v = close_breaker(&mut closer, "nothing to see").await;
        (v, closer)
    });
    wait_for_lock_wait(&t, pid).await;
    run(&mut opener, "COMMIT").await;
    let (v, closer) = task.await.expect("task");
    assert!(breaker_open(&t).await, "closed at Level 3 without an approval: {v}");
    refused(&v, "approval_required");
    assert_eq!(count(&t, "SELECT count(*) FROM breaker_log WHERE NOT open").await, 0);
    cleanup(&t, vec![(o_name, opener), (a_name, closer)]).await;
}

#[tokio::test]
async fn an_approval_to_close_the_breaker_is_used_once_even_by_two_sessions_at_once() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true})).await;
    let _level3 = open_incident(&t, Level::Critical).await;
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "aadv_b", "incident_operator").await;
    let (o_name, opener) = login(&t, "aadv_o", "incident_operator").await;
    open_breaker(&mut a).await;
    let op = Uuid::new_v4();
    let id = request_id(&request_other(&mut a, "breaker_close", op, None, "fixed").await);
    ok(&decide(&mut bb, id, true, "ok").await);

    // First session: closes under the approval, not committed yet.
    operation(&mut a, Some(op)).await;
    run(&mut a, "BEGIN").await;
    ok(&close_breaker(&mut a, "fixed").await);
    // Someone opens it again (waits for the first session's lock).
    let mut opener = opener;
    let opener_pid = pid_of(&mut opener).await;
    let opening = tokio::spawn(async move {
        open_breaker(&mut opener).await;
        opener
    });
    wait_for_lock_wait(&t, opener_pid).await;
    // Second session of the same login, same approval, at the same time.
    let mut second = connect_as(&t, &a_name).await;
    operation(&mut second, Some(op)).await;
    let second_pid = pid_of(&mut second).await;
    let closing = tokio::spawn(async move {
        let v = close_breaker(&mut second, "fixed").await;
        (v, second)
    });
    wait_for_lock_wait(&t, second_pid).await;
    run(&mut a, "COMMIT").await;
    let opener = opening.await.expect("opening");
    let (v, second) = closing.await.expect("closing");
    assert!(breaker_open(&t).await, "the approval closed the breaker twice: {v}");
    refused(&v, "approval_required");
    assert_eq!(log_of(&t, id).await, ["requested", "approved", "used"]);
    let _ = second.close().await;
    cleanup(&t, vec![(a_name, a), (b_name, bb), (o_name, opener)]).await;
}

#[tokio::test]
async fn a_level_no_rollback_can_read_in_a_journal_copy_stops_no_rollback() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true})).await;
    let b = book(&t, 1).await;
    let (m_name, mut m) = login(&t, "aadv_m", "incident_operator").await;
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    let at = Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    for (n, level) in [json!("high"), json!(3.5), json!(99_999_999_999_i64), json!([3])].into_iter().enumerate() {
        let incident = format!("INC-evil-{n}");
        let line = format!(
            "{{\"seq\":1,\"at\":\"{at}\",\"operator\":\"m\",\"kind\":\"incident_opened\",\"data\":{},\"prev\":\"{}\"}}",
            json!({ "id": incident, "title": "t", "level": level, "reason": "r" }),
            "0".repeat(64)
        );
        let hash: String = sqlx::query_scalar("SELECT encode(sha256(convert_to($1, 'UTF8')), 'hex')")
            .bind(&line)
            .fetch_one(&t.pool)
            .await
            .expect("hash");
        let v: Value = sqlx::query_scalar("SELECT record_incident_events($1, $2)")
            .bind(&incident)
            .bind(json!([{ "seq": 1, "line": line, "hash": hash }]))
            .fetch_one(&mut m)
            .await
            .expect("record_incident_events");
        ok(&v);
    }
    assert_eq!(count(&t, "SELECT count(*) FROM incident_events").await, 4);
    let answer = try_rollback(&mut a, b.orders[0], b.users[0], "unrelated").await;
    let answer = answer.unwrap_or_else(|e| panic!("another login's journal copy broke this rollback: {e}"));
    ok(&answer);
    let shown: Value =
        sqlx::query_scalar("SELECT approval_policy_show()").fetch_one(&mut a).await.expect("approval_policy_show");
    assert_eq!(shown["open_level"], 0, "{shown}");
    b.assert_rolled_back(&t, &[0]).await;
    cleanup(&t, vec![(m_name, m), (a_name, a)]).await;
}

#[tokio::test]
async fn an_approval_covers_the_releases_and_the_breaker_opening_it_was_asked_for() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true})).await;
    two_releases(&t).await;
    let _level3 = open_incident(&t, Level::Critical).await;
    let (a_name, mut a) = login(&t, "aadv_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "aadv_b", "incident_operator").await;

    // Approved: roll back to base, which reverts notes. Then notes2 is deployed: the same
    // rollback would now revert a release the approver never saw.
    let op = Uuid::new_v4();
    let id = request_id(&request_other(&mut a, "release_rollback", op, Some("base"), "notes broke it").await);
    ok(&decide(&mut bb, id, true, "notes broke it, yes").await);
    let v: Value = sqlx::query_scalar(
        "SELECT release_deploy('notes2', 'approvals', NULL, 'ALTER TABLE appr_t ADD COLUMN note2 text;', \
         'ALTER TABLE appr_t DROP COLUMN note2;', 'SELECT note2 FROM appr_t WHERE false;', NULL)",
    )
    .fetch_one(&t.pool)
    .await
    .expect("deploy");
    ok(&v);
    let v = release_rollback(&mut a, "base", "notes broke it", false, Some(op)).await;
    refused(&v, "approval_required");
    assert_eq!(count(&t, "SELECT count(*) FROM release_reverts").await, 0, "nothing reverted: {v}");
    assert_eq!(count(&t, "SELECT count(*) FROM active_releases").await, 3);
    assert_eq!(log_of(&t, id).await, ["requested", "approved"]);

    // Approved: roll back to notes, which reverts notes2, with no hand-made change in sight.
    // Then someone changes notes2's column by hand: a rollback accepting drift would
    // discard a change the approver never saw.
    let op = Uuid::new_v4();
    let id = request_id(&request_other(&mut a, "release_rollback", op, Some("notes"), "notes2 broke it").await);
    ok(&decide(&mut bb, id, true, "notes2 broke it, yes").await);
    sqlx::raw_sql("ALTER TABLE appr_t ALTER COLUMN note2 TYPE varchar(10)").execute(&t.pool).await.expect("hand edit");
    let v: Value = sqlx::query_scalar("SELECT release_rollback('notes', 'notes2 broke it', true, false, $1)")
        .bind(op)
        .fetch_one(&mut a)
        .await
        .expect("release_rollback");
    refused(&v, "approval_required");
    assert_eq!(count(&t, "SELECT count(*) FROM release_reverts").await, 0, "nothing reverted: {v}");
    assert_eq!(log_of(&t, id).await, ["requested", "approved"]);

    // Approved: close the breaker as it was opened. It is closed (here by the owner) and
    // opened again for something else: the approval does not close the new opening.
    let mut c = connect_as(&t, &a_name).await;
    open_breaker(&mut c).await;
    let op = Uuid::new_v4();
    let id = request_id(&request_other(&mut a, "breaker_close", op, None, "the first alarm was false").await);
    ok(&decide(&mut bb, id, true, "agreed").await);
    let v: Value = sqlx::query_scalar("SELECT _switch_breaker(false, 'the owner closes it', 'person')")
        .fetch_one(&t.pool)
        .await
        .expect("owner closes");
    ok(&v);
    let v: Value = sqlx::query_scalar("SELECT open_breaker('a real ledger violation this time', 'ledger_audit')")
        .fetch_one(&mut c)
        .await
        .expect("open again");
    ok(&v);
    operation(&mut a, Some(op)).await;
    let v = close_breaker(&mut a, "the first alarm was false").await;
    refused(&v, "approval_required");
    assert!(breaker_open(&t).await, "{v}");
    assert_eq!(log_of(&t, id).await, ["requested", "approved"]);
    let _ = c.close().await;
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}
