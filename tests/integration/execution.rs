//! The execution path on a real PostgreSQL (issue 8, findings 2, 7 and 8): maintenance mode
//! against snapshots older than the switch, idempotency keys that decide first and compare
//! the payload, timestamps in the order events happened, and orders that move no money.

use std::time::Duration;

use crate::support::db::*;
use chrono::{DateTime, Utc};
use incident_console::core::error::Result;
use incident_console::ops::drill::wait_until_waiting;
use incident_console::store::db::{self, NewOrder, is_retryable};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

const UP: &str = include_str!("../../assets/migrations/0009_execution_path.up.sql");
const DOWN: &str = include_str!("../../assets/migrations/0009_execution_path.down.sql");

/// Runs a migration file by hand, in one transaction (to put a database back in the state
/// of the code as it was before migration 9, and forward again).
async fn run_migration_file(t: &TestDb, sql: &'static str) {
    let mut tx = t.pool.begin().await.expect("begin");
    sqlx::raw_sql(sql).execute(&mut *tx).await.expect("migration file");
    tx.commit().await.expect("commit");
}

/// An order of `user` with `key`: a market order unless the test says otherwise.
fn order<'a>(user: Uuid, key: &'a str, symbol: &'a str, side: &'a str, qty: &str, price: &str) -> NewOrder<'a> {
    NewOrder {
        user_id: user,
        symbol,
        order_type: "market",
        side,
        quantity: dec(qty),
        price: dec(price),
        idempotency_key: key,
        transaction_id: None,
    }
}

fn code(v: &Value) -> &str {
    v["error_code"].as_str().unwrap_or("")
}

fn id_of(v: &Value) -> Uuid {
    Uuid::parse_str(v["order_id"].as_str().expect("order id")).expect("uuid")
}

async fn orders_of(t: &TestDb, user: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE user_id = $1").bind(user).fetch_one(&t.pool).await.expect("n")
}

async fn begin(c: &mut PgConnection, isolation: &'static str) {
    let sql = match isolation {
        "repeatable read" => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        "serializable" => "BEGIN ISOLATION LEVEL SERIALIZABLE",
        _ => "BEGIN ISOLATION LEVEL READ COMMITTED",
    };
    sqlx::raw_sql(sql).execute(&mut *c).await.expect("begin");
}

async fn end(c: &mut PgConnection) {
    // COMMIT of an aborted transaction rolls it back.
    sqlx::raw_sql("COMMIT").execute(&mut *c).await.expect("commit");
}

/// The answer is a refusal for maintenance, or an error the client retries (after which the
/// retry, in a new transaction, is refused for maintenance).
fn refused_for_maintenance(r: &Result<Value>) -> bool {
    match r {
        Ok(v) => code(v) == "maintenance_mode",
        Err(e) => is_retryable(e.sqlstate()),
    }
}

// --- Finding 2: maintenance mode holds under every isolation level --------------------------

/// A client whose transaction took its snapshot before maintenance mode was switched on
/// executes after the switch committed: it must not get an order through.
async fn stale_snapshot_after_the_switch(isolation: &'static str) {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let mut c = t.conn().await;
    begin(&mut c, isolation).await;
    sqlx::query("SELECT 1").execute(&mut c).await.expect("take the snapshot");

    let on = db::set_maintenance(&t.pool, true, "incident 8").await.expect("switch");
    assert_eq!(on["success"], true, "{on}");
    let r = db::execute_order(&mut c, &order(user, "k1", "EURUSD", "buy", "1", "1.1")).await;
    end(&mut c).await;

    assert!(refused_for_maintenance(&r), "{isolation}: an order walked past maintenance mode: {r:?}");
    assert_eq!(orders_of(&t, user).await, 0, "{isolation}: nothing may be committed");
    begin(&mut c, isolation).await;
    let retry = db::execute_order(&mut c, &order(user, "k1", "EURUSD", "buy", "1", "1.1")).await.expect("retry");
    end(&mut c).await;
    assert_eq!(code(&retry), "maintenance_mode", "{retry}");
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn maintenance_holds_for_a_repeatable_read_snapshot_older_than_the_switch() {
    stale_snapshot_after_the_switch("repeatable read").await;
}

#[tokio::test]
async fn maintenance_holds_for_a_serializable_snapshot_older_than_the_switch() {
    stale_snapshot_after_the_switch("serializable").await;
}

/// An execution that starts while the switch is still uncommitted takes its snapshot, then
/// waits for the switch: even a one-statement transaction must not get through.
async fn execution_waiting_for_the_switch(isolation: &'static str) {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let mut switch = t.conn().await;
    begin(&mut switch, "read committed").await;
    let on = db::set_maintenance(&mut switch, true, "incident 8").await.expect("switch");
    assert_eq!(on["success"], true, "{on}");

    let mut c = t.conn().await;
    let pid = db::backend_pid(&mut c).await.expect("pid");
    let task = tokio::spawn(async move {
        begin(&mut c, isolation).await;
        let r = db::execute_order(&mut c, &order(user, "k1", "EURUSD", "buy", "1", "1.1")).await;
        end(&mut c).await;
        r
    });
    let mut observer = t.conn().await;
    assert!(wait_until_waiting(&mut observer, pid, Duration::from_secs(10)).await.expect("wait"), "not waiting");
    end(&mut switch).await;
    let r = task.await.expect("task");

    assert!(refused_for_maintenance(&r), "{isolation}: an order walked past maintenance mode: {r:?}");
    assert_eq!(orders_of(&t, user).await, 0, "{isolation}: nothing may be committed");
}

#[tokio::test]
async fn maintenance_holds_for_executions_waiting_for_the_switch_at_every_isolation_level() {
    for isolation in ["read committed", "repeatable read", "serializable"] {
        execution_waiting_for_the_switch(isolation).await;
    }
}

/// One symbol's switch is fenced as the book's is: it waits for an execution of that
/// symbol in flight (which commits), and an execution that starts while it is uncommitted
/// waits for it and is refused, at every isolation level; a snapshot older than the switch
/// gets nothing through either.
async fn symbol_switch_is_fenced(isolation: &'static str) {
    let t = test_db().await;
    let (early, late) = (account(&t.pool, "10000").await, account(&t.pool, "10000").await);
    let mut in_flight = t.conn().await;
    begin(&mut in_flight, isolation).await;
    let first =
        db::execute_order(&mut in_flight, &order(early, "e1", "GBPUSD", "buy", "1", "1.2")).await.expect("in flight");
    assert_eq!(first["success"], true, "{first}");

    // The switch waits for the execution in flight.
    let mut switch = t.conn().await;
    let switch_pid = db::backend_pid(&mut switch).await.expect("pid");
    let switching = tokio::spawn(async move {
        begin(&mut switch, "read committed").await;
        let r = db::set_symbol_maintenance(&mut switch, "GBPUSD", true, "burst").await;
        (switch, r)
    });
    let mut observer = t.conn().await;
    assert!(wait_until_waiting(&mut observer, switch_pid, Duration::from_secs(10)).await.expect("w"), "switch waits");

    // An execution that starts now waits behind the switch.
    let mut c = t.conn().await;
    let pid = db::backend_pid(&mut c).await.expect("pid");
    let waiting = tokio::spawn(async move {
        begin(&mut c, isolation).await;
        let r = db::execute_order(&mut c, &order(late, "l1", "GBPUSD", "buy", "1", "1.2")).await;
        end(&mut c).await;
        r
    });
    assert!(wait_until_waiting(&mut observer, pid, Duration::from_secs(10)).await.expect("w"), "execution waits");
    end(&mut in_flight).await;
    let (mut switch, on) = switching.await.expect("switch task");
    assert_eq!(on.expect("switch")["success"], true);
    end(&mut switch).await;
    let r = waiting.await.expect("task");

    assert!(refused_for_maintenance(&r), "{isolation}: an order walked past the symbol's maintenance: {r:?}");
    assert_eq!(orders_of(&t, early).await, 1, "{isolation}: the execution in flight committed");
    assert_eq!(orders_of(&t, late).await, 0, "{isolation}: nothing of the late one");

    // A snapshot older than a second switch (off, then on again) gets nothing through.
    let off = db::set_symbol_maintenance(&t.pool, "GBPUSD", false, "done").await.expect("off");
    assert_eq!(off["success"], true, "{off}");
    let mut stale = t.conn().await;
    begin(&mut stale, isolation).await;
    sqlx::query("SELECT 1").execute(&mut stale).await.expect("snapshot");
    db::set_symbol_maintenance(&t.pool, "GBPUSD", true, "again").await.expect("on");
    let r = db::execute_order(&mut stale, &order(late, "l2", "GBPUSD", "buy", "1", "1.2")).await;
    end(&mut stale).await;
    assert!(refused_for_maintenance(&r), "{isolation}: a stale snapshot walked past: {r:?}");
    assert_eq!(orders_of(&t, late).await, 0);
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn one_symbols_maintenance_is_fenced_at_every_isolation_level() {
    for isolation in ["read committed", "repeatable read", "serializable"] {
        symbol_switch_is_fenced(isolation).await;
    }
}

#[tokio::test]
async fn repeatable_read_executions_do_not_wait_for_each_other() {
    let t = test_db().await;
    let (a, b) = (account(&t.pool, "10000").await, account(&t.pool, "10000").await);
    let (mut ca, mut cb) = (t.conn().await, t.conn().await);
    begin(&mut ca, "repeatable read").await;
    begin(&mut cb, "serializable").await;
    let ra = db::execute_order(&mut ca, &order(a, "ka", "EURUSD", "buy", "1", "1.1")).await.expect("a");
    // Both hold the settings row shared; the second must not wait for the first to commit.
    let rb = tokio::time::timeout(
        Duration::from_secs(5),
        db::execute_order(&mut cb, &order(b, "kb", "EURUSD", "buy", "1", "1.1")),
    )
    .await
    .expect("the second execution waited for the first")
    .expect("b");
    end(&mut ca).await;
    end(&mut cb).await;
    assert_eq!((ra["success"].clone(), rb["success"].clone()), (Value::Bool(true), Value::Bool(true)));
    assert_consistent(&t.pool).await;
}

// --- Finding 7: the idempotency key decides first ---------------------------------------------

#[tokio::test]
async fn a_retry_during_maintenance_returns_the_order_it_executed() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let o = order(user, "retry-1", "EURUSD", "buy", "1", "1.1");
    let first = db::execute_order(&t.pool, &o).await.expect("first");
    assert_eq!(first["success"], true, "{first}");
    db::set_maintenance(&t.pool, true, "incident 8").await.expect("on");
    let print = fingerprint(&t.pool).await;

    let retry = db::execute_order(&t.pool, &o).await.expect("retry");
    assert_eq!(retry["success"], true, "the client must learn its order executed: {retry}");
    assert_eq!(retry["duplicate"], true, "{retry}");
    assert_eq!(id_of(&retry), id_of(&first));
    let other = db::execute_order(&t.pool, &order(user, "retry-1", "GBPUSD", "sell", "5000", "1.27")).await.expect("x");
    assert_eq!(code(&other), "idempotency_conflict", "the key decides before maintenance: {other}");
    let fresh = db::execute_order(&t.pool, &order(user, "retry-2", "EURUSD", "buy", "1", "1.1")).await.expect("new");
    assert_eq!(code(&fresh), "maintenance_mode", "{fresh}");
    assert_eq!(fingerprint(&t.pool).await, print);
}

#[tokio::test]
async fn a_retry_after_the_instrument_stopped_trading_returns_the_order_it_executed() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let o = order(user, "retry-1", "EURUSD", "buy", "1", "1.1");
    let first = db::execute_order(&t.pool, &o).await.expect("first");
    sqlx::query("UPDATE instruments SET tradable = false WHERE symbol = 'EURUSD'")
        .execute(&t.pool)
        .await
        .expect("halt EURUSD");
    let retry = db::execute_order(&t.pool, &o).await.expect("retry");
    assert_eq!(retry["success"], true, "{retry}");
    assert_eq!(retry["duplicate"], true, "{retry}");
    assert_eq!(id_of(&retry), id_of(&first));
    let fresh = db::execute_order(&t.pool, &order(user, "retry-2", "EURUSD", "buy", "1", "1.1")).await.expect("new");
    assert_eq!(code(&fresh), "unknown_symbol", "{fresh}");
}

#[tokio::test]
async fn a_key_reused_with_another_payload_is_refused_and_changes_nothing() {
    let t = test_db().await;
    let user = account(&t.pool, "100000").await;
    let first = db::execute_order(&t.pool, &order(user, "k", "EURUSD", "buy", "1", "1.1")).await.expect("first");
    assert_eq!(first["success"], true, "{first}");
    let print = fingerprint(&t.pool).await;

    let mut limit = order(user, "k", "EURUSD", "buy", "1", "1.1");
    limit.order_type = "limit";
    let mut grouped = order(user, "k", "EURUSD", "buy", "1", "1.1");
    grouped.transaction_id = Some(Uuid::new_v4());
    let others = [
        ("another symbol and side", order(user, "k", "GBPUSD", "sell", "5000", "1.27")),
        ("another side", order(user, "k", "EURUSD", "sell", "1", "1.1")),
        ("another quantity", order(user, "k", "EURUSD", "buy", "2", "1.1")),
        ("another price", order(user, "k", "EURUSD", "buy", "1", "1.2")),
        ("another order type", limit),
        ("another transaction", grouped),
    ];
    for (what, o) in &others {
        let r = db::execute_order(&t.pool, o).await.expect("reuse");
        assert_eq!(r["success"], false, "{what}: {r}");
        assert_eq!(code(&r), "idempotency_conflict", "{what}: {r}");
        assert_eq!(id_of(&r), id_of(&first), "{what}: the refusal names the order the key placed");
    }
    assert_eq!(fingerprint(&t.pool).await, print, "a conflict changes nothing");

    // The same payload written differently is the same order.
    let same = db::execute_order(&t.pool, &order(user, "k", "EURUSD", "buy", "1.00000000", "1.10")).await.expect("x");
    assert_eq!((same["success"].clone(), same["duplicate"].clone()), (Value::Bool(true), Value::Bool(true)), "{same}");
    assert_eq!(id_of(&same), id_of(&first));
}

#[tokio::test]
async fn a_retry_of_a_rolled_back_order_says_it_was_rolled_back() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let o = order(user, "k", "EURUSD", "buy", "1000", "1.1");
    let first = db::execute_order(&t.pool, &o).await.expect("first");
    let r = db::rollback_order(&t.pool, id_of(&first), user, "duplicate fill").await.expect("rollback");
    assert!(r.success, "{r:?}");
    let print = fingerprint(&t.pool).await;

    let retry = db::execute_order(&t.pool, &o).await.expect("retry");
    assert_eq!(retry["success"], false, "a rolled-back order is not a success: {retry}");
    assert_eq!(code(&retry), "order_rolled_back", "{retry}");
    assert_eq!(retry["status"], "rolled_back", "{retry}");
    assert_eq!(retry["duplicate"], true, "{retry}");
    assert_eq!(id_of(&retry), id_of(&first));
    assert_eq!(fingerprint(&t.pool).await, print);
}

#[tokio::test]
async fn a_retry_of_a_failed_order_gives_its_refusal_and_another_payload_a_conflict() {
    let t = test_db().await;
    let user = account(&t.pool, "10").await;
    let o = order(user, "k", "EURUSD", "buy", "100000", "1.1");
    let first = db::execute_order(&t.pool, &o).await.expect("first");
    assert_eq!(code(&first), "insufficient_funds", "{first}");
    let retry = db::execute_order(&t.pool, &o).await.expect("retry");
    assert_eq!((code(&retry), retry["duplicate"].clone()), ("insufficient_funds", Value::Bool(true)), "{retry}");
    let small = db::execute_order(&t.pool, &order(user, "k", "EURUSD", "buy", "1", "1.1")).await.expect("small");
    assert_eq!(code(&small), "idempotency_conflict", "{small}");
    assert_eq!(orders_of(&t, user).await, 1);
}

/// Two calls with one key queued behind a lock on the account: one executes, the other
/// answers from it (same payload) or refuses (another payload), at every isolation level
/// once the client retries what it is told to retry.
async fn one_key_two_calls(isolation: &'static str, same_payload: bool) {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let mut holder = t.conn().await;
    begin(&mut holder, "read committed").await;
    sqlx::query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE").bind(user).execute(&mut holder).await.expect("x");

    let qty = if same_payload { "1" } else { "2" };
    let mut tasks = Vec::new();
    let mut pids = Vec::new();
    for q in ["1", qty] {
        let mut c = t.conn().await;
        pids.push(db::backend_pid(&mut c).await.expect("pid"));
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            loop {
                begin(&mut c, isolation).await;
                let r = db::execute_order(&mut c, &order(user, "k", "EURUSD", "buy", q, "1.1")).await;
                end(&mut c).await;
                match r {
                    Err(e) if is_retryable(e.sqlstate()) && retries < 5 => retries += 1,
                    other => return other.expect("execution"),
                }
            }
        }));
    }
    let mut observer = t.conn().await;
    for pid in pids {
        assert!(wait_until_waiting(&mut observer, pid, Duration::from_secs(10)).await.expect("wait"));
    }
    end(&mut holder).await;
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }

    assert_eq!(orders_of(&t, user).await, 1, "{isolation}: one key, one order: {answers:?}");
    let executed: Vec<&Value> = answers.iter().filter(|a| a["duplicate"] == false).collect();
    assert_eq!(executed.len(), 1, "{isolation}: {answers:?}");
    let other = answers.iter().find(|a| a["duplicate"] != false).expect("the other answer");
    if same_payload {
        assert_eq!(other["success"], true, "{isolation}: {other}");
        assert_eq!(id_of(other), id_of(executed[0]));
    } else if other["order_id"] != executed[0]["order_id"] {
        panic!("{isolation}: the conflict must name the order that executed: {answers:?}");
    } else {
        // Which call won is up to the scheduler; the loser learns of a conflict.
        assert_eq!(code(other), "idempotency_conflict", "{isolation}: {answers:?}");
    }
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn two_calls_with_one_key_execute_once_at_every_isolation_level() {
    for isolation in ["read committed", "repeatable read", "serializable"] {
        one_key_two_calls(isolation, true).await;
        one_key_two_calls(isolation, false).await;
    }
}

// --- Finding 8: timestamps in event order, no order that moves no money ------------------------

#[tokio::test]
async fn executed_at_is_when_the_order_executed_not_when_its_transaction_began() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let mut c = t.conn().await;
    begin(&mut c, "read committed").await;
    sqlx::query("SELECT 1").execute(&mut c).await.expect("statement");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(&t.pool).await.expect("now");
    let r = db::execute_order(&mut c, &order(user, "k", "EURUSD", "buy", "1", "1.1")).await.expect("execute");
    end(&mut c).await;
    let at: DateTime<Utc> = sqlx::query_scalar("SELECT executed_at FROM orders WHERE id = $1")
        .bind(id_of(&r))
        .fetch_one(&t.pool)
        .await
        .expect("executed_at");
    assert!(at >= before, "executed_at {at} is before a moment the order had not executed yet ({before})");
}

#[tokio::test]
async fn the_switch_and_the_rows_it_writes_are_timed_after_the_executions_it_let_through() {
    // The switch's transaction began before an execution that committed ahead of it: the
    // switch must not say maintenance began before that order executed, nor may any row
    // written after a wait carry the time its transaction began.
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let mut s = t.conn().await;
    begin(&mut s, "read committed").await;
    sqlx::query("SELECT 1").execute(&mut s).await.expect("the switch's transaction has begun");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = db::execute_order(&t.pool, &order(user, "k", "EURUSD", "buy", "1", "1.1")).await.expect("execute");
    assert_eq!(r["success"], true, "{r}");
    let v: Value =
        sqlx::query_scalar("SELECT set_maintenance_mode(true, 'timing')").fetch_one(&mut s).await.expect("on");
    assert_eq!(v["success"], true, "{v}");
    end(&mut s).await;
    let (executed, since, logged): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "SELECT o.executed_at, s.maintenance_since, (SELECT max(at) FROM maintenance_log) \
         FROM orders o, system_settings s WHERE o.id = $1",
    )
    .bind(id_of(&r))
    .fetch_one(&t.pool)
    .await
    .expect("times");
    assert!(since >= executed, "maintenance since {since}, before the order it let through executed ({executed})");
    assert!(logged >= executed, "the switch is logged at {logged}, before the order executed ({executed})");
}

/// A rollback whose transaction began before an order it rolls back executed.
async fn rollback_begun_before_the_execution(group: bool) {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let tx = Uuid::new_v4();
    let first = executed(&t.pool, user, "1000", Some(tx)).await;
    let mut c = t.conn().await;
    begin(&mut c, "read committed").await;
    sqlx::query("SELECT 1").execute(&mut c).await.expect("statement");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = executed(&t.pool, user, "500", Some(tx)).await;

    let r = if group {
        db::rollback_group(&mut c, first, user, "duplicate burst").await
    } else {
        db::rollback_order(&mut c, late, user, "duplicate fill").await
    };
    end(&mut c).await;
    let r = r.expect("the rollback must not fail on its own timestamps");
    assert!(r.success, "{r:?}");
    let rolled = if group { vec![first, late] } else { vec![late] };
    let mut expected = rolled.clone();
    expected.sort();
    assert_eq!(r.order_ids, Some(expected));
    let ordered: bool = sqlx::query_scalar(
        "SELECT bool_and(o.rolled_back_at >= o.executed_at AND p.closed_at >= p.opened_at) \
         FROM orders o JOIN positions p ON p.order_id = o.id WHERE o.id = ANY($1)",
    )
    .bind(rolled)
    .fetch_one(&t.pool)
    .await
    .expect("timestamps");
    assert!(ordered, "each order is rolled back after it executed, each position closed after it opened");
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn a_group_rollback_begun_before_a_member_executed_succeeds() {
    rollback_begun_before_the_execution(true).await;
}

#[tokio::test]
async fn a_rollback_begun_before_the_order_executed_succeeds() {
    rollback_begun_before_the_execution(false).await;
}

#[tokio::test]
async fn an_order_that_would_move_no_money_is_refused() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let print = fingerprint(&t.pool).await;
    for (qty, price) in [("0.00000001", "0.00000001"), ("0.0001", "0.0001"), ("0.00000001", "1")] {
        let r = db::execute_order(&t.pool, &order(user, "tiny", "EURUSD", "buy", qty, price)).await.expect("tiny");
        assert_eq!(r["success"], false, "{qty} x {price}: {r}");
        assert_eq!(code(&r), "order_too_small", "{qty} x {price}: {r}");
    }
    assert_eq!(fingerprint(&t.pool).await, print, "a refused order leaves nothing behind");

    // Margin without commission still moves money: it executes, pre-checks and rolls back.
    let r = db::execute_order(&t.pool, &order(user, "small", "EURUSD", "buy", "0.00001", "1")).await.expect("small");
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(r["commission"], "0.00000000", "{r}");
    let pre = db::precheck(&t.pool, id_of(&r), user).await.expect("precheck");
    assert!(pre.ready, "{pre:?}");
    let baseline = pre.baseline.clone().expect("baseline");
    let done = db::rollback_with_postcheck(&t.pool, id_of(&r), user, "tiny", &baseline, false, uuid::Uuid::new_v4())
        .await
        .expect("rb");
    assert!(done.rollback.success && done.postcheck.is_some_and(|p| p.successful), "{:?}", done.rollback);
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn the_transfers_pre_check_fails_plainly_for_orders_that_never_moved_money() {
    let t = test_db().await;
    let user = account(&t.pool, "10").await;
    let failed = db::execute_order(&t.pool, &order(user, "k", "EURUSD", "buy", "100000", "1.1")).await.expect("x");
    assert_eq!(code(&failed), "insufficient_funds", "{failed}");
    // A failed order has no total cost: the check must say false, not null (which would
    // not decode, and which a JSON path test for `false` would overlook).
    for order_id in [id_of(&failed), Uuid::new_v4()] {
        let pre = db::precheck(&t.pool, order_id, user).await.expect("precheck decodes");
        assert!(!pre.ready);
        let check = pre.checks.iter().find(|c| c.check == "execution_transfers_unreversed").expect("check");
        assert!(!check.passed, "{check:?}");
    }
}

#[tokio::test]
async fn a_zero_cost_order_executed_before_the_fix_is_checked_and_rolled_back_without_a_false_alert() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    // The code as it was let such an order execute with no transfers.
    run_migration_file(&t, DOWN).await;
    let r = db::execute_order(&t.pool, &order(user, "tiny", "EURUSD", "buy", "0.00000001", "0.00000001")).await;
    let r = r.expect("old execution");
    assert_eq!(r["success"], true, "{r}");
    run_migration_file(&t, UP).await;
    let order_id = id_of(&r);

    let pre = db::precheck(&t.pool, order_id, user).await.expect("precheck");
    assert!(pre.ready, "nothing to reverse is not a reason to refuse: {pre:?}");
    let baseline = pre.baseline.clone().expect("baseline");
    let done =
        db::rollback_with_postcheck(&t.pool, order_id, user, "zero cost", &baseline, false, uuid::Uuid::new_v4())
            .await
            .expect("rb");
    assert!(done.rollback.success, "{:?}", done.rollback);
    let post = done.postcheck.expect("postcheck");
    assert!(post.successful, "{post:?}");
    let alerts = count(&t, "SELECT count(*) FROM order_audit_log WHERE action = 'postcheck_failed'").await;
    assert_eq!(alerts, 0, "no false postcheck_failed alert");
    assert_consistent(&t.pool).await;
}
