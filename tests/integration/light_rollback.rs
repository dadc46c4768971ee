//! The lighter rollback (migration 21): its updates are heap-only, no index covers a column
//! it changes, and what the ledger's foreign keys guaranteed still holds without them (every
//! transfer names a profile, an order of that user, and an original it mirrors; nobody but
//! the owner writes the ledger; a profile is never deleted).

use crate::support::db::*;
use incident_console::store::db;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The columns a rollback changes, per table.
const CHANGED: [(&str, &[&str]); 2] = [
    ("orders", &["status", "rolled_back_at", "rolled_back_reason", "updated_at"]),
    ("positions", &["status", "closed_at"]),
];

/// Indexes of `table` that cover one of `columns`: as a key column, in an expression, or in
/// a partial index's predicate (any of which makes an update that changes it not HOT).
async fn indexes_covering(t: &TestDb, table: &str, columns: &[&str]) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT i.indexrelid::regclass::text FROM pg_index i \
         WHERE i.indrelid = $1::regclass AND ( \
             EXISTS (SELECT 1 FROM unnest(i.indkey) k JOIN pg_attribute a \
                     ON a.attrelid = i.indrelid AND a.attnum = k WHERE a.attname = ANY ($2)) \
             OR EXISTS (SELECT 1 FROM unnest($2::text[]) c \
                        WHERE coalesce(pg_get_expr(i.indexprs, i.indrelid), '') ~ ('\\m' || c || '\\M') \
                           OR coalesce(pg_get_expr(i.indpred, i.indrelid), '') ~ ('\\m' || c || '\\M'))) \
         ORDER BY 1",
    )
    .bind(table)
    .bind(columns.iter().map(|c| c.to_string()).collect::<Vec<_>>())
    .fetch_all(&t.pool)
    .await
    .expect("indexes")
}

#[tokio::test]
async fn no_index_covers_a_column_a_rollback_changes() {
    let t = test_db().await;
    for (table, columns) in CHANGED {
        assert_eq!(indexes_covering(&t, table, columns).await, Vec::<String>::new(), "{table}");
    }
    // The check above sees such an index when there is one.
    sqlx::raw_sql("CREATE INDEX light_probe ON positions (user_id) WHERE status = 'open'")
        .execute(&t.pool)
        .await
        .expect("probe index");
    assert_eq!(indexes_covering(&t, "positions", &["status"]).await, ["light_probe"]);
    // Room on every page for a row's one update.
    let fillfactors: Vec<(String, Option<Vec<String>>)> =
        sqlx::query_as("SELECT relname::text, reloptions FROM pg_class WHERE oid IN ('orders'::regclass, 'positions'::regclass) ORDER BY 1")
            .fetch_all(&t.pool)
            .await
            .expect("reloptions");
    for (table, options) in fillfactors {
        assert_eq!(options, Some(vec!["fillfactor=85".to_string()]), "{table}");
    }
}

/// The counts of the current transaction: (updates, of which heap-only) of `table`.
async fn xact_updates(c: &mut PgConnection, table: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT pg_stat_get_xact_tuples_updated($1::regclass), pg_stat_get_xact_tuples_hot_updated($1::regclass)",
    )
    .bind(table)
    .fetch_one(c)
    .await
    .expect("xact stats")
}

#[tokio::test]
async fn a_rollback_updates_its_order_and_position_heap_only() {
    let t = test_db().await;
    let user = account(&t.pool, "100000").await;
    let single = executed(&t.pool, user, "1000", None).await;
    let group = Uuid::new_v4();
    let (g1, g2) =
        (executed(&t.pool, user, "1000", Some(group)).await, executed(&t.pool, user, "2000", Some(group)).await);
    let chunk = [executed(&t.pool, user, "300", None).await, executed(&t.pool, user, "400", None).await];

    let mut c = t.conn().await;
    let mut tx = c.begin().await.expect("begin");
    let r = db::rollback_order(&mut *tx, single, user, "heap only").await.expect("single");
    assert!(r.success, "{r:?}");
    let r = db::rollback_group(&mut *tx, g1, user, "heap only").await.expect("group");
    assert!(r.success, "{r:?}");
    let answers = db::rollback_orders(&mut *tx, &chunk, &[user, user], "heap only").await.expect("chunk");
    assert_eq!(answers.len(), 2);
    for table in ["orders", "positions", "profiles"] {
        let (updated, hot) = xact_updates(&mut tx, table).await;
        // Five orders; the profile once per call (the chunk's orders are a call each).
        let expected = if table == "profiles" { 4 } else { 5 };
        assert_eq!((updated, hot), (expected, expected), "{table}: every update heap-only");
    }
    tx.commit().await.expect("commit");
    for o in [single, g1, g2, chunk[0], chunk[1]] {
        assert_eq!(db::rollback_audit_rows(&t.pool, o).await.expect("rows"), 1, "{o}");
    }
    assert_eq!(money_of(&t.pool, user).await, (dec("100000"), dec("0")));
    assert_consistent(&t.pool).await;
}

/// Ledger rows that break what the foreign keys used to guarantee (and more: a transfer
/// names its order's user, a reversal mirrors an original of the same order).
const BROKEN_REFERENCES: &str = "SELECT count(*) FROM ledger_transfers t \
     WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.id = t.user_id) \
        OR (t.order_id IS NOT NULL \
            AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = t.order_id AND o.user_id = t.user_id)) \
        OR (t.reverses_id IS NOT NULL AND NOT EXISTS ( \
            SELECT 1 FROM ledger_transfers o WHERE o.id = t.reverses_id AND o.reverses_id IS NULL \
              AND o.user_id = t.user_id AND o.order_id = t.order_id AND o.amount = t.amount \
              AND o.debit_account = t.credit_account AND o.credit_account = t.debit_account))";

#[tokio::test]
async fn the_ledger_references_what_its_foreign_keys_guaranteed_after_every_kind_of_rollback() {
    let t = test_db().await;
    let fks: Vec<String> = sqlx::query_scalar(
        "SELECT conname::text FROM pg_constraint WHERE contype = 'f' \
         AND conrelid IN ('ledger_transfers'::regclass, 'daily_pnl_tracking'::regclass)",
    )
    .fetch_all(&t.pool)
    .await
    .expect("foreign keys");
    assert!(fks.is_empty(), "{fks:?}");

    let (alice, bob) = (account(&t.pool, "100000").await, account(&t.pool, "100000").await);
    let group = Uuid::new_v4();
    let a: Vec<Uuid> = vec![
        executed(&t.pool, alice, "1000", None).await,
        executed(&t.pool, alice, "2000", Some(group)).await,
        executed(&t.pool, alice, "3000", Some(group)).await,
        executed(&t.pool, alice, "4000", None).await,
    ];
    let b = executed(&t.pool, bob, "5000", None).await;
    assert!(db::rollback_order(&t.pool, a[0], alice, "single").await.expect("single").success);
    assert!(db::rollback_group(&t.pool, a[1], alice, "group").await.expect("group").success);
    // Refused: another user's order, one already rolled back; then a chunk with both users.
    assert!(!db::rollback_order(&t.pool, b, alice, "not hers").await.expect("refused").success);
    assert!(!db::rollback_order(&t.pool, a[0], alice, "again").await.expect("refused").success);
    db::rollback_orders(&t.pool, &[a[3], b], &[alice, bob], "chunk").await.expect("chunk");

    assert_eq!(count(&t, BROKEN_REFERENCES).await, 0);
    assert_eq!(count(&t, "SELECT count(*) FROM ledger_transfers WHERE kind = 'reversal'").await, 10);
    assert_eq!(
        count(&t, "SELECT count(*) FROM daily_pnl_tracking d WHERE NOT EXISTS (SELECT 1 FROM profiles p WHERE p.id = d.user_id)")
            .await,
        0
    );
    assert_eq!(money_of(&t.pool, alice).await, (dec("100000"), dec("0")));
    assert_eq!(money_of(&t.pool, bob).await, (dec("100000"), dec("0")));
    assert_consistent(&t.pool).await;

    // The check above sees a broken reference when there is one (the owner's direct insert,
    // in a transaction rolled back).
    let mut tx = t.pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id) \
         VALUES ($1, 'user_cash', 'user_margin', 1, 'margin_lock', $2)",
    )
    .bind(bob)
    .bind(a[3])
    .execute(&mut *tx)
    .await
    .expect("direct insert as the superuser");
    let n: i64 = sqlx::query_scalar(BROKEN_REFERENCES).fetch_one(&mut *tx).await.expect("count");
    assert_eq!(n, 1);
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn nobody_but_the_owner_writes_the_ledger_and_a_profile_is_never_deleted() {
    let t = test_db().await;
    for role in ["incident_viewer", "incident_operator", "incident_engine"] {
        for (table, privilege) in [
            ("ledger_transfers", "INSERT"),
            ("daily_pnl_tracking", "INSERT"),
            ("profiles", "INSERT"),
            ("profiles", "DELETE"),
            ("orders", "UPDATE"),
        ] {
            let granted: bool = sqlx::query_scalar("SELECT has_table_privilege($1::name, $2::regclass, $3)")
                .bind(role)
                .bind(table)
                .bind(privilege)
                .fetch_one(&t.pool)
                .await
                .expect("privilege");
            assert!(!granted, "{role} may {privilege} {table}");
        }
    }
    let user = account(&t.pool, "1000").await;
    let print = fingerprint(&t.pool).await;
    for sql in ["DELETE FROM profiles WHERE id = $1", "TRUNCATE profiles CASCADE"] {
        let q = sqlx::query(sql);
        let q = if sql.contains("$1") { q.bind(user) } else { q };
        let err = q.execute(&t.pool).await.expect_err("a profile is never deleted, even by the superuser");
        let code: Option<String> = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{sql}: {err}");
    }
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_consistent(&t.pool).await;
}
