//! A batch's proof (issue 10, item 7): its post-check against the database's rows and the
//! ledger audit of the accounts it touched, as both front ends show it. A run whose summary
//! says something the rows do not is caught, check by check.

use std::sync::Arc;

use crate::support::db::*;
use incident_console::core::batch::{BatchItem, BatchTally, Outcome, Summary};
use incident_console::ops::batch::{self, BatchOptions, Progress};
use incident_console::store::db::Db;
use rust_decimal::Decimal;
use uuid::Uuid;

async fn burst_items(t: &TestDb) -> Vec<BatchItem> {
    let sql =
        format!("SELECT id, user_id FROM orders WHERE {BURST_SQL} AND status = 'executed' ORDER BY created_at, id");
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&t.pool).await.expect("burst");
    rows.into_iter().map(|(order_id, user_id)| BatchItem { order_id, user_id }).collect()
}

fn failed(proof: &incident_console::core::batch::Proof) -> Vec<String> {
    proof.checks.iter().filter(|c| !c.passed).map(|c| c.check.clone()).collect()
}

#[tokio::test]
async fn a_batch_is_proved_by_its_rows_and_a_summary_that_disagrees_is_caught() {
    let t = seeded().await;
    let items = burst_items(&t).await;
    let opts = BatchOptions::new("issue 10: batch proof".into());
    let (summary, outcomes) =
        batch::run(&t.settings(), items, &opts, Arc::new(Progress::default())).await.expect("the batch runs");
    assert_eq!(summary.rolled_back, 60);
    let pool = Db::sessions(t.pool.clone());

    let proof = batch::prove(&pool, &summary, &outcomes).await.expect("the proof runs");
    assert!(proof.passed(), "{proof:?}");
    assert_eq!(proof.checks.len(), 6);
    let users = count(&t, &format!("SELECT count(DISTINCT user_id) FROM orders WHERE {BURST_SQL}")).await;
    assert_eq!(proof.accounts as i64, users, "every account of the burst is audited");
    assert_eq!(proof.sentence(), format!("post-check 6/6 passed; {users} account(s) audited: clean"));

    // One unit of the last decimal more than the rows gave back: caught, and only that.
    let mut lying = summary.clone();
    lying.refunded += Decimal::new(1, 8);
    let p = batch::prove(&pool, &lying, &outcomes).await.expect("the proof runs");
    assert_eq!(failed(&p), ["refund_matches"], "{p:?}");

    // An order the run never touched, claimed as rolled back by it.
    let other: (Uuid, Uuid) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, user_id FROM orders WHERE NOT ({BURST_SQL}) AND status = 'executed' LIMIT 1"
    )))
    .fetch_one(&t.pool)
    .await
    .expect("an order outside the burst");
    let mut claimed = outcomes.clone();
    claimed.push((
        BatchItem { order_id: other.0, user_id: other.1 },
        Outcome::RolledBack { refunded: Decimal::ONE, margin_released: Decimal::ONE, attempts: 1, reply_lost: false },
    ));
    let tally =
        BatchTally { batch_id: summary.batch_id, total: claimed.len(), retries: 0, elapsed_ms: 0, cancelled: false };
    let p = batch::prove(&pool, &Summary::of(tally, &claimed), &claimed).await.expect("the proof runs");
    let f = failed(&p);
    for name in ["orders_rolled_back", "audit_rows_match", "refund_matches", "margin_matches"] {
        assert!(f.iter().any(|c| c == name), "{name} must fail: {f:?}");
    }
    assert!(!p.passed());

    // The ledger itself broken on one touched account (a balance changed behind the
    // ledger's back, by the superuser): the audit of the touched accounts names it.
    let victim = outcomes[0].0.user_id;
    sqlx::query("UPDATE profiles SET balance = balance + 1 WHERE id = $1")
        .bind(victim)
        .execute(&t.pool)
        .await
        .expect("tamper");
    let p = batch::prove(&pool, &summary, &outcomes).await.expect("the proof runs");
    assert!(p.checks.iter().all(|c| c.passed), "the rows still agree: {p:?}");
    assert!(p.violations.iter().any(|v| v.user_id == Some(victim)), "{p:?}");
    assert!(!p.passed());
    assert!(p.sentence().ends_with("violation(s)"), "{}", p.sentence());
}
