//! Four eyes from the command line, with two real database logins: a batch above the
//! policy waits for a second person (`approvals approve`), who cannot be the requester;
//! a denied request changes nothing; `approvals` and `policy` answer; the requester's
//! journal says what happened.

use std::time::Duration;

use uuid::Uuid;

use crate::support::cli::{console_in, run_cmd};
use crate::support::db::{BURST_SQL, TestDb, assert_consistent, count, seeded};

/// A login with the operator's role (roles are the cluster's: named after the test).
async fn login(t: &TestDb, name: &str) -> String {
    let role = format!("{name}_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
         CREATE ROLE {role} LOGIN IN ROLE incident_operator; END IF; END $$"
    )))
    .execute(&t.pool)
    .await
    .expect("create the login");
    t.url_as(&role, "unused")
}

/// The binary in `dir` as `operator` with `args`.
fn ic(dir: &std::path::Path, operator: &str, args: &[&str]) -> tokio::process::Command {
    let mut c = console_in(dir, operator);
    c.args(args);
    c
}

/// The id of the one request waiting, once it is there.
async fn waiting_request(t: &TestDb) -> Uuid {
    for _ in 0..200 {
        let id: Option<Uuid> = sqlx::query_scalar("SELECT id FROM approval_requests WHERE decision IS NULL")
            .fetch_optional(&t.pool)
            .await
            .expect("read the requests");
        if let Some(id) = id {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no request was filed");
}

async fn order_file(t: &TestDb, dir: &std::path::Path, condition: &str) -> std::path::PathBuf {
    let ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM orders WHERE {condition}")))
        .fetch_all(&t.pool)
        .await
        .expect("orders");
    let path = dir.join(format!("orders-{}.txt", ids.len()));
    std::fs::write(&path, ids.iter().map(Uuid::to_string).collect::<Vec<_>>().join("\n")).expect("write");
    path
}

#[tokio::test]
async fn a_batch_above_the_policy_waits_for_a_second_login_who_is_not_the_requester() {
    let t = seeded().await;
    sqlx::query("SELECT set_approval_policy('{\"enabled\": true, \"batch_orders\": 10}')")
        .execute(&t.pool)
        .await
        .expect("policy on");
    let (url_a, url_b) = (login(&t, "ic_cli_ask").await, login(&t, "ic_cli_ok").await);
    let dir_a = tempfile::tempdir().expect("dir");
    let dir_b = tempfile::tempdir().expect("dir");
    // The requester works in an incident of its own (Level 2): the request names it.
    run_cmd(ic(dir_a.path(), "alice", &["incident", "new", "--title", "burst", "--level", "2"]), None).await.code(0);
    let file = order_file(&t, dir_a.path(), BURST_SQL).await;

    let policy = run_cmd(ic(dir_b.path(), "bo", &["policy", "show", "--database-url", &url_b]), None).await;
    policy.code(0).clean().says("Four-eyes approval: ON").says("roll back 10 orders");

    let batch = console_in(dir_a.path(), "alice")
        .args(["rollback", "--orders"])
        .arg(&file)
        .args(["--reason", "duplicate burst", "--yes", "--database-url", &url_a])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the batch");
    let id = waiting_request(&t).await;
    let short = &id.to_string()[..8];
    assert_eq!(
        count(&t, &format!("SELECT count(*) FROM orders WHERE {BURST_SQL} AND status = 'rolled_back'")).await,
        0
    );

    // Listed for everyone, with its scope.
    let list = run_cmd(ic(dir_b.path(), "bo", &["approvals", "--database-url", &url_b]), None).await;
    list.code(0).clean().says(short).says("batch of 60 order(s) (60 executed)").says("WAITING");
    // The requester cannot approve it: neither from another directory nor under another name.
    let own = run_cmd(
        ic(dir_b.path(), "not-alice", &["approvals", "approve", short, "--reason", "mine", "--database-url", &url_a]),
        None,
    )
    .await;
    own.code(1).complains("self_approval");
    // A second person does.
    let ok = run_cmd(
        ic(
            dir_b.path(),
            "bo",
            &["approvals", "approve", short, "--reason", "checked the 60 duplicates", "--database-url", &url_b],
        ),
        None,
    )
    .await;
    ok.code(0).clean().says("APPROVED by bo");

    let out = tokio::time::timeout(Duration::from_secs(60), batch.wait_with_output())
        .await
        .expect("the batch ends")
        .expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("This needs a second person") && stderr.contains("Approved by bo"), "{stderr}");
    assert!(stdout.contains("60 rolled back"), "{stdout}");
    assert_eq!(
        count(&t, &format!("SELECT count(*) FROM orders WHERE {BURST_SQL} AND status = 'rolled_back'")).await,
        60
    );
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM order_audit_log l JOIN approval_requests r ON r.operation_id = l.batch_id \
             WHERE l.action = 'order_rolled_back'"
        )
        .await,
        60,
        "every rollback ran under the approved operation"
    );
    assert_consistent(&t.pool).await;
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM approval_log ORDER BY id").fetch_all(&t.pool).await.expect("log");
    assert_eq!(actions, ["requested", "approved", "used"]);

    // The requester's journal has the request and the decision.
    let incidents = dir_a.path().join("incidents");
    let journal = std::fs::read_dir(&incidents)
        .expect("the incidents directory")
        .flatten()
        .map(|e| e.path().join("journal.jsonl"))
        .find(|p| p.is_file())
        .expect("the incident's journal");
    let text = std::fs::read_to_string(journal).expect("read the journal");
    let approvals: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["kind"] == "approval")
        .collect();
    let actions: Vec<&str> = approvals.iter().filter_map(|e| e["data"]["action"].as_str()).collect();
    assert_eq!(actions, ["requested", "approved", "used"], "{approvals:?}");
    assert_eq!(approvals[0]["data"]["id"], id.to_string());
    assert_eq!(approvals[0]["data"]["orders"], 60);
}

#[tokio::test]
async fn a_denied_request_changes_nothing_and_the_batch_says_why() {
    let t = seeded().await;
    sqlx::query("SELECT set_approval_policy('{\"enabled\": true, \"batch_orders\": 10}')")
        .execute(&t.pool)
        .await
        .expect("policy on");
    let (url_a, url_b) = (login(&t, "ic_cli_ask2").await, login(&t, "ic_cli_no2").await);
    let dir = tempfile::tempdir().expect("dir");
    let file = order_file(&t, dir.path(), BURST_SQL).await;
    let before = crate::support::db::fingerprint(&t.pool).await;
    let batch = console_in(dir.path(), "alice")
        .args(["rollback", "--orders"])
        .arg(&file)
        .args(["--reason", "duplicate burst", "--yes", "--no-journal", "--database-url", &url_a])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the batch");
    let id = waiting_request(&t).await;
    run_cmd(
        ic(
            dir.path(),
            "bo",
            &["approvals", "deny", &id.to_string(), "--reason", "wrong window", "--database-url", &url_b],
        ),
        None,
    )
    .await
    .code(0)
    .says("denied by bo");
    let out =
        tokio::time::timeout(Duration::from_secs(30), batch.wait_with_output()).await.expect("ends").expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("DENIED by bo") && stderr.contains("wrong window"), "{stderr}");
    assert_eq!(crate::support::db::fingerprint(&t.pool).await, before, "nothing changed");
    // Deciding twice is refused.
    run_cmd(
        ic(
            dir.path(),
            "bo",
            &["approvals", "approve", &id.to_string(), "--reason", "changed my mind", "--database-url", &url_b],
        ),
        None,
    )
    .await
    .code(1)
    .complains("already_decided");
    // Bad input is said, and changes nothing.
    run_cmd(ic(dir.path(), "bo", &["policy", "set", "batch_orders=-3", "--database-url", &url_b]), None)
        .await
        .code(2)
        .complains("whole number");
    run_cmd(ic(dir.path(), "bo", &["approvals", "show", "zz", "--database-url", &url_b]), None)
        .await
        .code(2)
        .complains("not a request id");
}
