//! The circuit breaker (issue 12, migration 18): a failed post-check opens it inside the
//! rollback that saw it; the batch stops at the next order; every rollback by anyone (a CLI
//! in another process, SQL through the contract's functions) is refused with breaker_open
//! until a person closes it, which is journaled.

use std::sync::Arc;

use crate::support::cli::{console_in, run_cmd};
use crate::support::db::*;
use incident_console::core::batch::{BatchItem, Outcome};
use incident_console::ops::batch::{self, BatchOptions, Progress};
use serde_json::Value;

#[tokio::test]
async fn a_failing_postcheck_opens_the_breaker_the_batch_stops_and_every_rollback_is_refused_until_closed() {
    let t = test_db().await;
    // A's order is the sandbox's practice order: its post-check is made to fail when it is
    // rolled back (money moves as for any order).
    let db = incident_console::store::db::Db::sessions(t.pool.clone());
    let (oa, a) = incident_console::ops::drill::breaker_drill_order(&db).await.expect("drill order");
    let (b, c) = (account(&t.pool, "1000").await, account(&t.pool, "1000").await);
    let (ob, oc) = (executed(&t.pool, b, "1", None).await, executed(&t.pool, c, "1", None).await);

    let home = tempfile::tempdir().expect("home");
    let cli = |args: &[&str]| {
        let mut cmd = console_in(home.path(), "breaker-test");
        cmd.args(args).args(["--database-url", &t.url]);
        cmd
    };
    run_cmd(cli(&["incident", "new", "--title", "breaker drill", "--level", "2"]), None).await.code(0);

    let items = vec![
        BatchItem { order_id: oa, user_id: a },
        BatchItem { order_id: ob, user_id: b },
        BatchItem { order_id: oc, user_id: c },
    ];
    let mut opts = BatchOptions::new("breaker drill".into());
    opts.concurrency = 1;
    let (summary, outcomes) =
        batch::run(&t.settings(), items, &opts, Arc::new(Progress::default())).await.expect("run");
    assert_eq!(summary.rolled_back, 1, "{summary:?}");
    assert!(matches!(outcomes[0].1, Outcome::RolledBack { .. }), "{outcomes:?}");
    assert!(
        matches!(&outcomes[1].1, Outcome::Refused { error_code, .. } if error_code == "breaker_open"),
        "the next order is refused: {outcomes:?}"
    );
    assert_eq!(outcomes[2].1, Outcome::NotAttempted, "and the batch stops: {outcomes:?}");
    let (open, source): (bool, Option<String>) =
        sqlx::query_as("SELECT open, source FROM circuit_breaker").fetch_one(&t.pool).await.expect("breaker");
    assert!(open);
    assert_eq!(source.as_deref(), Some("postcheck_failed"));

    // Another process: the CLI's rollback is refused; SQL through the contract's function too.
    let out =
        run_cmd(cli(&["rollback", &oc.to_string(), "--user", &c.to_string(), "--reason", "x", "--yes"]), None).await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(format!("{}{}", out.stdout, out.stderr).contains("breaker_open"), "{out:?}");
    let v: Value = sqlx::query_scalar("SELECT rollback_execute_order_atomic($1, $2, 'psql')")
        .bind(oc)
        .bind(c)
        .fetch_one(&t.pool)
        .await
        .expect("call");
    assert_eq!(v["error_code"], "breaker_open", "{v}");
    assert_eq!(count(&t, &format!("SELECT count(*) FROM orders WHERE id = '{oc}' AND status = 'executed'")).await, 1);

    let status = run_cmd(cli(&["breaker", "status"]), None).await;
    status.code(1).says("OPEN").says("post-check failed");
    run_cmd(cli(&["breaker", "close", "--reason", "the cent was found: a data-entry error, corrected"]), None)
        .await
        .code(0)
        .says("closed");
    run_cmd(cli(&["breaker", "status"]), None).await.code(0).says("closed");
    run_cmd(cli(&["rollback", &oc.to_string(), "--user", &c.to_string(), "--reason", "x", "--yes"]), None)
        .await
        .code(0);

    // A post-check that fails after a rollback (rollback_with_postcheck records it so, as
    // the console's single and group rollbacks do) opens the breaker again.
    let v: Value = sqlx::query_scalar("SELECT record_rollback_failure($1, $2, 'postcheck_failed', '{}'::jsonb)")
        .bind(oc)
        .bind(c)
        .fetch_one(&t.pool)
        .await
        .expect("record");
    assert_eq!(v["success"], true, "{v}");
    let log: Vec<(bool, String)> =
        sqlx::query_as("SELECT open, source FROM breaker_log ORDER BY id").fetch_all(&t.pool).await.expect("log");
    assert_eq!(
        log,
        vec![
            (true, "postcheck_failed".to_string()),
            (false, "person".to_string()),
            (true, "postcheck_failed".to_string())
        ]
    );
    let journal = std::fs::read_dir(home.path().join("incidents"))
        .expect("incidents")
        .flatten()
        .map(|e| e.path().join("journal.jsonl"))
        .find(|p| p.exists())
        .map(|p| std::fs::read_to_string(p).expect("journal"))
        .expect("a journal");
    assert!(journal.contains("\"kind\":\"breaker\""), "closing is journaled: {journal}");
}

/// Failures above the threshold open the breaker: five orders whose rollback the server
/// fails (a trigger planted by the test raises for them, as a fault would), then the batch
/// stops at the next order with breaker_open and the rest is not attempted.
#[tokio::test]
async fn five_failures_in_a_batch_open_the_breaker_and_it_stops() {
    let t = test_db().await;
    let mut items = Vec::new();
    for _ in 0..8 {
        let u = account(&t.pool, "1000").await;
        let o = executed(&t.pool, u, "1", None).await;
        items.push(BatchItem { order_id: o, user_id: u });
    }
    let failing: Vec<String> = items[..5].iter().map(|i| format!("'{}'", i.order_id)).collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION test_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.order_id IN ({}) AND NEW.action = 'order_rolled_back' THEN \
                 RAISE EXCEPTION 'planted fault' USING ERRCODE = 'XX000'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER test_fault BEFORE INSERT ON order_audit_log FOR EACH ROW EXECUTE FUNCTION test_fault();",
        failing.join(", ")
    )))
    .execute(&t.pool)
    .await
    .expect("plant the fault");

    let mut opts = BatchOptions::new("failures drill".into());
    opts.concurrency = 1;
    opts.max_attempts = 1;
    let (summary, outcomes) =
        batch::run(&t.settings(), items, &opts, Arc::new(Progress::default())).await.expect("run");
    assert_eq!(summary.failed.len(), 5, "{outcomes:?}");
    assert!(
        matches!(&outcomes[5].1, Outcome::Refused { error_code, .. } if error_code == "breaker_open"),
        "the order after the fifth failure is refused: {outcomes:?}"
    );
    assert!(outcomes[6..].iter().all(|(_, o)| *o == Outcome::NotAttempted), "{outcomes:?}");
    assert_eq!(summary.rolled_back, 0);
    let (open, source): (bool, Option<String>) =
        sqlx::query_as("SELECT open, source FROM circuit_breaker").fetch_one(&t.pool).await.expect("breaker");
    assert!(open);
    assert_eq!(source.as_deref(), Some("failures"));
}
