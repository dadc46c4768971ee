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

/// The full audit recomputes every figure from the tables (`_audit_figures`, migration 22
/// runs it without JIT and with the memory its aggregates need); an audit from a checkpoint
/// taken on the empty book computes them apart (book changes and transfers since). Each
/// violation planted below must be found by the full audit, with the same figures, to the
/// decimal place, as that one, and by the audit of the accounts concerned.
#[tokio::test]
async fn the_full_audit_finds_every_planted_violation_with_the_figures_of_the_incremental_one() {
    let t = test_db().await;
    let first = checkpoint(&t.pool, true).await;
    assert_eq!(first.users, 0, "the checkpoint is taken on the empty book");

    // Ten accounts with executions; one rolled back; one account that only has its deposit
    // (its margin is a sum that no transfer touched: 0, not 0.00000000).
    let mut users = Vec::new();
    for i in 0..10 {
        let u = account(&t.pool, "100000").await;
        let o = executed(&t.pool, u, &format!("{}", 1000 + 100 * i), None).await;
        executed(&t.pool, u, "700", None).await;
        users.push((u, o));
    }
    let rolled = users[9];
    assert!(db::rollback_order(&t.pool, rolled.1, rolled.0, "r").await.expect("rollback").success);
    let idle = account(&t.pool, "50").await;
    assert_eq!(both(&t.pool).await, (vec![], vec![]));

    // One tampering per account, each made directly by the superuser.
    let plants: Vec<(usize, &str, &[&str])> = vec![
        (
            0,
            "UPDATE profiles SET balance = balance + 1 WHERE id = $1",
            &["balance_matches_ledger", "ledger_nets_to_zero"],
        ),
        (
            1,
            "UPDATE profiles SET margin_used = margin_used + 0.5 WHERE id = $1",
            &["margin_matches_ledger", "margin_matches_open_positions"],
        ),
        (
            2,
            "UPDATE positions SET margin_used = margin_used + 1 WHERE user_id = $1",
            &["margin_matches_open_positions"],
        ),
        (
            3,
            "UPDATE orders SET total_cost = total_cost + 0.00000001 WHERE id = (SELECT min(id::text)::uuid FROM orders \
             WHERE user_id = $1)",
            &["execution_transfers_match_orders"],
        ),
        (
            4,
            "UPDATE orders SET status = 'rolled_back', rolled_back_at = now(), rolled_back_reason = 'forged' \
             WHERE id = (SELECT min(id::text)::uuid FROM orders WHERE user_id = $1)",
            &["rolled_back_orders_have_one_audit_row", "reversals_match_rolled_back_orders"],
        ),
        (
            5,
            "UPDATE positions SET status = 'rolled_back', closed_at = now() \
             WHERE id = (SELECT min(id::text)::uuid FROM positions WHERE user_id = $1)",
            &["executed_orders_have_positions", "rolled_back_orders_closed_positions"],
        ),
        (
            6,
            "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind) \
             VALUES ($1, 'house_clearing', 'user_cash', 5, 'deposit')",
            &["balance_matches_ledger"],
        ),
        (
            7,
            "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id) \
             SELECT $1, 'user_cash', 'user_margin', 3, 'margin_lock', min(id::text)::uuid FROM orders WHERE user_id = $1",
            &["margin_matches_ledger", "execution_transfers_match_orders"],
        ),
    ];
    for (i, sql, _) in &plants {
        sqlx::query(*sql).bind(users[*i].0).execute(&t.pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // A reversal of the rolled-back order's commission that gives back more than it took.
    sqlx::query(
        "INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, reverses_id) \
         SELECT user_id, credit_account, debit_account, amount + 1, 'reversal', order_id, id \
         FROM ledger_transfers WHERE order_id = $1 AND kind = 'commission'",
    )
    .bind(users[8].1)
    .execute(&t.pool)
    .await
    .expect("bad reversal");

    let (incremental, full) = both(&t.pool).await;
    assert_eq!(incremental, full, "the full audit and the audit from the empty checkpoint agree exactly");
    for (i, _, checks) in &plants {
        let u = users[*i].0.to_string();
        for check in *checks {
            let whose = |v: &&String| v.contains(check) && (*check == "ledger_nets_to_zero" || v.contains(&u));
            assert!(full.iter().any(|v| whose(&v)), "account {i}: {check} not found in {full:?}");
        }
    }
    let u8 = users[8].0.to_string();
    for check in ["reversal_mirrors_original", "reversals_match_rolled_back_orders", "balance_matches_ledger"] {
        assert!(full.iter().any(|v| v.contains(check) && v.contains(&u8)), "{check} not found in {full:?}");
    }
    // Nothing about the accounts left alone.
    for (u, _) in [users[9], (idle, Uuid::nil())] {
        assert!(!full.iter().any(|v| v.contains(&u.to_string())), "{u}: {full:?}");
    }
    // The per-account audit names the same violations for those accounts.
    let some: Vec<Uuid> = users[..4].iter().map(|(u, _)| *u).collect();
    let mut per_user: Vec<String> = db::ledger_audit_users(&t.pool, &some)
        .await
        .expect("user audit")
        .into_iter()
        .map(|v| format!("{:?} {} {:?} {:?}", v.user_id, v.check_name, v.expected, v.actual))
        .collect();
    per_user.sort();
    let of_some: Vec<String> =
        full.iter().filter(|v| some.iter().any(|u| v.contains(&u.to_string()))).cloned().collect();
    assert_eq!(per_user, of_some);
}
