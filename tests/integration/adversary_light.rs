//! The adversarial pass on migration 21 (the lighter rollback: the ledger's foreign keys
//! dropped, the step and its money statement one function again, `_operator()` in PL/pgSQL,
//! the breaker opened by a row trigger, `_approval_reasons_at`), with logins of their own:
//! internal functions called directly, temporary tables and a planted search path, two
//! rollbacks of one order (a chunk and a single call) under every isolation level, a chunk
//! and a single call of one user's orders crossing, a connection killed mid-rollback, a
//! wrong or missing user, every way a failed post-check opens the breaker, and the ledger
//! rows the dropped foreign keys used to refuse. Each test asserts the refusal and that the
//! money is as it must be, so it stays a regression test.
//!
//! Hole found and fixed in migration 23:
//! - `an_order_whose_transfers_name_no_order_is_flagged_and_its_rollback_moves_nothing`:
//!   without the foreign key an order's transfers could name an order that does not exist
//!   (the owner's hand, a seeding bug) with every audit silent; the rollback of that order
//!   then marked it rolled back, closed its position and answered success with 0.00
//!   refunded. A deposit filed under an order was taken back by the order's rollback.

use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::adversary_approval::{attempt, pid_of, wait_for_lock_wait};
use crate::approvals::{
    Book, book, breaker_open, cleanup, decide, group_rollback, login, ok, open_breaker, operation, refunded_of,
    refused, request_id, request_orders, rollback, run, set_policy, try_rollback,
};
use crate::security::{connect_as, drop_role, login_role, sqlstate};
use crate::support::db::*;
use incident_console::store::db;

/// One jsonb a statement answers.
async fn json(c: &mut PgConnection, sql: &str) -> Result<Value, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&mut *c).await
}

/// `rollback_orders` as psql would call it: the call's answer.
async fn chunk(c: &mut PgConnection, orders: &[Uuid], users: &[Uuid], reason: &str) -> Result<Value, sqlx::Error> {
    sqlx::query_scalar("SELECT rollback_orders($1, $2, $3)")
        .bind(orders.to_vec())
        .bind(users.to_vec())
        .bind(reason)
        .fetch_one(&mut *c)
        .await
}

/// The check names of a whole-book audit, full or incremental.
async fn checks(c: &mut PgConnection, full: bool) -> Vec<String> {
    let sql = if full {
        "SELECT check_name FROM ledger_audit_full() ORDER BY 1"
    } else {
        "SELECT check_name FROM ledger_audit() ORDER BY 1"
    };
    sqlx::query_scalar(sql).fetch_all(&mut *c).await.expect("audit")
}

/// The owner closes the breaker (the test's superuser login), so the next case starts closed.
async fn close(t: &TestDb) {
    let v: Value =
        sqlx::query_scalar("SELECT close_breaker('next case')").fetch_one(&t.pool).await.expect("close_breaker");
    ok(&v);
}

#[tokio::test]
async fn no_login_reaches_the_merged_step_or_its_helpers() {
    let t = test_db().await;
    let b = book(&t, 1).await;
    let (o, u) = (b.orders[0], b.users[0]);
    let print = fingerprint(&t.pool).await;
    let internal = [
        format!("SELECT _rollback_locked_orders('{u}', ARRAY['{o}']::uuid[], 'x', 'single', NULL, now())"),
        "SELECT _approval_reasons_at(p, 0, 'single', 1, 1, NULL) FROM approval_policy p".into(),
        "SELECT _approval_reasons_at(NULL::approval_policy, 0, 'single', 1, 1, NULL)".into(),
        "SELECT _approval_reasons('single', 1, 1, 1, NULL)".into(),
        "SELECT _operator()".into(),
        "SELECT _breaker_on_failed_postcheck()".into(),
        "SELECT _switch_breaker(true, 'x', 'postcheck_failed')".into(),
        "SELECT * FROM _bad_reversals(NULL, NULL, NULL)".into(),
    ];
    let contract = [
        format!("SELECT rollback_execute_order_atomic('{o}', '{u}', 'x')"),
        format!("SELECT rollback_orders(ARRAY['{o}']::uuid[], ARRAY['{u}']::uuid[], 'x')"),
        format!("SELECT rollback_with_postcheck('{o}', '{u}', 'x', '{{}}'::jsonb, false)"),
        format!("SELECT record_rollback_failure('{o}', '{u}', 'rollback_failed', '{{}}'::jsonb)"),
    ];
    let mut logins = Vec::new();
    for group in ["incident_operator", "incident_viewer", "incident_engine"] {
        let (name, mut c) = login(&t, "ladv", group).await;
        for sql in &internal {
            assert_eq!(attempt(&mut c, sql).await.as_deref(), Some("42501"), "{group}: {sql}");
        }
        if group != "incident_operator" {
            for sql in &contract {
                assert_eq!(attempt(&mut c, sql).await.as_deref(), Some("42501"), "{group}: {sql}");
            }
        }
        logins.push((name, c));
    }
    assert_eq!(fingerprint(&t.pool).await, print);
    assert!(!breaker_open(&t).await);
    b.assert_rolled_back(&t, &[]).await;
    cleanup(&t, logins).await;
}

#[tokio::test]
async fn temporary_tables_and_a_planted_search_path_change_nothing_in_the_merged_step() {
    let t = test_db().await;
    let b = book(&t, 3).await;
    let (a_name, mut a) = login(&t, "ladv_a", "incident_operator").await;
    open_breaker(&mut a).await;
    run(
        &mut a,
        &format!(
            "CREATE TEMP TABLE circuit_breaker AS SELECT * FROM public.circuit_breaker;
             UPDATE pg_temp.circuit_breaker SET open = false, since = NULL, reason = NULL;
             CREATE TEMP TABLE approval_policy AS SELECT * FROM public.approval_policy;
             CREATE TEMP TABLE operator_names (login text, operator text);
             INSERT INTO pg_temp.operator_names VALUES (session_user, 'The CEO');
             CREATE TEMP TABLE profiles (id uuid, is_drill boolean, balance numeric, margin_used numeric);
             INSERT INTO pg_temp.profiles VALUES ('{}', true, 0, 0);
             CREATE TEMP TABLE ledger_transfers AS SELECT * FROM public.ledger_transfers WITH NO DATA;
             GRANT ALL ON pg_temp.circuit_breaker, pg_temp.approval_policy, pg_temp.operator_names,
                 pg_temp.profiles, pg_temp.ledger_transfers TO PUBLIC;
             SET search_path = pg_temp, public;
             SET incident.operator = 'The CEO';",
            b.users[0]
        ),
    )
    .await;
    let seen: bool = sqlx::query_scalar("SELECT open FROM circuit_breaker").fetch_one(&mut a).await.expect("temp");
    assert!(!seen, "the session sees its own breaker closed");

    // The real breaker is open: every path refuses, whatever the session sees.
    refused(&rollback(&mut a, b.orders[0], b.users[0], "planted").await, "breaker_open");
    let v = chunk(&mut a, &b.orders[..2], &b.users[..2], "planted").await.expect("chunk");
    assert_eq!(v["breaker_open"], true, "{v}");
    assert_eq!(v["results"][0]["error_code"], "breaker_open", "{v}");
    assert_eq!(v["results"][1]["attempted"], false, "{v}");
    let v = json(
        &mut a,
        &format!(
            "SELECT rollback_with_postcheck('{}', '{}', 'planted', '{{}}'::jsonb, false)",
            b.orders[2], b.users[2]
        ),
    )
    .await
    .expect("rollback_with_postcheck");
    refused(&v["rollback"], "breaker_open");
    b.assert_rolled_back(&t, &[]).await;

    // Closed for real: the rollback goes through once, under the login, not the planted name.
    close(&t).await;
    ok(&rollback(&mut a, b.orders[0], b.users[0], "planted").await);
    refused(&rollback(&mut a, b.orders[0], b.users[0], "planted").await, "already_rolled_back");
    let (operator, login_name): (String, String) =
        sqlx::query_as("SELECT operator::text, db_user FROM public.order_audit_log WHERE order_id = $1")
            .bind(b.orders[0])
            .fetch_one(&t.pool)
            .await
            .expect("audit row");
    assert_eq!(operator, format!("The CEO (via {a_name})"));
    assert_eq!(login_name, a_name);
    b.assert_rolled_back(&t, &[0]).await;
    cleanup(&t, vec![(a_name, a)]).await;
}

#[tokio::test]
async fn one_order_rolled_back_by_a_chunk_and_a_single_call_at_once_is_refunded_once() {
    let t = test_db().await;
    let role = login_role(&t, "ladv_race", Some("incident_operator")).await;
    for isolation in ["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"] {
        let b = book(&t, 2).await;
        let mut first = connect_as(&t, &role).await;
        let mut second = connect_as(&t, &role).await;
        for c in [&mut first, &mut second] {
            run(c, &format!("BEGIN ISOLATION LEVEL {isolation}")).await;
            run(c, "SELECT 1").await;
        }
        let v = chunk(&mut first, &b.orders, &b.users, "race").await.expect("chunk");
        assert_eq!(v["rolled_back"], 2, "{isolation}: {v}");
        let pid = pid_of(&mut second).await;
        let (o, u) = (b.orders[0], b.users[0]);
        let task = tokio::spawn(async move {
            let r = try_rollback(&mut second, o, u, "race").await;
            (r, second)
        });
        wait_for_lock_wait(&t, pid).await;
        run(&mut first, "COMMIT").await;
        let (r, mut second) = task.await.expect("task");
        match r {
            Ok(v) => {
                assert_eq!(isolation, "READ COMMITTED", "{v}");
                refused(&v, "already_rolled_back");
            }
            Err(e) => assert_eq!(sqlstate(&e).as_deref(), Some("40001"), "{isolation}: {e}"),
        }
        let _ = attempt(&mut second, "ROLLBACK").await;
        // The client's retry, in a new transaction, is told the truth.
        refused(&rollback(&mut second, o, u, "race").await, "already_rolled_back");
        b.assert_rolled_back(&t, &[0, 1]).await;
        let _ = first.close().await;
        let _ = second.close().await;
    }
    drop_role(&t, &role).await;
}

#[tokio::test]
async fn a_chunk_and_a_single_call_crossing_on_one_users_orders_each_refund_once() {
    let t = test_db().await;
    let user = account(&t.pool, "1000").await;
    let (o1, o2) = (executed(&t.pool, user, "100", None).await, executed(&t.pool, user, "100", None).await);
    let role = login_role(&t, "ladv_cross", Some("incident_operator")).await;
    let mut batch = connect_as(&t, &role).await;
    let mut single = connect_as(&t, &role).await;

    // The chunk's first call holds o2 and the profile; the single call takes o1 and waits for
    // the profile; the chunk's next call wants o1: a deadlock, which one of them loses.
    run(&mut batch, "BEGIN").await;
    let v = chunk(&mut batch, &[o2], &[user], "cross").await.expect("first chunk");
    assert_eq!(v["rolled_back"], 1, "{v}");
    let pid = pid_of(&mut single).await;
    let task = tokio::spawn(async move {
        let r = try_rollback(&mut single, o1, user, "cross").await;
        (r, single)
    });
    wait_for_lock_wait(&t, pid).await;
    let v = chunk(&mut batch, &[o1], &[user], "cross").await;
    let batch_done = match &v {
        Ok(v) => v["rolled_back"] == 1,
        Err(e) => panic!("the chunk answers per order: {e}"),
    };
    if !batch_done {
        let r = v.as_ref().map(|v| v["results"][0].clone()).unwrap_or_default();
        assert_eq!(r["retry"], true, "a deadlock undoes only the order: {r}");
    }
    run(&mut batch, "COMMIT").await;
    let (r, mut single) = task.await.expect("task");
    match r {
        Ok(v) if batch_done => refused(&v, "already_rolled_back"),
        Ok(v) => ok(&v),
        Err(e) => {
            assert!(batch_done, "the single call lost only if the chunk won: {e}");
            assert_eq!(sqlstate(&e).as_deref(), Some("40P01"), "{e}");
            refused(&rollback(&mut single, o1, user, "cross").await, "already_rolled_back");
        }
    }
    for o in [o1, o2] {
        assert_eq!(db::rollback_audit_rows(&t.pool, o).await.expect("rows"), 1, "{o}");
    }
    assert_eq!(money_of(&t.pool, user).await, (dec("1000"), dec("0")));
    assert_consistent(&t.pool).await;
    let _ = batch.close().await;
    let _ = single.close().await;
    drop_role(&t, &role).await;
}

#[tokio::test]
async fn a_connection_killed_mid_rollback_moves_no_money_and_the_retry_refunds_once() {
    let t = test_db().await;
    let b = book(&t, 2).await;
    let user = b.users[0];
    let mine = [b.orders[0], executed(&t.pool, user, "100", None).await];
    let (a_name, mut a) = login(&t, "ladv_kill", "incident_operator").await;
    let print = fingerprint(&t.pool).await;

    for as_chunk in [true, false] {
        // The profile is held, so each call stops after its reversals were written, at the
        // balance's update; then its backend is terminated.
        let mut holder = t.conn().await;
        run(&mut holder, "BEGIN").await;
        sqlx::query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE")
            .bind(user)
            .execute(&mut holder)
            .await
            .expect("hold the profile");
        let mut victim = connect_as(&t, &a_name).await;
        let pid = pid_of(&mut victim).await;
        let task = tokio::spawn(async move {
            if as_chunk {
                chunk(&mut victim, &mine, &[user, user], "killed").await
            } else {
                try_rollback(&mut victim, mine[0], user, "killed").await
            }
        });
        wait_for_lock_wait(&t, pid).await;
        let killed: bool =
            sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&t.pool).await.expect("kill");
        assert!(killed);
        assert!(task.await.expect("task").is_err(), "the killed call answers nothing");
        run(&mut holder, "ROLLBACK").await;
        let _ = holder.close().await;
        assert_eq!(fingerprint(&t.pool).await, print, "nothing of the killed call stays");
    }

    let v = chunk(&mut a, &mine, &[user, user], "killed").await.expect("retry");
    assert_eq!(v["rolled_back"], 2, "{v}");
    refused(&rollback(&mut a, mine[0], user, "killed").await, "already_rolled_back");
    assert_eq!(money_of(&t.pool, user).await, (dec("1000"), dec("0")));
    b.assert_order(&t, 1, false).await;
    assert_consistent(&t.pool).await;
    cleanup(&t, vec![(a_name, a)]).await;
}

#[tokio::test]
async fn a_wrong_or_missing_user_is_refused_by_every_rollback_path() {
    let t = test_db().await;
    let Book { users, orders } = book(&t, 2).await;
    let (o, u, other) = (orders[0], users[0], users[1]);
    let group = Uuid::new_v4();
    let grouped = executed(&t.pool, u, "100", Some(group)).await;
    let (a_name, mut a) = login(&t, "ladv_user", "incident_operator").await;
    let print = fingerprint(&t.pool).await;
    let nobody = Uuid::new_v4();

    for wrong in [other, nobody] {
        refused(&rollback(&mut a, o, wrong, "wrong user").await, "order_not_found");
        refused(&group_rollback(&mut a, grouped, wrong, "wrong user").await, "order_not_found");
        let v = chunk(&mut a, &[o, grouped], &[wrong, wrong], "wrong user").await.expect("chunk");
        assert_eq!(v["rolled_back"], 0, "{v}");
        for r in v["results"].as_array().expect("results") {
            refused(r, "order_not_found");
        }
        for transaction in [false, true] {
            let v = json(
                &mut a,
                &format!(
                    "SELECT rollback_with_postcheck('{}', '{wrong}', 'wrong user', '{{}}'::jsonb, {transaction})",
                    if transaction { grouped } else { o }
                ),
            )
            .await
            .expect("rollback_with_postcheck");
            refused(&v["rollback"], "order_not_found");
            assert_eq!(v["postcheck"], Value::Null, "{v}");
        }
        let v = json(
            &mut a,
            &format!("SELECT record_rollback_failure('{o}', '{wrong}', 'postcheck_failed', '{{}}'::jsonb)"),
        )
        .await
        .expect("record_rollback_failure");
        refused(&v, "order_not_found");
    }
    for sql in [
        format!("SELECT rollback_execute_order_atomic('{o}', NULL, 'null user')"),
        format!("SELECT rollback_order_execution('{grouped}', NULL, 'null user')"),
        format!("SELECT rollback_with_postcheck('{o}', NULL, 'null user', '{{}}'::jsonb, false) -> 'rollback'"),
        format!("SELECT record_rollback_failure('{o}', NULL, 'postcheck_failed', '{{}}'::jsonb)"),
    ] {
        refused(&json(&mut a, &sql).await.expect("call"), "invalid_argument");
    }
    let v = json(
        &mut a,
        &format!("SELECT rollback_orders(ARRAY['{o}', '{grouped}']::uuid[], ARRAY[NULL, '{u}']::uuid[], 'null user')"),
    )
    .await
    .expect("chunk");
    refused(&v["results"][0], "invalid_argument");
    ok(&v["results"][1]);
    // Only the grouped order, of its own user, went.
    assert_eq!(db::rollback_audit_rows(&t.pool, grouped).await.expect("rows"), 1);
    assert_eq!(db::rollback_audit_rows(&t.pool, o).await.expect("rows"), 0);
    assert_ne!(fingerprint(&t.pool).await, print);
    assert!(!breaker_open(&t).await, "no post-check failed");
    assert_eq!(money_of(&t.pool, other).await, (dec("997.778"), dec("2.2")));
    assert_eq!(money_of(&t.pool, u).await, (dec("997.778"), dec("2.2")));
    assert_consistent(&t.pool).await;
    cleanup(&t, vec![(a_name, a)]).await;
}

#[tokio::test]
async fn every_failed_postcheck_opens_the_breaker_through_the_row_trigger() {
    let t = test_db().await;
    let b = book(&t, 4).await;
    let group = Uuid::new_v4();
    let grouped = [
        executed(&t.pool, b.users[1], "10", Some(group)).await,
        executed(&t.pool, b.users[1], "10", Some(group)).await,
    ];
    let (a_name, mut a) = login(&t, "ladv_breaker", "incident_operator").await;

    // A single and a group rollback whose post-check fails, under REPEATABLE READ and
    // SERIALIZABLE: the rollback stands and the breaker opens in its transaction.
    for (isolation, order, user, transaction) in
        [("REPEATABLE READ", b.orders[0], b.users[0], false), ("SERIALIZABLE", grouped[0], b.users[1], true)]
    {
        run(&mut a, &format!("BEGIN ISOLATION LEVEL {isolation}")).await;
        let v = json(
            &mut a,
            &format!(
                "SELECT rollback_with_postcheck('{order}', '{user}', 'bad baseline', '{{}}'::jsonb, {transaction})"
            ),
        )
        .await
        .expect("rollback_with_postcheck");
        ok(&v["rollback"]);
        assert_eq!(v["postcheck"]["successful"], false, "{v}");
        run(&mut a, "COMMIT").await;
        let (open, source, reason): (bool, Option<String>, Option<String>) =
            sqlx::query_as("SELECT open, source, reason FROM circuit_breaker")
                .fetch_one(&t.pool)
                .await
                .expect("breaker");
        assert!(open, "{isolation}");
        assert_eq!(source.as_deref(), Some("postcheck_failed"));
        assert!(reason.unwrap_or_default().contains(&order.to_string()));
        close(&t).await;
    }

    // Recorded by the client after its own post-check failed; a failed rollback does not open it.
    let v = json(
        &mut a,
        &format!(
            "SELECT record_rollback_failure('{}', '{}', 'rollback_failed', '{{}}'::jsonb)",
            b.orders[2], b.users[2]
        ),
    )
    .await
    .expect("record");
    ok(&v);
    assert!(!breaker_open(&t).await);
    let v = json(
        &mut a,
        &format!(
            "SELECT record_rollback_failure('{}', '{}', 'postcheck_failed', '{{}}'::jsonb)",
            b.orders[0], b.users[0]
        ),
    )
    .await
    .expect("record");
    ok(&v);
    assert!(breaker_open(&t).await);
    close(&t).await;

    // The sandbox's practice order first in a chunk: it is rolled back, its post-check fails,
    // the breaker opens inside the chunk and the rest is refused or not tried.
    let pool = db::Db::sessions(t.pool.clone());
    let (drill_order, drill_user) =
        incident_console::ops::drill::breaker_drill_order(&pool).await.expect("drill order");
    let v = chunk(&mut a, &[drill_order, b.orders[2], b.orders[3]], &[drill_user, b.users[2], b.users[3]], "drill")
        .await
        .expect("chunk");
    assert_eq!(v["rolled_back"], 1, "{v}");
    assert_eq!(v["results"][0]["postcheck_failed"], true, "{v}");
    assert_eq!(v["results"][1]["error_code"], "breaker_open", "{v}");
    assert_eq!(v["results"][2]["attempted"], false, "{v}");
    assert!(breaker_open(&t).await);
    let log: Vec<(bool, String)> =
        sqlx::query_as("SELECT open, source FROM breaker_log ORDER BY id").fetch_all(&t.pool).await.expect("log");
    let openings = log.iter().filter(|(open, source)| *open && source == "postcheck_failed").count();
    assert_eq!(openings, 4, "{log:?}");
    b.assert_order(&t, 2, false).await;
    b.assert_order(&t, 3, false).await;
    // The post-checks failed on a bad baseline, not on the money: every order went back once.
    b.assert_order(&t, 0, true).await;
    assert_eq!(money_of(&t.pool, b.users[1]).await, (dec("997.778"), dec("2.2")), "its group went back whole");
    for o in grouped {
        assert_eq!(db::rollback_audit_rows(&t.pool, o).await.expect("rows"), 1);
    }
    assert_consistent(&t.pool).await;
    cleanup(&t, vec![(a_name, a)]).await;
}

/// Plants an executed order of `user` (100 EURUSD at 1.1: 2.2 margin, 0.022 commission)
/// whose two transfers name an order id that does not exist, with balance and margin to
/// match, as the owner could (the superuser stands in for it). Returns the order.
async fn plant_order_with_stray_transfers(t: &TestDb, user: Uuid) -> Uuid {
    sqlx::query_scalar(
        "WITH o AS ( \
             INSERT INTO orders (user_id, symbol, order_type, side, quantity, price, status, idempotency_key, \
                                 commission, execution_price, total_cost, executed_at, position_id, updated_at) \
             VALUES ($1, 'EURUSD', 'market', 'buy', 100, 1.1, 'executed', 'planted-' || gen_random_uuid(), \
                     0.022, 1.1, 2.222, now(), gen_random_uuid(), now()) \
             RETURNING id, position_id \
         ), p AS ( \
             INSERT INTO positions (id, user_id, order_id, symbol, side, quantity, entry_price, margin_used, \
                                    commission_paid) \
             SELECT position_id, $1, id, 'EURUSD', 'buy', 100, 1.1, 2.2, 0.022 FROM o \
         ), l AS ( \
             INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id) \
             VALUES ($1, 'user_cash', 'user_margin', 2.2, 'margin_lock', gen_random_uuid()), \
                    ($1, 'user_cash', 'house_commission', 0.022, 'commission', gen_random_uuid()) \
         ), m AS ( \
             UPDATE profiles SET balance = balance - 2.222, margin_used = margin_used + 2.2 WHERE id = $1 \
         ) \
         SELECT id FROM o",
    )
    .bind(user)
    .fetch_one(&t.pool)
    .await
    .expect("plant")
}

#[tokio::test]
async fn an_order_whose_transfers_name_no_order_is_flagged_and_its_rollback_moves_nothing() {
    let t = test_db().await;
    let b = book(&t, 2).await;
    let (a_name, mut a) = login(&t, "ladv_stray", "incident_operator").await;
    let user = b.users[0];
    let stray = plant_order_with_stray_transfers(&t, user).await;
    // A deposit filed under a real order of the user: the order's rollback took it back too.
    sqlx::query(
        "WITH d AS (INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id) \
                    VALUES ($1, 'house_clearing', 'user_cash', 50, 'deposit', $2)) \
         UPDATE profiles SET balance = balance + 50 WHERE id = $1",
    )
    .bind(b.users[1])
    .bind(b.orders[1])
    .execute(&t.pool)
    .await
    .expect("plant deposit");
    let print = fingerprint(&t.pool).await;

    // Every audit names the stray transfers, also once a checkpoint has seen them.
    let mut c = t.conn().await;
    for full in [true, false] {
        let found = checks(&mut c, full).await;
        assert_eq!(
            found,
            ["transfer_names_an_order_of_its_user", "transfer_names_an_order_of_its_user"],
            "full {full}"
        );
    }
    let cp: Value = json(&mut c, "SELECT ledger_audit_checkpoint(false)").await.expect("checkpoint");
    ok(&cp);
    assert_eq!(checks(&mut c, false).await.len(), 2, "the checkpoint carries them forward");
    let v = db::ledger_audit_users(&t.pool, &[user]).await.expect("user audit");
    assert_eq!(v.len(), 2, "{v:?}");

    // Neither order can be rolled back, by any path: nothing moves.
    for (order, owner) in [(stray, user), (b.orders[1], b.users[1])] {
        let e = try_rollback(&mut a, order, owner, "stray").await.expect_err("refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("XX001"), "{e}");
        let e = chunk(&mut a, &[b.orders[0], order], &[user, owner], "stray").await.expect_err("refused");
        assert_eq!(sqlstate(&e).as_deref(), Some("XX001"), "the whole chunk is undone: {e}");
    }
    assert_eq!(fingerprint(&t.pool).await, print);
    // The user's sound order still goes back, alone.
    ok(&rollback(&mut a, b.orders[0], user, "sound").await);
    assert_eq!(money_of(&t.pool, user).await, (dec("997.778"), dec("2.2")), "the planted order's money is still taken");
    let _ = c.close().await;
    cleanup(&t, vec![(a_name, a)]).await;
}

#[tokio::test]
async fn the_audits_catch_what_the_dropped_foreign_keys_refused() {
    let t = test_db().await;
    let b = book(&t, 2).await;
    let done = b.orders[1];
    ok(&rollback(&mut t.conn().await, done, b.users[1], "before").await);
    let mut c = t.conn().await;
    let cp: Value = json(&mut c, "SELECT ledger_audit_checkpoint(true)").await.expect("checkpoint");
    ok(&cp);
    let (u, v, ghost) = (b.users[0], b.users[1], Uuid::new_v4());
    let plants = [
        (
            "a deposit to a user without a profile",
            format!(
                "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind) \
                 VALUES ('{ghost}', 'house_clearing', 'user_cash', 5, 'deposit')"
            ),
            "figures_without_account",
        ),
        (
            "a reversal whose original does not exist",
            format!(
                "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, reverses_id) \
                 VALUES ('{v}', 'house_commission', 'user_cash', 5, 'reversal', '{done}', 999999999)"
            ),
            "reversal_mirrors_original",
        ),
        (
            "a transfer of another user's order",
            format!(
                "WITH l AS (INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id) \
                            VALUES ('{u}', 'house_clearing', 'user_cash', 5, 'deposit', '{done}')) \
                 UPDATE profiles SET balance = balance + 5 WHERE id = '{u}'"
            ),
            "transfer_names_an_order_of_its_user",
        ),
    ];
    for (what, sql, expected) in plants.iter() {
        run(&mut c, "BEGIN").await;
        run(&mut c, sql).await;
        for full in [true, false] {
            let found = checks(&mut c, full).await;
            assert!(found.iter().any(|n| n == expected), "{what} (full {full}): {found:?}");
        }
        run(&mut c, "ROLLBACK").await;
    }

    // A reversal older than its original (the foreign key checked that the original existed
    // when the reversal was written): the original comes after it, mirrored exactly.
    run(&mut c, "BEGIN").await;
    sqlx::query(
        "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, reverses_id) \
         VALUES ($1, 'user_margin', 'user_cash', 1, 'reversal', $2, 900000000)",
    )
    .bind(u)
    .bind(b.orders[0])
    .execute(&mut c)
    .await
    .expect("early reversal");
    sqlx::query(
        "INSERT INTO ledger_transfers (id, user_id, debit_account, credit_account, amount, kind, order_id) \
         OVERRIDING SYSTEM VALUE VALUES (900000000, $1, 'user_cash', 'user_margin', 1, 'margin_lock', $2)",
    )
    .bind(u)
    .bind(b.orders[0])
    .execute(&mut c)
    .await
    .expect("original");
    for full in [true, false] {
        let found = checks(&mut c, full).await;
        assert!(found.iter().any(|n| n == "reversal_mirrors_original"), "full {full}: {found:?}");
    }
    run(&mut c, "ROLLBACK").await;

    // Committed, then a checkpoint: still reported by the incremental audit.
    for (_, sql, _) in plants.iter() {
        run(&mut c, sql).await;
    }
    let cp: Value = json(&mut c, "SELECT ledger_audit_checkpoint(false)").await.expect("checkpoint");
    ok(&cp);
    let found = checks(&mut c, false).await;
    for (what, _, expected) in plants.iter() {
        assert!(found.iter().any(|n| n == expected), "{what} after a checkpoint: {found:?}");
    }
    let _ = c.close().await;
}

#[tokio::test]
async fn an_approval_covers_its_own_users_orders_and_reason_and_nothing_else_in_the_merged_step() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1, "single_limit": 1})).await;
    let b = book(&t, 3).await;
    let (a_name, mut a) = login(&t, "ladv_appr_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "ladv_appr_b", "incident_operator").await;
    let op = Uuid::new_v4();
    let shown = refunded_of(&t, &b.orders[..2]).await;
    let id = request_id(&request_orders(&mut a, "batch", op, (&b.orders[..2], &b.users[..2]), "scope", shown, 2).await);
    ok(&decide(&mut bb, id, true, "ok").await);

    operation(&mut a, Some(op)).await;
    refused(&rollback(&mut a, b.orders[2], b.users[2], "scope").await, "approval_required");
    refused(&rollback(&mut a, b.orders[0], b.users[1], "scope").await, "order_not_found");
    refused(&rollback(&mut a, b.orders[0], b.users[0], "another reason").await, "approval_required");
    let v = chunk(&mut a, &[b.orders[2], b.orders[0]], &[b.users[2], b.users[0]], "scope").await.expect("chunk");
    refused(&v["results"][0], "approval_required");
    ok(&v["results"][1]);
    let v = chunk(&mut a, &b.orders[..2], &b.users[..2], "scope").await.expect("chunk");
    refused(&v["results"][0], "already_rolled_back");
    ok(&v["results"][1]);
    assert_eq!(count(&t, "SELECT count(*) FROM unapproved_rollbacks").await, 0, "approved work is not charged");
    b.assert_rolled_back(&t, &[0, 1]).await;
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}
