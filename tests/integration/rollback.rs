//! The rollback functions against a real PostgreSQL: results, refusals, and money.

use crate::support::db::*;
use incident_console::store::db;
use serde_json::Value;
use uuid::Uuid;

#[tokio::test]
async fn single_rollback_restores_the_account_exactly_and_a_second_call_changes_nothing() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let before = money_of(&t.pool, user).await;
    let order = executed(&t.pool, user, "1000", None).await;
    let after_exec = money_of(&t.pool, user).await;
    // 1000 x 1.1 = 1100 notional: margin 2 % = 22, commission 0.02 % = 0.22
    assert_eq!(after_exec, (dec("9977.78"), dec("22")));

    let r = db::rollback_order(&t.pool, order, user, "duplicate").await.expect("rollback");
    assert!(r.success, "{r:?}");
    assert_eq!(r.refunded, Some(dec("22.22")));
    assert_eq!(r.margin_released, Some(dec("22")));
    assert_eq!(money_of(&t.pool, user).await, before);

    let print = fingerprint(&t.pool).await;
    let again = db::rollback_order(&t.pool, order, user, "duplicate").await.expect("second rollback");
    assert!(!again.success);
    assert_eq!(again.error_code.as_deref(), Some("already_rolled_back"));
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_eq!(db::rollback_audit_rows(&t.pool, order).await.expect("rows"), 1);
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn group_rollback_twice_refunds_once() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let tx = Uuid::new_v4();
    let a = executed(&t.pool, user, "1000", Some(tx)).await;
    let _b = executed(&t.pool, user, "2000", Some(tx)).await;
    let r = db::rollback_group(&t.pool, a, user, "duplicate").await.expect("group rollback");
    assert!(r.success, "{r:?}");
    assert_eq!(r.order_ids.as_ref().map(Vec::len), Some(2));
    assert_eq!(money_of(&t.pool, user).await, (dec("10000"), dec("0")));

    let print = fingerprint(&t.pool).await;
    let again = db::rollback_group(&t.pool, a, user, "duplicate").await.expect("second group rollback");
    assert_eq!(again.error_code.as_deref(), Some("already_rolled_back"), "{again:?}");
    assert_eq!(fingerprint(&t.pool).await, print);
    // ... and through the single-order function too.
    let single = db::rollback_order(&t.pool, a, user, "duplicate").await.expect("single after group");
    assert_eq!(single.error_code.as_deref(), Some("already_rolled_back"));
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn a_failed_order_inside_a_group_is_left_alone() {
    let t = test_db().await;
    let user = account(&t.pool, "1000").await;
    let tx = Uuid::new_v4();
    let a = executed(&t.pool, user, "1000", Some(tx)).await;
    let failed = execute(&t.pool, user, "EURUSD", "buy", "10000000", "1.1", Some(tx)).await;
    assert_eq!(failed["error_code"], "insufficient_funds", "{failed}");
    let failed_id = Uuid::parse_str(failed["order_id"].as_str().unwrap_or_default()).expect("failed order id");

    let r = db::rollback_group(&t.pool, a, user, "duplicate").await.expect("group rollback");
    assert!(r.success, "{r:?}");
    assert_eq!(r.order_ids, Some(vec![a]));
    assert_eq!(r.refunded, Some(dec("22.22")), "the failed order moved no money and gets none back");
    let skipped = r.skipped.unwrap_or_default();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["order_id"], failed_id.to_string());
    assert_eq!(money_of(&t.pool, user).await, (dec("1000"), dec("0")));

    let rows = db::find_orders(
        &t.pool,
        &incident_console::core::orders::OrderListing {
            filter: incident_console::core::orders::ResolvedQuery::order(failed_id),
            limit: 1,
            ..Default::default()
        },
    )
    .await
    .expect("find");
    assert_eq!(rows[0].status, "failed");
    assert!(rows[0].failure_reason.as_deref().is_some_and(|f| f.starts_with("insufficient_funds")), "reason kept");

    // The failed order on its own is not rollbackable, and nothing changes.
    let print = fingerprint(&t.pool).await;
    let r = db::rollback_order(&t.pool, failed_id, user, "x").await.expect("rollback failed order");
    assert_eq!(r.error_code.as_deref(), Some("not_rollbackable"));
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_consistent(&t.pool).await;
}

/// Order, user, reason, expected error code.
type Case<'a> = (Option<Uuid>, Option<Uuid>, Option<&'a str>, &'a str);

async fn refusal(
    t: &TestDb,
    sql: &'static str,
    order: Option<Uuid>,
    user: Option<Uuid>,
    reason: Option<&str>,
) -> Value {
    sqlx::query_scalar::<_, Value>(sql)
        .bind(order)
        .bind(user)
        .bind(reason.map(str::to_string))
        .fetch_one(&t.pool)
        .await
        .expect("call")
}

#[tokio::test]
async fn every_refusal_has_its_code_and_changes_nothing() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let other = account(&t.pool, "10000").await;
    let order = executed(&t.pool, user, "1000", None).await;
    let grouped = executed(&t.pool, user, "1000", Some(Uuid::new_v4())).await;
    let huge = "x".repeat(10 * 1024 * 1024);
    let print = fingerprint(&t.pool).await;

    for f in ["SELECT rollback_execute_order_atomic($1, $2, $3)", "SELECT rollback_order_execution($1, $2, $3)"] {
        let target = if f.contains("order_execution") { grouped } else { order };
        let cases: Vec<Case> = vec![
            (Some(Uuid::new_v4()), Some(user), Some("r"), "order_not_found"),
            (Some(target), Some(other), Some("r"), "order_not_found"),
            (Some(target), Some(user), Some(""), "invalid_reason"),
            (Some(target), Some(user), Some("   \n\t"), "invalid_reason"),
            (Some(target), Some(user), None, "invalid_reason"),
            (Some(target), Some(user), Some(huge.as_str()), "invalid_reason"),
            (None, Some(user), Some("r"), "invalid_argument"),
            (Some(target), None, Some("r"), "invalid_argument"),
        ];
        for (o, u, r, code) in cases {
            let v = refusal(&t, f, o, u, r).await;
            assert_eq!(v["success"], false, "{f} {v}");
            assert_eq!(v["error_code"], code, "{f}: {v}");
            assert!(v.get("message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()));
        }
    }
    // A group rollback of an order without transaction id.
    let v = refusal(&t, "SELECT rollback_order_execution($1, $2, $3)", Some(order), Some(user), Some("r")).await;
    assert_eq!(v["error_code"], "no_transaction_id", "{v}");
    assert_eq!(fingerprint(&t.pool).await, print, "no refusal may change anything");

    // A malformed UUID never reaches the function.
    let err = sqlx::query("SELECT rollback_execute_order_atomic('test-order-uuid', $1, 'r')")
        .bind(user)
        .execute(&t.pool)
        .await
        .expect_err("malformed uuid must fail");
    let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("22P02"));
    assert_eq!(fingerprint(&t.pool).await, print);
}

#[tokio::test]
async fn pending_and_executing_orders_are_refused() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let tx = Uuid::new_v4();
    let executed_in_group = executed(&t.pool, user, "1000", Some(tx)).await;
    let mut ids = Vec::new();
    for status in ["pending", "executing", "cancelled"] {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO orders (id, user_id, symbol, order_type, side, quantity, price, status, idempotency_key, transaction_id) \
             VALUES ($1, $2, 'EURUSD', 'market', 'buy', 1, 1.1, $3, $4, $5)",
        )
        .bind(id)
        .bind(user)
        .bind(status)
        .bind(format!("k-{id}"))
        .bind(if status == "pending" { Some(tx) } else { None })
        .execute(&t.pool)
        .await
        .expect("insert order");
        ids.push((id, status));
    }
    let print = fingerprint(&t.pool).await;
    for (id, status) in &ids {
        let r = db::rollback_order(&t.pool, *id, user, "r").await.expect("rollback");
        assert_eq!(r.error_code.as_deref(), Some("not_rollbackable"), "{status}: {r:?}");
        assert_eq!(r.status.as_deref(), Some(*status));
    }
    // A group with a pending order is refused as a whole: the executor may still be on it.
    let r = db::rollback_group(&t.pool, executed_in_group, user, "r").await.expect("group");
    assert_eq!(r.error_code.as_deref(), Some("not_rollbackable"), "{r:?}");
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_eq!(
        sqlx::query_scalar::<_, i32>("SELECT check_active_transactions($1)").bind(user).fetch_one(&t.pool).await.ok(),
        Some(2)
    );
}

#[tokio::test]
async fn an_executed_order_without_a_position_cannot_exist() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let order = executed(&t.pool, user, "1000", None).await;
    let print = fingerprint(&t.pool).await;
    let err = sqlx::query("UPDATE orders SET position_id = NULL WHERE id = $1")
        .bind(order)
        .execute(&t.pool)
        .await
        .expect_err("an executed order must keep its position");
    assert_eq!(err.as_database_error().and_then(|e| e.code()).as_deref(), Some("23514"));
    let err = sqlx::query("DELETE FROM positions WHERE order_id = $1")
        .bind(order)
        .execute(&t.pool)
        .await
        .expect_err("no deleting");
    // Positions, like orders, are never deleted: refused before any foreign key is looked at.
    assert_eq!(err.as_database_error().and_then(|e| e.code()).as_deref(), Some("42501"));
    assert_eq!(fingerprint(&t.pool).await, print);

    // A position closed by the trader is refused, not half-refunded.
    sqlx::query("UPDATE positions SET status = 'closed', closed_at = now() WHERE order_id = $1")
        .bind(order)
        .execute(&t.pool)
        .await
        .expect("close position");
    let print = fingerprint(&t.pool).await;
    let r = db::rollback_order(&t.pool, order, user, "r").await.expect("rollback");
    assert_eq!(r.error_code.as_deref(), Some("not_rollbackable"), "{r:?}");
    assert_eq!(fingerprint(&t.pool).await, print);
}

#[tokio::test]
async fn precheck_and_postcheck_prove_a_rollback_and_catch_a_wrong_one() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let tx = Uuid::new_v4();
    let a = executed(&t.pool, user, "1000", Some(tx)).await;
    let _b = executed(&t.pool, user, "3000", Some(tx)).await;
    let pre = db::precheck(&t.pool, a, user).await.expect("precheck");
    assert!(pre.ready, "{pre:?}");
    let f = pre.figures().expect("figures");
    assert_eq!(f.expected_refund, dec("22.22"));
    assert_eq!(f.group.expected_refund, dec("88.88"));
    assert_eq!(f.group.order_ids.len(), 2);
    let baseline = pre.baseline.clone().expect("baseline");

    let operation = Uuid::new_v4();
    let r = db::rollback_with_postcheck(&t.pool, a, user, "dup", &baseline, true, operation).await.expect("rollback");
    assert!(r.rollback.success);
    // Both orders' audit rows name the operation (the proof when a reply is lost), and the
    // setting did not outlive the call.
    let tagged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_audit_log WHERE action = 'order_rolled_back' AND batch_id = $1")
            .bind(operation)
            .fetch_one(&t.pool)
            .await
            .expect("count");
    assert_eq!(tagged, 2);
    let left: Option<String> = sqlx::query_scalar("SELECT current_setting('incident.batch_id', true)")
        .fetch_one(&t.pool)
        .await
        .expect("setting");
    assert!(left.unwrap_or_default().is_empty());
    let post = r.postcheck.expect("postcheck");
    assert!(post.successful, "{post:?}");
    assert_eq!(post.mode.as_deref(), Some("group"));

    // The same baseline checked later still passes; a doctored one fails on money.
    assert!(db::postcheck(&t.pool, a, user, &baseline).await.expect("postcheck").successful);
    let mut doctored = baseline.clone();
    doctored["group"]["expected_refund"] = Value::from("88.87");
    let p = db::postcheck(&t.pool, a, user, &doctored).await.expect("postcheck");
    assert!(!p.successful);
    let failed: Vec<_> = p.checks.iter().filter(|c| !c.passed).map(|c| c.check.as_str()).collect();
    assert_eq!(failed, vec!["balance_restored"]);

    // A baseline of another order, or garbage, is refused.
    let mut other = baseline.clone();
    other["order_id"] = Value::from(Uuid::new_v4().to_string());
    assert_eq!(
        db::postcheck(&t.pool, a, user, &other).await.expect("pc").error_code.as_deref(),
        Some("invalid_baseline")
    );
    let mut garbage = baseline.clone();
    garbage["balance"] = Value::from("1e400");
    assert_eq!(
        db::postcheck(&t.pool, a, user, &garbage).await.expect("pc").error_code.as_deref(),
        Some("invalid_baseline")
    );

    // Pre-check of a rolled-back order is not ready and says why.
    let pre = db::precheck(&t.pool, a, user).await.expect("precheck");
    assert!(!pre.ready);
    assert!(pre.checks.iter().any(|c| c.check == "order_executed" && !c.passed));
}

#[tokio::test]
async fn maintenance_mode_stops_new_orders() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let r = db::set_maintenance(&t.pool, true, "incident 42").await.expect("on");
    assert_eq!(r["success"], true, "{r}");
    let print = fingerprint(&t.pool).await;
    let refused = execute(&t.pool, user, "EURUSD", "buy", "1", "1.1", None).await;
    assert_eq!(refused["error_code"], "maintenance_mode", "{refused}");
    assert_eq!(fingerprint(&t.pool).await, print);
    let state = db::maintenance_state(&t.pool).await.expect("state");
    assert!(state.maintenance_mode && state.maintenance_since.is_some());
    let r = db::set_maintenance(&t.pool, true, "").await.expect("empty reason");
    assert_eq!(r["error_code"], "invalid_reason");
    db::set_maintenance(&t.pool, false, "resolved").await.expect("off");
    assert_eq!(execute(&t.pool, user, "EURUSD", "buy", "1", "1.1", None).await["success"], true);
}

#[tokio::test]
async fn the_same_idempotency_key_executes_once() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let o = db::NewOrder {
        user_id: user,
        symbol: "EURUSD",
        order_type: "market",
        side: "sell",
        quantity: dec("1000"),
        price: dec("1.1"),
        idempotency_key: "k1",
        transaction_id: None,
    };
    let first = db::execute_order(&t.pool, &o).await.expect("first");
    let print = fingerprint(&t.pool).await;
    let second = db::execute_order(&t.pool, &o).await.expect("second");
    assert_eq!(first["order_id"], second["order_id"]);
    assert_eq!(second["duplicate"], true);
    assert_eq!(fingerprint(&t.pool).await, print);
}
