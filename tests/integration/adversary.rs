//! Holes found by the adversarial review of migrations 8–10 (least privilege, execution
//! path, audit without locks), each reproduced on a real server: a rollback run from a
//! trigger counted twice, a checkpoint from a snapshot older than the audit's schema, a
//! stale-snapshot retry told a rolled-back order executed, accounts an engine session
//! could hide as drill accounts. Each failed on the schema up to migration 12 and holds
//! since migration 13.
use crate::security::{connect_as, drop_role, login_role};
use crate::support::db::*;
use incident_console::store::db;
use serde_json::Value;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// Both audits, sorted, as comparable text.
async fn both(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    let show = |v: Vec<incident_console::core::contract::Violation>| {
        let mut s: Vec<String> = v
            .into_iter()
            .map(|v| format!("{:?} {} {:?} {:?}", v.user_id, v.check_name, v.expected, v.actual))
            .collect();
        s.sort();
        s
    };
    (show(db::ledger_audit(pool).await.expect("audit")), show(db::ledger_audit_full(pool).await.expect("full audit")))
}

async fn run(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut *c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn json(c: &mut PgConnection, sql: &str, user: Uuid, key: &str) -> Result<Value, sqlx::Error> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).bind(user).bind(key).fetch_one(&mut *c).await
}

/// Hole 1 (record): `_rollback_locked_orders` still writes its own `book_changes` row, and
/// `book_changes_from_triggers_only` drops it only at trigger depth 0. An operator (or any
/// application that rolls back from a trigger, e.g. a queue table) calls the rollback from a
/// trigger on a temporary table: depth 1, the row is kept, and the statement triggers write
/// theirs too. The change is counted twice: the incremental audit reports violations the
/// full audit does not, and every incremental checkpoint carries them forward.
#[tokio::test]
async fn a_rollback_run_from_a_trigger_is_counted_once_by_the_incremental_audit() {
    let t = test_db().await;
    let u = account(&t.pool, "1000").await;
    let o = executed(&t.pool, u, "100", None).await;
    executed(&t.pool, u, "100", None).await;
    db::refresh_audit_checkpoint(&t.pool, true).await.expect("checkpoint");

    let operator = login_role(&t, "adv_op", Some("incident_operator")).await;
    let mut c = connect_as(&t, &operator).await;
    // Nothing but what every login may do: a temporary table, a function in pg_temp, a trigger.
    run(
        &mut c,
        "CREATE TEMP TABLE rollback_queue (order_id uuid, user_id uuid);
         CREATE FUNCTION pg_temp.rollback_queued() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM rollback_execute_order_atomic(NEW.order_id, NEW.user_id, 'queued rollback');
             RETURN NEW;
         END $$;
         CREATE TRIGGER rollback_queued AFTER INSERT ON rollback_queue
             FOR EACH ROW EXECUTE FUNCTION pg_temp.rollback_queued();",
    )
    .await;
    sqlx::query("INSERT INTO rollback_queue VALUES ($1, $2)").bind(o).bind(u).execute(&mut c).await.expect("queue");
    let status: String =
        sqlx::query_scalar("SELECT status FROM orders WHERE id = $1").bind(o).fetch_one(&t.pool).await.expect("x");
    assert_eq!(status, "rolled_back", "the rollback itself happened");

    let (incremental, full) = both(&t.pool).await;
    assert!(full.is_empty(), "the book is consistent: {full:?}");
    assert_eq!(incremental, full, "the incremental audit must agree with the full one");
    // And the next incremental checkpoint must not carry anything wrong forward.
    db::refresh_audit_checkpoint(&t.pool, false).await.expect("checkpoint");
    let (incremental, full) = both(&t.pool).await;
    assert_eq!(incremental, full, "after the next checkpoint");
    let _ = c.close().await;
    drop_role(&t, &operator).await;
}

/// Hole 2 (record): rows written before migration 10 have no xid, and the incremental audit
/// never counts a row without one: 0010 assumes "every checkpoint taken from now on sees
/// them". A checkpoint taken in a REPEATABLE READ transaction whose snapshot predates the
/// migration's commit does not see the ones committed after that snapshot, and nothing
/// later counts them: the incremental audit reports violations for ever (until a full
/// checkpoint), the full audit none.
#[tokio::test]
async fn a_checkpoint_from_a_snapshot_older_than_migration_10_misses_nothing() {
    let t = test_db().await;
    db::undo_to(&t.pool, 9).await.expect("down to 9");
    let u = account(&t.pool, "1000").await;
    executed(&t.pool, u, "100", None).await;

    let operator = login_role(&t, "adv_op", Some("incident_operator")).await;
    let mut c = connect_as(&t, &operator).await;
    // The operator's transaction takes its snapshot and touches none of the audited tables,
    // so the migration does not wait for it.
    run(&mut c, "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1").await;
    // Committed after that snapshot, before migration 10: no xid.
    executed(&t.pool, u, "100", None).await;
    db::migrate(&t.pool).await.expect("up to 10");

    let r: Value =
        sqlx::query_scalar("SELECT ledger_audit_checkpoint(true)").fetch_one(&mut c).await.expect("checkpoint");
    run(&mut c, "COMMIT").await;
    let (incremental, full) = both(&t.pool).await;
    assert!(full.is_empty(), "the book is consistent: {full:?}");
    // Either the checkpoint is refused, or it is exact.
    if r["success"] == true {
        assert_eq!(incremental, full, "the incremental audit must agree with the full one ({r})");
    }
    let _ = c.close().await;
    drop_role(&t, &operator).await;
}

/// Hole 3 (record, the client's view of money): the idempotency key is answered from the
/// caller's snapshot without a lock. A REPEATABLE READ (or SERIALIZABLE) retry whose snapshot
/// predates a rollback of its order is answered `success: true, duplicate: true, status:
/// executed` for an order that is no longer in effect, and commits. The README promises
/// `order_rolled_back` "whatever changed meanwhile"; the maintenance check solved the same
/// stale-snapshot problem with a row lock (40001). READ COMMITTED answers right.
#[tokio::test]
async fn a_retry_from_a_snapshot_older_than_the_rollback_is_not_told_the_order_executed() {
    let t = test_db().await;
    let u = account(&t.pool, "1000").await;
    let engine = login_role(&t, "adv_engine", Some("incident_engine")).await;
    let mut c = connect_as(&t, &engine).await;
    let call = "SELECT execute_order_atomic($1, 'EURUSD', 'market', 'buy', 100, 1.1, $2)";
    let mut key = String::new();
    for level in ["REPEATABLE READ", "SERIALIZABLE"] {
        key = Uuid::new_v4().to_string();
        let first = json(&mut c, call, u, &key).await.expect("execute");
        assert_eq!(first["success"], true, "{first}");
        let order = Uuid::parse_str(first["order_id"].as_str().expect("order id")).expect("uuid");
        // The client's retry transaction takes its snapshot; the operator rolls back; the retry.
        run(&mut c, &format!("BEGIN ISOLATION LEVEL {level}; SELECT 1")).await;
        let r = db::rollback_order(&t.pool, order, u, "undone while the client retried").await.expect("rollback");
        assert!(r.success, "{r:?}");
        let retry = json(&mut c, call, u, &key).await;
        let _ = sqlx::query("COMMIT").execute(&mut c).await;
        match retry {
            // A serialization failure is a fine answer: the client retries and is told.
            Err(e) => assert_eq!(crate::security::sqlstate(&e).as_deref(), Some("40001"), "{level}: {e}"),
            Ok(v) => assert_ne!(v["success"], true, "{level}: a rolled-back order answered as executed: {v}"),
        }
    }
    let v = json(&mut c, call, u, &key).await.expect("read committed retry");
    assert_eq!(v["error_code"], "order_rolled_back", "{v}");
    let _ = c.close().await;
    drop_role(&t, &engine).await;
}

/// Hole 4 (record): whether an account is a drill account (its orders left out of the
/// console's order lists, its rollbacks and failures out of the metrics and alerts) is
/// decided by a session setting of whoever creates it. Any engine login, or an engine whose
/// connection string carries `options=-c incident.drill=on`, opens real customer accounts
/// the incident view does not show.
#[tokio::test]
async fn an_engine_session_cannot_hide_accounts_as_drill_accounts() {
    let t = test_db().await;
    let engine = login_role(&t, "adv_engine", Some("incident_engine")).await;
    let mut c = connect_as(&t, &engine).await;
    run(&mut c, "SET incident.drill = 'on'").await;
    let u = Uuid::new_v4();
    let r: Value = sqlx::query_scalar("SELECT create_trading_account($1, 1000)")
        .bind(u)
        .fetch_one(&mut c)
        .await
        .expect("create account");
    let drill: Option<bool> = sqlx::query_scalar("SELECT is_drill FROM profiles WHERE id = $1")
        .bind(u)
        .fetch_optional(&t.pool)
        .await
        .expect("profile");
    assert!(r["success"] != true || drill == Some(false), "an engine login opened a drill account: {r}");
    let _ = c.close().await;
    drop_role(&t, &engine).await;
}
