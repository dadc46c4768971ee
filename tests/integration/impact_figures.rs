//! The figures a message and the report quote, held against SQL (issue 10, item 1): runs
//! of one incident that touch the same users count each user once, as the audit rows do.

use std::path::Path;

use crate::support::cli::{Out, console_in, run_cmd};
use crate::support::db::{TestDb, seeded};
use serde_json::Value;
use uuid::Uuid;

const REASON: &str = "duplicate executions of deploy 4711";

async fn ic(home: &Path, url: &str, args: &[&str]) -> Out {
    let mut c = console_in(home, "impact-test");
    c.arg("--database-url").arg(url).args(args);
    run_cmd(c, None).await
}

fn entries(home: &Path, id: &str) -> Vec<Value> {
    let path = home.join("incidents").join(id).join("journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).expect("a journal line")).collect()
}

/// What the audit rows of the incident's operations show: (orders, distinct users).
async fn audited(t: &TestDb, operations: &[Uuid]) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(DISTINCT user_id) FROM order_audit_log \
         WHERE action = 'order_rolled_back' AND batch_id = ANY($1)",
    )
    .bind(operations)
    .fetch_one(&t.pool)
    .await
    .expect("audit rows")
}

/// "Affected so far: N orders, M users" as the internal alert prints it.
fn affected(text: &str) -> (i64, i64) {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Affected so far: "))
        .unwrap_or_else(|| panic!("no 'Affected so far' line in:\n{text}"));
    let n: Vec<i64> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    match n.as_slice() {
        [orders, users] => (*orders, *users),
        _ => panic!("cannot read {line:?}"),
    }
}

#[tokio::test]
async fn users_affected_counts_people_not_runs_when_runs_overlap() {
    let t = seeded().await;
    let home = tempfile::tempdir().expect("home");
    let (home, url) = (home.path(), t.url.as_str());
    let j = ic(home, url, &["--json", "incident", "new", "--title", "duplicate GBPUSD fills", "--level", "2"])
        .await
        .code(0)
        .clean()
        .json();
    let id = j["incident"].as_str().unwrap_or_else(|| panic!("no id in {j}")).to_string();

    // Two batches over halves of the burst, whose users overlap, then one more order of a
    // user the first batch already touched, rolled back on its own.
    for (from, to) in [("13:02", "13:04"), ("13:04", "13:06")] {
        let args = ["rollback", "--symbol", "GBPUSD", "--from", from, "--to", to, "--reason", REASON, "--yes"];
        ic(home, url, &args).await.code(0);
    }
    let (order, user): (Uuid, Uuid) = sqlx::query_as(
        "SELECT o.id, o.user_id FROM orders o WHERE o.status = 'executed' AND o.symbol <> 'GBPUSD' \
           AND o.user_id IN (SELECT user_id FROM order_audit_log WHERE action = 'order_rolled_back') \
         ORDER BY o.created_at LIMIT 1",
    )
    .fetch_one(&t.pool)
    .await
    .expect("an executed order of a user the batches touched");
    let single = ["rollback", &order.to_string(), "--user", &user.to_string(), "--reason", REASON, "--yes"];
    ic(home, url, &single).await.code(0).says("Rolled back 1 order(s)");

    let rollbacks: Vec<Value> =
        entries(home, &id).into_iter().filter(|e| e["kind"] == "rollback").map(|e| e["data"].clone()).collect();
    assert_eq!(rollbacks.len(), 3, "{rollbacks:?}");
    let operations: Vec<Uuid> = rollbacks
        .iter()
        .map(|r| r["operation"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no operation: {r}")))
        .collect();
    let (orders, users) = audited(&t, &operations).await;
    let per_run: i64 = rollbacks.iter().map(|r| r["users"].as_i64().unwrap_or(0)).sum();
    // The scene must have the overlap this test is about, or it proves nothing.
    assert!(per_run > users, "runs' users {per_run} do not overlap (distinct {users})");

    let alert = ic(
        home,
        url,
        &[
            "template",
            "render",
            "internal_alert",
            "--set",
            "impact=duplicate fills",
            "--set",
            "estimated_resolution=1h",
        ],
    )
    .await;
    alert.code(0).clean();
    assert_eq!(affected(&alert.stdout), (orders, users), "the alert against SQL:\n{}", alert.stdout);

    for name in ["summary", "root_cause", "lessons_learned"] {
        ic(home, url, &["incident", "field", name, "written for the test"]).await.code(0);
    }
    let report = ic(home, url, &["--json", "incident", "report"]).await.code(0).clean().json();
    let path = report["report"].as_str().unwrap_or_else(|| panic!("report path: {report}"));
    let md = std::fs::read_to_string(path).expect("the report");
    let line = format!("- Orders affected: {orders}; users affected: {users}");
    assert!(md.contains(&line), "the report lacks {line:?}:\n{md}");
    println!(
        "FIGURES users affected: SQL {users} distinct of {orders} orders; runs' sum {per_run}; alert and report {users}"
    );
}
