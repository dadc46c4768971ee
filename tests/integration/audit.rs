//! The ledger audit, whole-book and incremental from a checkpoint, must find the same
//! violations as a recomputation from the tables alone, whatever happened in between.

use crate::support::db::*;
use incident_console::store::db;
use sqlx::PgPool;
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

async fn checkpoint(pool: &PgPool, full: bool) -> incident_console::core::contract::CheckpointInfo {
    db::refresh_audit_checkpoint(pool, full).await.expect("checkpoint")
}

#[tokio::test]
async fn incremental_and_full_agree_on_a_clean_book_through_checkpoints() {
    let t = test_db().await;
    let mut users = Vec::new();
    for _ in 0..5 {
        users.push(account(&t.pool, "10000").await);
    }
    let mut orders = Vec::new();
    for (i, &u) in users.iter().enumerate() {
        orders.push((executed(&t.pool, u, &format!("{}", 1000 + i), Some(Uuid::new_v4())).await, u));
    }
    assert_eq!(both(&t.pool).await, (vec![], vec![]));
    let first = checkpoint(&t.pool, false).await;
    assert!(first.full, "the first checkpoint is built from the tables");
    assert_eq!(first.users, 5);

    // Activity after the checkpoint: rollbacks, new orders, a new account.
    for &(o, u) in &orders[..2] {
        assert!(db::rollback_order(&t.pool, o, u, "r").await.expect("rollback").success);
    }
    let late = account(&t.pool, "500").await;
    executed(&t.pool, late, "10", None).await;
    executed(&t.pool, users[4], "700", None).await;
    assert_eq!(both(&t.pool).await, (vec![], vec![]));

    // A checkpoint built from the previous one, then more activity.
    let second = checkpoint(&t.pool, false).await;
    assert!(!second.full);
    assert_eq!(second.users, 6);
    assert!(db::rollback_order(&t.pool, orders[3].0, orders[3].1, "r").await.expect("rollback").success);
    assert_eq!(both(&t.pool).await, (vec![], vec![]));

    // The incremental checkpoint holds the same figures a full one would: compared as
    // numbers, a full checkpoint taken now differs only for the user rolled back since.
    let third = checkpoint(&t.pool, true).await;
    assert!(third.full);
    let differ: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(a.user_id, b.user_id)::text \
         FROM (SELECT * FROM ledger_audit_checkpoint_users WHERE checkpoint_id = $1) a \
         FULL JOIN (SELECT * FROM ledger_audit_checkpoint_users WHERE checkpoint_id = $2) b USING (user_id) \
         WHERE (a.cash, a.margin, a.house, a.taken, a.given_back, a.cost_executed, a.cost_rolled_back, a.n_executed, \
                a.n_rolled_back, a.open_margin, a.n_live, a.n_positions_rolled_back, a.n_rollback_rows) \
           IS DISTINCT FROM \
               (b.cash, b.margin, b.house, b.taken, b.given_back, b.cost_executed, b.cost_rolled_back, b.n_executed, \
                b.n_rolled_back, b.open_margin, b.n_live, b.n_positions_rolled_back, b.n_rollback_rows) \
         ORDER BY 1",
    )
    .bind(second.checkpoint_id)
    .bind(third.checkpoint_id)
    .fetch_all(&t.pool)
    .await
    .expect("figures");
    assert_eq!(differ, vec![orders[3].1.to_string()], "only the user rolled back since differs");
}

#[tokio::test]
async fn tampering_after_a_checkpoint_is_found_by_the_incremental_audit() {
    let t = test_db().await;
    let a = account(&t.pool, "10000").await;
    let b = account(&t.pool, "10000").await;
    let oa = executed(&t.pool, a, "1000", None).await;
    let ob = executed(&t.pool, b, "2000", None).await;
    checkpoint(&t.pool, false).await;

    // Each tampering is made directly by the superuser, the way a bad script would.
    let cases: Vec<(&str, &str)> = vec![
        ("UPDATE profiles SET balance = balance + 1 WHERE id = $1", "balance_matches_ledger"),
        (
            "UPDATE orders SET status = 'rolled_back', rolled_back_at = now(), rolled_back_reason = 'forged' \
             WHERE user_id = $1 AND status = 'executed'",
            "rolled_back_orders_have_one_audit_row",
        ),
        ("UPDATE positions SET margin_used = margin_used + 1 WHERE user_id = $1", "margin_matches_open_positions"),
        (
            "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind) \
             VALUES ($1, 'house_clearing', 'user_cash', 5, 'deposit')",
            "balance_matches_ledger",
        ),
    ];
    for (sql, check) in cases {
        let t = test_db().await;
        let u = account(&t.pool, "10000").await;
        executed(&t.pool, u, "1000", None).await;
        checkpoint(&t.pool, false).await;
        sqlx::query(sql).bind(u).execute(&t.pool).await.expect(sql);
        let (incremental, full) = both(&t.pool).await;
        assert!(!full.is_empty(), "{sql}: the full audit must see it");
        assert_eq!(incremental, full, "{sql}");
        assert!(incremental.iter().any(|v| v.contains(check)), "{sql}: {incremental:?}");
    }
    // The first database was left alone: still clean, both ways.
    let _ = (oa, ob);
    assert_eq!(both(&t.pool).await, (vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_taken_during_rollbacks_miss_nothing() {
    let t = test_db().await;
    let mut work = Vec::new();
    for _ in 0..8 {
        let u = account(&t.pool, "100000").await;
        for _ in 0..25 {
            work.push((executed(&t.pool, u, "500", None).await, u));
        }
    }
    checkpoint(&t.pool, false).await;
    // Roll back everything on four connections while checkpoints are being taken.
    let chunks: Vec<Vec<(Uuid, Uuid)>> = work.chunks(50).map(|c| c.to_vec()).collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let url = t.url.clone();
        tasks.push(tokio::spawn(async move {
            let pool = PgPool::connect(&url).await.expect("pool");
            for (o, u) in chunk {
                loop {
                    match db::rollback_order(&pool, o, u, "r").await {
                        Ok(r) => {
                            assert!(r.success, "{r:?}");
                            break;
                        }
                        Err(e) if incident_console::store::db::is_retryable(e.sqlstate()) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }));
    }
    let mut checkpoints = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        checkpoint(&t.pool, false).await;
        checkpoints += 1;
        let (incremental, full) = both(&t.pool).await;
        assert_eq!(incremental, full);
        assert!(full.is_empty(), "{full:?}");
    }
    for task in tasks {
        task.await.expect("worker");
    }
    assert!(checkpoints >= 1);
    checkpoint(&t.pool, false).await;
    assert_eq!(both(&t.pool).await, (vec![], vec![]));
    let rolled: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'rolled_back'")
        .fetch_one(&t.pool)
        .await
        .expect("count");
    assert_eq!(rolled, 200);
}

#[tokio::test]
async fn a_change_right_after_a_rollback_in_the_same_transaction_is_still_recorded() {
    let t = test_db().await;
    let u = account(&t.pool, "10000").await;
    let a = executed(&t.pool, u, "1000", None).await;
    let b = executed(&t.pool, u, "2000", None).await;
    checkpoint(&t.pool, false).await;
    // The rollback writes its own change row and tells the triggers to stand aside; that
    // must last for its statement only, not for the rest of the transaction.
    let mut tx = t.pool.begin().await.expect("begin");
    assert!(db::rollback_order(&mut *tx, a, u, "r").await.expect("rollback").success);
    sqlx::query("UPDATE orders SET total_cost = total_cost + 1 WHERE id = $1")
        .bind(b)
        .execute(&mut *tx)
        .await
        .expect("tamper");
    tx.commit().await.expect("commit");
    let (incremental, full) = both(&t.pool).await;
    assert!(full.iter().any(|v| v.contains("execution_transfers_match_orders")), "{full:?}");
    assert_eq!(incremental, full);
}
