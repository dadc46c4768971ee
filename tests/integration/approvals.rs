//! Four-eyes approval in the database (migration 19), with two real logins: work above the
//! policy is refused (approval_required) unless a second person approved exactly that work;
//! an approval covers its orders, its reason, its requesting login and its time, nothing
//! else; nobody decides their own request; the budget of unapproved work is one login's;
//! a release rollback and, at Level 3, closing the breaker need an approval used once.
//! Every test checks the money: refused orders unchanged, each order rolled back once.
//!
//! The test template switches the policy off; these tests switch it on as the owner.

use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::security::{connect_as, drop_role, login_role, sqlstate};
use crate::support::db::*;
use incident_console::core::workflow::Level;
use incident_console::core::workflow::checklist::Checklist;
use incident_console::store::db;
use incident_console::store::incidents::IncidentStore;

/// The owner sets the policy (members replace the stored values).
pub(crate) async fn set_policy(t: &TestDb, policy: Value) {
    let v: Value = sqlx::query_scalar("SELECT set_approval_policy($1)")
        .bind(&policy)
        .fetch_one(&t.pool)
        .await
        .expect("set_approval_policy");
    assert_eq!(v["success"], true, "{policy}: {v}");
}

/// A login of `group` and a connection of it.
pub(crate) async fn login(t: &TestDb, prefix: &str, group: &str) -> (String, PgConnection) {
    let name = login_role(t, prefix, Some(group)).await;
    let c = connect_as(t, &name).await;
    (name, c)
}

/// Roles are cluster-wide: close the connections, then drop the roles.
pub(crate) async fn cleanup(t: &TestDb, logins: Vec<(String, PgConnection)>) {
    for (name, c) in logins {
        let _ = c.close().await;
        drop_role(t, &name).await;
    }
}

/// Runs a statement of SQL as is (a `SET`, a `BEGIN`).
pub(crate) async fn run(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut *c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The operation this session's rollbacks run under (incident.batch_id), or none.
pub(crate) async fn operation(c: &mut PgConnection, op: Option<Uuid>) {
    sqlx::query("SELECT set_config('incident.batch_id', $1, false)")
        .bind(op.map(|o| o.to_string()).unwrap_or_default())
        .execute(&mut *c)
        .await
        .expect("set incident.batch_id");
}

/// `rollback_execute_order_atomic`, as psql would call it.
pub(crate) async fn rollback(c: &mut PgConnection, order: Uuid, user: Uuid, reason: &str) -> Value {
    try_rollback(c, order, user, reason).await.expect("rollback_execute_order_atomic")
}

pub(crate) async fn try_rollback(
    c: &mut PgConnection,
    order: Uuid,
    user: Uuid,
    reason: &str,
) -> Result<Value, sqlx::Error> {
    sqlx::query_scalar("SELECT rollback_execute_order_atomic($1, $2, $3)")
        .bind(order)
        .bind(user)
        .bind(reason)
        .fetch_one(&mut *c)
        .await
}

/// `rollback_order_execution`: the order's transaction group.
pub(crate) async fn group_rollback(c: &mut PgConnection, order: Uuid, user: Uuid, reason: &str) -> Value {
    sqlx::query_scalar("SELECT rollback_order_execution($1, $2, $3)")
        .bind(order)
        .bind(user)
        .bind(reason)
        .fetch_one(&mut *c)
        .await
        .expect("rollback_order_execution")
}

/// A request for orders (`batch` or `group`): the orders and their users, with what the
/// requester was shown refunded.
pub(crate) async fn request_orders(
    c: &mut PgConnection,
    kind: &str,
    op: Uuid,
    (orders, users): (&[Uuid], &[Uuid]),
    reason: &str,
    refunded: Decimal,
    level: i32,
) -> Value {
    sqlx::query_scalar(
        "SELECT request_approval($1, $2, $3, $4, NULL, $5, $6, $7, 'INC-approvals', '{\"orders\": \"shown\"}'::jsonb)",
    )
    .bind(kind)
    .bind(op)
    .bind(orders)
    .bind(users)
    .bind(reason)
    .bind(refunded)
    .bind(level)
    .fetch_one(&mut *c)
    .await
    .expect("request_approval")
}

/// A request without orders: `release_rollback` (its target) or `breaker_close`.
pub(crate) async fn request_other(
    c: &mut PgConnection,
    kind: &str,
    op: Uuid,
    target: Option<&str>,
    reason: &str,
) -> Value {
    sqlx::query_scalar("SELECT request_approval($1, $2, NULL, NULL, $3, $4, 0, 3, NULL, NULL)")
        .bind(kind)
        .bind(op)
        .bind(target)
        .bind(reason)
        .fetch_one(&mut *c)
        .await
        .expect("request_approval")
}

pub(crate) async fn decide(c: &mut PgConnection, id: Uuid, approve: bool, reason: &str) -> Value {
    sqlx::query_scalar("SELECT decide_approval($1, $2, $3, 'INC-approvals')")
        .bind(id)
        .bind(approve)
        .bind(reason)
        .fetch_one(&mut *c)
        .await
        .expect("decide_approval")
}

pub(crate) async fn cancel(c: &mut PgConnection, id: Uuid, reason: &str) -> Value {
    sqlx::query_scalar("SELECT cancel_approval($1, $2)")
        .bind(id)
        .bind(reason)
        .fetch_one(&mut *c)
        .await
        .expect("cancel_approval")
}

/// The id of a request filed successfully.
pub(crate) fn request_id(v: &Value) -> Uuid {
    assert_eq!(v["success"], true, "the request was filed: {v}");
    v["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()).unwrap_or_else(|| panic!("no id in {v}"))
}

pub(crate) fn ok(v: &Value) {
    assert_eq!(v["success"], true, "expected success: {v}");
}

pub(crate) fn refused(v: &Value, code: &str) {
    assert_eq!(v["success"], false, "expected a refusal {code}: {v}");
    assert_eq!(v["error_code"], code, "{v}");
}

/// What the server counts refunded by these orders (executed ones).
pub(crate) async fn refunded_of(t: &TestDb, orders: &[Uuid]) -> Decimal {
    sqlx::query_scalar("SELECT coalesce(sum(total_cost), 0) FROM orders WHERE id = ANY ($1) AND status = 'executed'")
        .bind(orders)
        .fetch_one(&t.pool)
        .await
        .expect("refunded")
}

/// The actions of a request's log, in order.
pub(crate) async fn log_of(t: &TestDb, request: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM approval_log WHERE request_id = $1 ORDER BY id")
        .bind(request)
        .fetch_all(&t.pool)
        .await
        .expect("approval_log")
}

/// `n` accounts with 1,000 each, and one executed order of 100 EURUSD each (2.222 taken:
/// margin 2.2, commission 0.022).
pub(crate) struct Book {
    pub users: Vec<Uuid>,
    pub orders: Vec<Uuid>,
}

pub(crate) async fn book(t: &TestDb, n: usize) -> Book {
    let mut users = Vec::new();
    let mut orders = Vec::new();
    for _ in 0..n {
        let u = account(&t.pool, "1000").await;
        orders.push(executed(&t.pool, u, "100", None).await);
        users.push(u);
    }
    Book { users, orders }
}

impl Book {
    /// Order `i` is as executed (nothing refunded) or rolled back exactly once (all back).
    pub async fn assert_order(&self, t: &TestDb, i: usize, rolled_back: bool) {
        let (order, user) = (self.orders[i], self.users[i]);
        let audit = db::rollback_audit_rows(&t.pool, order).await.expect("audit rows");
        if rolled_back {
            assert_eq!(money_of(&t.pool, user).await, (dec("1000"), dec("0")), "order {i} refunded exactly");
            assert_eq!(audit, 1, "order {i} rolled back exactly once");
        } else {
            assert_eq!(money_of(&t.pool, user).await, (dec("997.778"), dec("2.2")), "order {i} untouched");
            assert_eq!(audit, 0, "order {i} not rolled back");
        }
    }

    pub async fn assert_rolled_back(&self, t: &TestDb, which: &[usize]) {
        for i in 0..self.orders.len() {
            self.assert_order(t, i, which.contains(&i)).await;
        }
        assert_consistent(&t.pool).await;
    }
}

/// Opens an incident at `level` and copies its journal to incident_events as the
/// commander's console does (here the superuser's login is the commander's).
pub(crate) async fn open_incident(t: &TestDb, level: Level) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = IncidentStore::new(dir.path().join("incidents"));
    let inc =
        store.create("approvals", level, "test", "commander", Utc::now(), Checklist::shipped()).expect("open incident");
    let entries = inc.entries().expect("entries");
    db::copy_incident_events(&t.pool, &inc.incident.id, &entries).await.expect("copy journal");
    dir
}

async fn open_level(t: &TestDb) -> i64 {
    let v: Value = sqlx::query_scalar("SELECT approval_policy_show()").fetch_one(&t.pool).await.expect("policy");
    v["open_level"].as_i64().expect("open_level")
}

#[tokio::test]
async fn work_above_the_policy_is_refused_without_an_approval_and_changes_nothing() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 3, "single_limit": 20})).await;
    let b = book(&t, 10).await;
    let (a_name, mut a) = login(&t, "appr_a", "incident_operator").await;
    let (c_name, mut c) = login(&t, "appr_c", "incident_operator").await;

    // The client's question: five orders need a second person.
    let need: Value = sqlx::query_scalar("SELECT approval_needed('batch', $1, $2, 1)")
        .bind(&b.orders[..5])
        .bind(&b.users[..5])
        .fetch_one(&mut a)
        .await
        .expect("approval_needed");
    assert_eq!(need["required"], true, "{need}");
    assert_eq!(need["orders"], 5, "{need}");
    assert_eq!(need["refunded"], "11.11000000", "{need}");

    // A psql loop as login A under one operation id: three go through, the budget is spent.
    operation(&mut a, Some(Uuid::new_v4())).await;
    for i in 0..5 {
        let v = rollback(&mut a, b.orders[i], b.users[i], "duplicate burst").await;
        if i < 3 {
            ok(&v);
        } else {
            refused(&v, "approval_required");
            assert!(v["message"].as_str().unwrap_or("").contains("already rolled back 3 orders"), "{v}");
        }
    }
    // The same loop without an operation id (each call an operation of its own), as login C.
    for i in 5..10 {
        let v = rollback(&mut c, b.orders[i], b.users[i], "duplicate burst").await;
        if i < 8 {
            ok(&v);
        } else {
            refused(&v, "approval_required");
        }
    }
    // A's budget is A's: it stays spent for A whatever the operation.
    operation(&mut a, None).await;
    refused(&rollback(&mut a, b.orders[3], b.users[3], "duplicate burst").await, "approval_required");
    b.assert_rolled_back(&t, &[0, 1, 2, 5, 6, 7]).await;
    let used: Vec<(String, i64)> = sqlx::query_as(
        "SELECT login, sum(orders)::bigint FROM unapproved_rollbacks GROUP BY login ORDER BY sum(orders) DESC, login",
    )
    .fetch_all(&t.pool)
    .await
    .expect("budget");
    assert_eq!(used.len(), 2, "{used:?}");
    assert!(used.iter().all(|(l, n)| *n == 3 && (l == &a_name || l == &c_name)), "{used:?}");

    // A group above the policy is refused as a whole.
    let user = account(&t.pool, "1000").await;
    let tx = Uuid::new_v4();
    let mut group = Vec::new();
    for _ in 0..4 {
        group.push(executed(&t.pool, user, "10", Some(tx)).await);
    }
    let (d_name, mut d) = login(&t, "appr_d", "incident_operator").await;
    let before = money_of(&t.pool, user).await;
    let v = group_rollback(&mut d, group[0], user, "duplicate group").await;
    refused(&v, "approval_required");
    assert!(v["message"].as_str().unwrap_or("").contains("4 orders is more than the 3"), "{v}");
    assert_eq!(money_of(&t.pool, user).await, before);
    assert_consistent(&t.pool).await;

    // Money too: one order refunding more than batch_refunded.
    set_policy(&t, json!({"batch_refunded": "2"})).await;
    let rich = account(&t.pool, "1000").await;
    let big = executed(&t.pool, rich, "100", None).await;
    let v = rollback(&mut d, big, rich, "too much for one person").await;
    refused(&v, "approval_required");
    assert!(v["message"].as_str().unwrap_or("").contains("refunded is more than"), "{v}");
    assert_eq!(db::rollback_audit_rows(&t.pool, big).await.expect("rows"), 0);
    cleanup(&t, vec![(a_name, a), (c_name, c), (d_name, d)]).await;
}

#[tokio::test]
async fn an_approved_batch_goes_through_in_its_scope_for_its_requester_with_its_reason_only() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 3})).await;
    let b = book(&t, 7).await;
    let (a_name, mut a) = login(&t, "appr_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "appr_b", "incident_operator").await;
    run(&mut a, "SET incident.operator = 'Alice'").await;
    run(&mut bb, "SET incident.operator = 'Bob'").await;

    let op = Uuid::new_v4();
    let scope = &b.orders[..5];
    let shown = refunded_of(&t, scope).await;
    assert_eq!(shown, dec("11.11"));
    let req = request_orders(&mut a, "batch", op, (scope, &b.users[..5]), "duplicate burst", shown, 2).await;
    let id = request_id(&req);
    assert_eq!(req["orders"], 5, "{req}");
    assert!(req["required_because"].as_array().is_some_and(|r| !r.is_empty()), "{req}");

    // Before the decision: refused, whoever asks.
    operation(&mut a, Some(op)).await;
    let v = rollback(&mut a, b.orders[0], b.users[0], "duplicate burst").await;
    refused(&v, "approval_required");
    assert!(v["message"].as_str().unwrap_or("").contains("still waiting"), "{v}");

    let d = decide(&mut bb, id, true, "checked the burst: all five are duplicates").await;
    ok(&d);
    assert_eq!(d["operator"], format!("Bob (via {b_name})"), "{d}");

    // Another reason, an order outside the set, login B under A's operation: refused.
    refused(&rollback(&mut a, b.orders[0], b.users[0], "another reason").await, "approval_required");
    let v = rollback(&mut a, b.orders[5], b.users[5], "duplicate burst").await;
    refused(&v, "approval_required");
    assert!(v["message"].as_str().unwrap_or("").contains("outside the approved scope"), "{v}");
    operation(&mut bb, Some(op)).await;
    let v = rollback(&mut bb, b.orders[0], b.users[0], "duplicate burst").await;
    refused(&v, "approval_required");
    assert!(v["message"].as_str().unwrap_or("").contains("login that asked"), "{v}");
    // An order of the set named with another user (the pair is the scope).
    refused(&rollback(&mut a, b.orders[0], b.users[1], "duplicate burst").await, "order_not_found");
    b.assert_rolled_back(&t, &[]).await;

    // The five, each once, by A under the approval: above the budget, and not charged to it.
    for i in 0..5 {
        let v = rollback(&mut a, b.orders[i], b.users[i], "duplicate burst").await;
        ok(&v);
        assert_eq!(v["approval_id"], id.to_string(), "{v}");
    }
    refused(&rollback(&mut a, b.orders[0], b.users[0], "duplicate burst").await, "already_rolled_back");
    assert_eq!(count(&t, "SELECT count(*) FROM unapproved_rollbacks").await, 0, "approved work is not budget");
    assert_eq!(log_of(&t, id).await, ["requested", "approved", "used"]);
    let (by, login_of, decided_by, decided_login): (String, String, String, String) = sqlx::query_as(
        "SELECT requested_by, requested_login, decided_by, decided_login FROM approval_requests WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&t.pool)
    .await
    .expect("request");
    assert_eq!((by, login_of), (format!("Alice (via {a_name})"), a_name.clone()));
    assert_eq!((decided_by, decided_login), (format!("Bob (via {b_name})"), b_name.clone()));
    let audit: Vec<Option<Uuid>> = sqlx::query_scalar(
        "SELECT batch_id FROM order_audit_log WHERE order_id = ANY ($1) AND action = 'order_rolled_back'",
    )
    .bind(scope)
    .fetch_all(&t.pool)
    .await
    .expect("audit");
    assert_eq!(audit, vec![Some(op); 5], "each audit row names the operation");

    // A changed set needs a new request (a new operation); the old operation stays as it was.
    let dup =
        request_orders(&mut a, "batch", op, (&b.orders[5..], &b.users[5..]), "duplicate burst", dec("4.444"), 2).await;
    refused(&dup, "invalid_argument");
    let op2 = Uuid::new_v4();
    let req2 = request_orders(
        &mut a,
        "batch",
        op2,
        (&b.orders[5..], &b.users[5..]),
        "the rest",
        refunded_of(&t, &b.orders[5..]).await,
        2,
    )
    .await;
    let id2 = request_id(&req2);
    ok(&decide(&mut bb, id2, true, "the rest too").await);
    operation(&mut a, Some(op2)).await;
    for i in 5..7 {
        ok(&rollback(&mut a, b.orders[i], b.users[i], "the rest").await);
    }
    b.assert_rolled_back(&t, &[0, 1, 2, 3, 4, 5, 6]).await;
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}

#[tokio::test]
async fn an_expired_approval_is_refused_and_a_late_decision_too() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 3).await;
    let (a_name, mut a) = login(&t, "appr_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "appr_b", "incident_operator").await;
    let op = Uuid::new_v4();
    let shown = refunded_of(&t, &b.orders[..2]).await;
    let id =
        request_id(&request_orders(&mut a, "batch", op, (&b.orders[..2], &b.users[..2]), "expiry", shown, 2).await);
    ok(&decide(&mut bb, id, true, "fine").await);
    operation(&mut a, Some(op)).await;
    ok(&rollback(&mut a, b.orders[0], b.users[0], "expiry").await);

    // The shortest expiry the policy allows is a minute. Time is made to pass the honest
    // way a test can: the owner (the superuser here, outside every contract function) moves
    // this approval's expiry into the past. The check under test is the server's
    // clock_timestamp() against expires_at, which is what a minute's wait would exercise.
    sqlx::query("UPDATE approval_requests SET expires_at = clock_timestamp() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&t.pool)
        .await
        .expect("owner moves the expiry");
    let v = rollback(&mut a, b.orders[1], b.users[1], "expiry").await;
    refused(&v, "approval_required");
    assert_eq!(v["expired"], true, "{v}");
    b.assert_rolled_back(&t, &[0]).await;

    // A request nobody decided in time cannot be approved late.
    let op2 = Uuid::new_v4();
    let id2 = request_id(
        &request_orders(&mut a, "batch", op2, (&b.orders[1..], &b.users[1..]), "late", dec("4.444"), 2).await,
    );
    sqlx::query("UPDATE approval_requests SET expires_at = clock_timestamp() - interval '1 second' WHERE id = $1")
        .bind(id2)
        .execute(&t.pool)
        .await
        .expect("owner moves the expiry");
    refused(&decide(&mut bb, id2, true, "too late").await, "expired");
    assert_eq!(log_of(&t, id2).await, ["requested"]);
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}

#[tokio::test]
async fn nobody_decides_their_own_request_not_with_another_login_under_the_same_name() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 2).await;
    let (a_name, mut a) = login(&t, "appr_a", "incident_operator").await;
    let (a2_name, mut a2) = login(&t, "appr_a2", "incident_operator").await;
    let (d1_name, mut d1) = login(&t, "appr_d1", "incident_operator").await;
    let (d2_name, mut d2) = login(&t, "appr_d2", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "appr_b", "incident_operator").await;
    run(&mut a, "SET incident.operator = 'alice'").await;
    let shown = refunded_of(&t, &b.orders).await;
    let op = Uuid::new_v4();
    let id = request_id(&request_orders(&mut a, "batch", op, (&b.orders, &b.users), "self", shown, 2).await);

    // The same login, whatever name it claims.
    refused(&decide(&mut a, id, true, "looks fine to me").await, "self_approval");
    run(&mut a, "SET incident.operator = 'bob'").await;
    refused(&decide(&mut a, id, true, "looks fine to me").await, "self_approval");
    // Another login claiming the requester's name (recorded "alice (via a2)"), in any case,
    // or the requester's whole recorded name (cut at " (via ").
    let whole = format!("alice (via {a_name})");
    for claim in ["alice", "ALICE", whole.as_str()] {
        run(&mut a2, &format!("SET incident.operator = '{claim}'")).await;
        refused(&decide(&mut a2, id, true, "I am alice too").await, "self_approval");
    }
    // Two logins the owner registered for one person.
    sqlx::query("INSERT INTO operator_names (login, operator) VALUES ($1, 'Dana Whitfield'), ($2, 'Dana Whitfield')")
        .bind(&d1_name)
        .bind(&d2_name)
        .execute(&t.pool)
        .await
        .expect("register");
    run(&mut d1, "SET incident.operator = 'Dana Whitfield'").await;
    run(&mut d2, "SET incident.operator = 'Dana Whitfield'").await;
    let op_d = Uuid::new_v4();
    let id_d = request_id(
        &request_orders(&mut d1, "batch", op_d, (&b.orders, &b.users), "dana's", refunded_of(&t, &b.orders).await, 2)
            .await,
    );
    refused(&decide(&mut d2, id_d, true, "my other login").await, "self_approval");
    assert_eq!(log_of(&t, id).await, ["requested"], "nothing decided");
    assert_eq!(log_of(&t, id_d).await, ["requested"], "nothing decided");

    // Another person approves; the approval is still only the requester's to use.
    run(&mut bb, "SET incident.operator = 'bob'").await;
    ok(&decide(&mut bb, id, true, "checked").await);
    refused(&decide(&mut bb, id, false, "changed my mind").await, "already_decided");
    operation(&mut a, Some(op)).await;
    ok(&rollback(&mut a, b.orders[0], b.users[0], "self").await);
    ok(&rollback(&mut a, b.orders[1], b.users[1], "self").await);
    b.assert_rolled_back(&t, &[0, 1]).await;
    cleanup(&t, vec![(a_name, a), (a2_name, a2), (d1_name, d1), (d2_name, d2), (b_name, bb)]).await;
}

#[tokio::test]
async fn a_denied_request_refuses_and_only_the_requester_cancels() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 2).await;
    let (a_name, mut a) = login(&t, "appr_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "appr_b", "incident_operator").await;
    let shown = refunded_of(&t, &b.orders).await;

    let op = Uuid::new_v4();
    let id = request_id(&request_orders(&mut a, "batch", op, (&b.orders, &b.users), "denied", shown, 2).await);
    ok(&decide(&mut bb, id, false, "these are real trades, not duplicates").await);
    refused(&decide(&mut bb, id, true, "on second thought").await, "already_decided");
    refused(&cancel(&mut a, id, "withdrawn").await, "already_decided");
    operation(&mut a, Some(op)).await;
    let v = rollback(&mut a, b.orders[0], b.users[0], "denied").await;
    refused(&v, "approval_required");
    assert_eq!(v["decision"], "denied", "{v}");
    assert_eq!(log_of(&t, id).await, ["requested", "denied"]);

    let op2 = Uuid::new_v4();
    let id2 = request_id(&request_orders(&mut a, "batch", op2, (&b.orders, &b.users), "cancelled", shown, 2).await);
    refused(&cancel(&mut bb, id2, "not mine to cancel").await, "not_found");
    ok(&cancel(&mut a, id2, "filed by mistake").await);
    refused(&decide(&mut bb, id2, true, "too late").await, "already_decided");
    operation(&mut a, Some(op2)).await;
    refused(&rollback(&mut a, b.orders[0], b.users[0], "cancelled").await, "approval_required");
    assert_eq!(log_of(&t, id2).await, ["requested", "cancelled"]);
    b.assert_rolled_back(&t, &[]).await;
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}

#[tokio::test]
async fn a_request_whose_refund_is_not_the_servers_is_refused_scope_changed() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 3).await;
    let (a_name, mut a) = login(&t, "appr_a", "incident_operator").await;
    let shown = refunded_of(&t, &b.orders).await;
    assert_eq!(shown, dec("6.666"));

    let v =
        request_orders(&mut a, "batch", Uuid::new_v4(), (&b.orders, &b.users), "r", shown + dec("0.00000001"), 2).await;
    refused(&v, "scope_changed");
    assert_eq!(v["refunded"], "6.66600000", "the server says what it counts: {v}");
    // An order rolled back between what was shown and the request.
    ok(&rollback(&mut a, b.orders[0], b.users[0], "meanwhile").await);
    refused(
        &request_orders(&mut a, "batch", Uuid::new_v4(), (&b.orders, &b.users), "r", shown, 2).await,
        "scope_changed",
    );
    assert_eq!(count(&t, "SELECT count(*) FROM approval_requests").await, 0, "nothing filed");
    assert_eq!(count(&t, "SELECT count(*) FROM approval_log").await, 0, "nothing logged");
    b.assert_rolled_back(&t, &[0]).await;
    cleanup(&t, vec![(a_name, a)]).await;
}

/// Release `base` (a table) and `notes` on top of it (a column), maintenance on.
pub(crate) async fn two_releases(t: &TestDb) {
    for (name, deploy, revert, verify) in [
        (
            "base",
            "CREATE TABLE appr_t (id bigint PRIMARY KEY);",
            "DROP TABLE appr_t;",
            "SELECT id FROM appr_t WHERE false;",
        ),
        (
            "notes",
            "ALTER TABLE appr_t ADD COLUMN note text;",
            "ALTER TABLE appr_t DROP COLUMN note;",
            "SELECT note FROM appr_t WHERE false;",
        ),
    ] {
        let v: Value = sqlx::query_scalar("SELECT release_deploy($1, 'approvals', NULL, $2, $3, $4, NULL)")
            .bind(name)
            .bind(deploy)
            .bind(revert)
            .bind(verify)
            .fetch_one(&t.pool)
            .await
            .expect("release_deploy");
        ok(&v);
    }
    ok(&sqlx::query_scalar::<_, Value>("SELECT set_maintenance_mode(true, 'release rollback')")
        .fetch_one(&t.pool)
        .await
        .expect("maintenance"));
}

pub(crate) async fn release_rollback(
    c: &mut PgConnection,
    to: &str,
    reason: &str,
    dry: bool,
    op: Option<Uuid>,
) -> Value {
    sqlx::query_scalar("SELECT release_rollback($1, $2, false, $3, $4)")
        .bind(to)
        .bind(reason)
        .bind(dry)
        .bind(op)
        .fetch_one(&mut *c)
        .await
        .expect("release_rollback")
}

#[tokio::test]
async fn a_release_rollback_needs_an_approval_of_its_target_used_once() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true})).await;
    two_releases(&t).await;
    let (a_name, mut a) = login(&t, "appr_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "appr_b", "incident_operator").await;
    let reverts = || count(&t, "SELECT count(*) FROM release_reverts");

    refused(&release_rollback(&mut a, "base", "bad release", false, None).await, "approval_required");
    refused(&release_rollback(&mut a, "base", "bad release", false, Some(Uuid::new_v4())).await, "approval_required");
    // A rehearsal needs nobody.
    let dry = release_rollback(&mut a, "base", "rehearsal", true, None).await;
    ok(&dry);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(reverts().await, 0);

    // The requester's session settings do not change what its request covers (the drift in
    // it is read by _release_catalog, which pins its own settings).
    run(&mut a, "SET quote_all_identifiers = on; SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Pacific/Kiritimati'")
        .await;
    let op = Uuid::new_v4();
    refused(&request_other(&mut a, "release_rollback", op, Some("nonesuch"), "bad release").await, "invalid_argument");
    let id = request_id(&request_other(&mut a, "release_rollback", op, Some("base"), "bad release").await);
    refused(&release_rollback(&mut a, "base", "bad release", false, Some(op)).await, "approval_required");
    ok(&decide(&mut bb, id, true, "the release is what broke it").await);
    // Another reason, another target, another login: refused.
    refused(&release_rollback(&mut a, "base", "another reason", false, Some(op)).await, "approval_required");
    refused(&release_rollback(&mut a, "notes", "bad release", false, Some(op)).await, "approval_required");
    refused(&release_rollback(&mut bb, "base", "bad release", false, Some(op)).await, "approval_required");
    assert_eq!(reverts().await, 0);

    let v = release_rollback(&mut a, "base", "bad release", false, Some(op)).await;
    ok(&v);
    assert_eq!(v["approval_id"], id.to_string(), "{v}");
    assert_eq!(reverts().await, 1);
    assert_eq!(log_of(&t, id).await, ["requested", "approved", "used"]);

    // Used once: a release deployed again is not rolled back under the same approval.
    let again: Value = sqlx::query_scalar(
        "SELECT release_deploy('notes2', 'approvals', NULL, 'ALTER TABLE appr_t ADD COLUMN note2 text;', \
         'ALTER TABLE appr_t DROP COLUMN note2;', 'SELECT note2 FROM appr_t WHERE false;', NULL)",
    )
    .fetch_one(&t.pool)
    .await
    .expect("deploy");
    ok(&again);
    let v = release_rollback(&mut a, "base", "bad release", false, Some(op)).await;
    refused(&v, "approval_required");
    assert_eq!(v["used"], true, "{v}");
    assert_eq!(reverts().await, 1);
    assert_eq!(log_of(&t, id).await, ["requested", "approved", "used"], "used once, logged once");
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}

pub(crate) async fn open_breaker(c: &mut PgConnection) {
    let v: Value = sqlx::query_scalar("SELECT open_breaker('the ledger looks wrong', 'person')")
        .fetch_one(&mut *c)
        .await
        .expect("open_breaker");
    ok(&v);
}

pub(crate) async fn close_breaker(c: &mut PgConnection, reason: &str) -> Value {
    sqlx::query_scalar("SELECT close_breaker($1)").bind(reason).fetch_one(&mut *c).await.expect("close_breaker")
}

pub(crate) async fn breaker_open(t: &TestDb) -> bool {
    sqlx::query_scalar("SELECT open FROM circuit_breaker").fetch_one(&t.pool).await.expect("breaker")
}

#[tokio::test]
async fn closing_the_breaker_at_level_3_needs_an_approval_used_once() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true})).await;
    let (a_name, mut a) = login(&t, "appr_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "appr_b", "incident_operator").await;

    // Below Level 3 one person closes it.
    let _level2 = open_incident(&t, Level::Moderate).await;
    assert_eq!(open_level(&t).await, 2);
    open_breaker(&mut a).await;
    ok(&close_breaker(&mut a, "a false alarm").await);
    assert!(!breaker_open(&t).await);

    let _level3 = open_incident(&t, Level::Critical).await;
    assert_eq!(open_level(&t).await, 3);
    // A closed breaker: nothing to approve.
    refused(&request_other(&mut a, "breaker_close", Uuid::new_v4(), None, "early").await, "invalid_argument");
    open_breaker(&mut a).await;
    refused(&close_breaker(&mut a, "the ledger is fine").await, "approval_required");
    let op = Uuid::new_v4();
    refused(&request_other(&mut a, "breaker_close", op, Some("x"), "the ledger is fine").await, "invalid_argument");
    let id = request_id(&request_other(&mut a, "breaker_close", op, None, "the ledger is fine").await);
    operation(&mut a, Some(op)).await;
    refused(&close_breaker(&mut a, "the ledger is fine").await, "approval_required");
    ok(&decide(&mut bb, id, true, "I checked the ledger audit too").await);
    refused(&close_breaker(&mut a, "another reason").await, "approval_required");
    operation(&mut bb, Some(op)).await;
    refused(&close_breaker(&mut bb, "the ledger is fine").await, "approval_required");
    assert!(breaker_open(&t).await);
    let v = close_breaker(&mut a, "the ledger is fine").await;
    ok(&v);
    assert_eq!(v["approval_id"], id.to_string(), "{v}");
    assert!(!breaker_open(&t).await);

    // Used once.
    open_breaker(&mut a).await;
    let v = close_breaker(&mut a, "the ledger is fine").await;
    refused(&v, "approval_required");
    assert_eq!(v["used"], true, "{v}");
    assert!(breaker_open(&t).await);
    assert_eq!(log_of(&t, id).await, ["requested", "approved", "used"]);
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}

#[tokio::test]
async fn at_level_3_a_batch_past_its_first_order_and_a_group_need_an_approval() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true})).await;
    let b = book(&t, 3).await;
    let user = account(&t.pool, "1000").await;
    let tx = Uuid::new_v4();
    let group = [executed(&t.pool, user, "10", Some(tx)).await, executed(&t.pool, user, "10", Some(tx)).await];
    let (a_name, mut a) = login(&t, "appr_a", "incident_operator").await;
    let (b_name, mut bb) = login(&t, "appr_b", "incident_operator").await;
    let _level3 = open_incident(&t, Level::Critical).await;

    let op = Uuid::new_v4();
    operation(&mut a, Some(op)).await;
    ok(&rollback(&mut a, b.orders[0], b.users[0], "level 3").await);
    let v = rollback(&mut a, b.orders[1], b.users[1], "level 3").await;
    refused(&v, "approval_required");
    assert!(v["message"].as_str().unwrap_or("").contains("Level 3"), "{v}");
    let before = money_of(&t.pool, user).await;
    operation(&mut a, None).await;
    let v = group_rollback(&mut a, group[0], user, "level 3 group").await;
    refused(&v, "approval_required");
    assert!(v["message"].as_str().unwrap_or("").contains("every group rollback at Level 3"), "{v}");
    assert_eq!(money_of(&t.pool, user).await, before);

    // The group with its approval (filed under a new operation).
    let op2 = Uuid::new_v4();
    let shown = refunded_of(&t, &group).await;
    let id =
        request_id(&request_orders(&mut a, "group", op2, (&group, &[user, user]), "level 3 group", shown, 3).await);
    ok(&decide(&mut bb, id, true, "the whole group is a duplicate").await);
    operation(&mut a, Some(op2)).await;
    ok(&group_rollback(&mut a, group[0], user, "level 3 group").await);
    assert_eq!(money_of(&t.pool, user).await, (dec("1000"), dec("0")));
    for o in group {
        assert_eq!(db::rollback_audit_rows(&t.pool, o).await.expect("rows"), 1);
    }
    b.assert_rolled_back(&t, &[0]).await;
    cleanup(&t, vec![(a_name, a), (b_name, bb)]).await;
}

#[tokio::test]
async fn a_viewer_reads_the_policy_but_cannot_request_decide_cancel_or_set_it() {
    let t = test_db().await;
    set_policy(&t, json!({"enabled": true, "batch_orders": 1})).await;
    let b = book(&t, 2).await;
    let (a_name, mut a) = login(&t, "appr_a", "incident_operator").await;
    let (v_name, mut viewer) = login(&t, "appr_viewer", "incident_viewer").await;
    let shown = refunded_of(&t, &b.orders).await;
    let id = request_id(&request_orders(&mut a, "batch", Uuid::new_v4(), (&b.orders, &b.users), "r", shown, 2).await);

    let shown_policy: Value =
        sqlx::query_scalar("SELECT approval_policy_show()").fetch_one(&mut viewer).await.expect("a viewer reads it");
    assert_eq!(shown_policy["batch_orders"], 1, "{shown_policy}");
    assert_eq!(shown_policy["login"], v_name.as_str(), "{shown_policy}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM approval_requests")
        .fetch_one(&mut viewer)
        .await
        .expect("a viewer reads the requests");
    assert_eq!(rows, 1);

    for sql in [
        "SELECT decide_approval($1, true, 'viewer approves')",
        "SELECT cancel_approval($1, 'viewer cancels')",
        "SELECT request_approval('breaker_close', $1, NULL, NULL, NULL, 'viewer asks', 0, 3, NULL, NULL)",
        "SELECT set_approval_policy('{\"enabled\": false}') WHERE $1 IS NOT NULL",
    ] {
        let e = sqlx::query(sql).bind(id).execute(&mut viewer).await.expect_err(sql);
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    // The operator may not set the policy either.
    let e = sqlx::query("SELECT set_approval_policy('{\"enabled\": false}')")
        .execute(&mut a)
        .await
        .expect_err("the owner's alone");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
    assert_eq!(log_of(&t, id).await, ["requested"]);
    cleanup(&t, vec![(a_name, a), (v_name, viewer)]).await;
}
