//! End-to-end tests of the headless command line: the real `incident-console` binary
//! against a real PostgreSQL (a fresh database per test, from `support::db`), checked on
//! stdout, stderr, exit code and the database itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::cli::{BIN, Out, PASSWORD, console_in, run_cmd};
use crate::support::db::{
    BURST_SQL, TestDb, account, assert_consistent, count, execute, fingerprint, money_of, test_db,
};
use rust_decimal::Decimal;
use serde_json::Value;
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use uuid::Uuid;

const BURST_FROM: &str = "2026-11-25 13:02";
const BURST_TO: &str = "2026-11-25 13:06";
const REASON: &str = "duplicate executions of deploy 4711";

// ----------------------------------------------------------------------------------------
// Running the binary
// ----------------------------------------------------------------------------------------

/// Where the binary keeps incidents during these tests: never the user's own.
fn data_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("data dir")).path()
}

/// The binary with a predictable environment, keeping incidents in this binary's directory.
fn console() -> tokio::process::Command {
    console_in(data_dir(), "cli-test")
}

/// `incident-console --database-url URL args...`
async fn ic(url: &str, args: &[&str]) -> Out {
    let mut c = console();
    c.arg("--database-url").arg(url).args(args);
    run_cmd(c, None).await
}

/// The same, with `input` on stdin.
async fn ic_stdin(url: &str, args: &[&str], input: &str) -> Out {
    let mut c = console();
    c.arg("--database-url").arg(url).args(args);
    run_cmd(c, Some(input)).await
}

// ----------------------------------------------------------------------------------------
// The demo book
// ----------------------------------------------------------------------------------------

/// A fresh database with the demo book of seed 7 on 2026-11-25.
async fn seeded() -> TestDb {
    let t = test_db().await;
    ic(&t.url, &["seed", "--seed", "7", "--date", "2026-11-25"]).await.code(0).clean();
    t
}

/// One order of the burst.
#[derive(Debug, Clone, Copy)]
struct BurstOrder {
    id: Uuid,
    user: Uuid,
    tx: Uuid,
}

/// The burst's orders, oldest first, as the database has them.
async fn burst(t: &TestDb) -> Vec<BurstOrder> {
    let rows: Vec<(Uuid, Uuid, Option<Uuid>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, user_id, transaction_id FROM orders WHERE {BURST_SQL} ORDER BY created_at, id"
    )))
    .fetch_all(&t.pool)
    .await
    .expect("burst query");
    rows.into_iter().map(|(id, user, tx)| BurstOrder { id, user, tx: tx.expect("burst orders have a tx") }).collect()
}

/// Statuses of the burst's orders, counted.
async fn burst_statuses(t: &TestDb) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT status, count(*) FROM orders WHERE {BURST_SQL} GROUP BY status"
    )))
    .fetch_all(&t.pool)
    .await
    .expect("status query");
    rows.into_iter().collect()
}

/// Sum of balances and margins of the burst's users.
async fn burst_users_money(t: &TestDb) -> (Decimal, Decimal) {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce(sum(balance), 0), coalesce(sum(margin_used), 0) FROM profiles \
         WHERE id IN (SELECT user_id FROM orders WHERE {BURST_SQL})"
    )))
    .fetch_one(&t.pool)
    .await
    .expect("money query")
}

async fn status_of(t: &TestDb, order: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM orders WHERE id = $1").bind(order).fetch_one(&t.pool).await.expect("status")
}

/// A money value of the JSON output (a string, as the console writes it).
fn money(v: &Value) -> Decimal {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("not money: {s:?} ({e})")),
        Value::Number(n) => n.to_string().parse().unwrap_or_else(|e| panic!("not money: {n} ({e})")),
        other => panic!("not money: {other}"),
    }
}

fn uuid_of(v: &Value) -> Uuid {
    Uuid::parse_str(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).expect("uuid")
}

/// A file in a fresh temporary directory (deleted with the returned guard).
fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write temp file");
    (dir, path)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

// ----------------------------------------------------------------------------------------
// seed and orders
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn seed_writes_the_demo_book_and_orders_lists_exactly_the_burst() {
    let t = test_db().await;
    let seed = ic(&t.url, &["--json", "seed", "--seed", "7", "--date", "2026-11-25"]).await;
    let s = seed.code(0).clean().json();
    assert_eq!(s["accounts"], 200, "{s}");
    assert_eq!(s["burst"]["symbol"], "GBPUSD", "{s}");
    assert_eq!(s["burst"]["orders"], 60, "{s}");
    assert_eq!(s["burst"]["transaction_ids"].as_array().map(Vec::len), Some(20), "{s}");
    let profiles: i64 = sqlx::query_scalar("SELECT count(*) FROM profiles").fetch_one(&t.pool).await.expect("count");
    assert_eq!(profiles, 200);
    assert_consistent(&t.pool).await;

    let out = ic(
        &t.url,
        &["orders", "--symbol", "GBPUSD", "--from", BURST_FROM, "--to", BURST_TO, "--limit", "1000", "--json"],
    )
    .await;
    let rows = out.code(0).clean().json();
    let rows = rows.as_array().expect("a JSON array of orders");
    assert_eq!(rows.len(), 60, "the window holds exactly the burst");
    let from = chrono::DateTime::parse_from_rfc3339("2026-11-25T13:02:00Z").expect("time");
    let to = chrono::DateTime::parse_from_rfc3339("2026-11-25T13:06:00Z").expect("time");
    let mut per_tx: BTreeMap<Uuid, usize> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for r in rows {
        assert_eq!(r["symbol"], "GBPUSD", "{r}");
        assert_eq!(r["status"], "executed", "{r}");
        let at = chrono::DateTime::parse_from_rfc3339(r["created_at"].as_str().expect("created_at")).expect("rfc3339");
        assert!(at >= from && at < to, "{r}");
        assert!(money(&r["total_cost"]) > Decimal::ZERO, "{r}");
        ids.insert(uuid_of(&r["id"]));
        *per_tx.entry(uuid_of(&r["transaction_id"])).or_default() += 1;
    }
    assert_eq!(ids.len(), 60, "no order listed twice");
    assert_eq!(per_tx.len(), 20, "the burst shares 20 transaction ids");
    assert!(per_tx.values().all(|&n| n == 3), "each transaction executed three times: {per_tx:?}");
    let seeded_txs: BTreeSet<Uuid> =
        s["burst"]["transaction_ids"].as_array().expect("tx ids").iter().map(uuid_of).collect();
    assert_eq!(per_tx.keys().copied().collect::<BTreeSet<_>>(), seeded_txs);

    // The same window written as RFC 3339 with an offset.
    let offset = ic(
        &t.url,
        &[
            "orders",
            "--symbol",
            "GBPUSD",
            "--from",
            "2026-11-25T14:02:00+01:00",
            "--to",
            "2026-11-25T13:06:00Z",
            "--limit",
            "1000",
        ],
    )
    .await;
    assert!(offset.code(0).stdout.ends_with("\n60 order(s)\n"), "{}", offset.stdout);
    // ... and as times of day, on the book's latest trading day (the seed's 2026-11-25).
    let of_day =
        ic(&t.url, &["orders", "--symbol", "GBPUSD", "--from", "13:02", "--to", "13:06", "--limit", "1000"]).await;
    assert!(of_day.code(0).stdout.ends_with("\n60 order(s)\n"), "{}", of_day.stdout);
    let reversed = ic(&t.url, &["orders", "--from", "13:06", "--to", "13:02"]).await;
    assert!(
        reversed.code(2).clean().stderr.contains("empty window: from 2026-11-25 13:06:00 UTC is not before"),
        "{}",
        reversed.stderr
    );
    let nonsense = ic(&t.url, &["orders", "--from", "25:61"]).await;
    assert!(nonsense.code(2).clean().stderr.contains("13:02 for that time"), "{}", nonsense.stderr);
    // The bare command shows the book.
    let bare = ic(&t.url, &[]).await;
    assert!(bare.code(0).clean().stdout.contains("Book: 200 accounts"), "{}", bare.stdout);

    // Without --limit the listing stops at the default of 50, and the text says so.
    let text = ic(&t.url, &["orders", "--symbol", "gbpusd", "--from", BURST_FROM, "--to", BURST_TO]).await;
    assert!(text.code(0).stdout.contains("50 order(s) (limit reached; use --limit)"), "{}", text.stdout);
    let filtered = ic(
        &t.url,
        &["orders", "--symbol", "GBPUSD", "--status", "rolled-back", "--from", BURST_FROM, "--to", BURST_TO, "--json"],
    )
    .await;
    assert_eq!(filtered.code(0).json(), serde_json::json!([]), "nothing is rolled back yet");

    // Seeding again refuses and changes nothing.
    let print = fingerprint(&t.pool).await;
    let again = ic(&t.url, &["seed", "--seed", "7", "--date", "2026-11-25"]).await;
    again.code(2).clean();
    assert!(again.stderr.contains("already holds 200 accounts"), "{}", again.stderr);
    let other_seed = ic(&t.url, &["seed", "--seed", "8"]).await;
    other_seed.code(2).clean();
    assert_eq!(fingerprint(&t.pool).await, print);
}

#[tokio::test]
async fn seed_without_a_database_url_refuses_to_touch_the_sandbox() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = dir.path().join("sandbox");
    let mut c = console();
    c.env("INCIDENT_CONSOLE_SANDBOX_DIR", &sandbox).env("INCIDENT_PG_BINDIR", "/nonexistent").args(["seed"]);
    let out = run_cmd(c, None).await;
    out.code(2).clean();
    assert!(out.stderr.contains("sandbox reset") && out.stderr.contains("--database-url"), "{}", out.stderr);
    assert!(!sandbox.exists(), "seed must not create a sandbox");
}

/// With --json, stdout is JSON whatever happens: bad arguments, and commands without a
/// database.
#[tokio::test]
async fn json_on_stdout_for_bad_arguments_and_config_check() {
    let mut c = console();
    c.args(["--json", "orders", "--id", "not-a-uuid"]);
    let out = run_cmd(c, None).await;
    out.code(2).clean();
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(j["exit_code"], 2, "{j}");
    assert!(j["error"].as_str().is_some_and(|e| e.contains("not-a-uuid")), "{j}");
    assert!(out.stderr.contains("not-a-uuid"), "people still read stderr: {}", out.stderr);

    let mut c = console();
    c.args(["--json", "config", "check"]);
    let out = run_cmd(c, None).await;
    out.code(0).clean();
    let j: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    assert_eq!(j["valid"], true, "{j}");
    assert_eq!(j["keys"]["quit (asks mid-rollback)"], "ctrl-c q", "{j}");
}

/// A database without our schema (the wrong one, or never migrated) says so.
#[tokio::test]
async fn an_unmigrated_database_is_named_as_such() {
    let out = ic(&crate::support::db::admin_url(), &["audit"]).await;
    assert_ne!(out.code, 0, "{out:#?}");
    out.clean();
    assert!(out.stderr.contains("is this the right database, and migrated?"), "{}", out.stderr);
}

// ----------------------------------------------------------------------------------------
// One order: precheck, rollback, postcheck
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn precheck_rollback_and_postcheck_of_one_order() {
    let t = seeded().await;
    let b = burst(&t).await;
    let (o, u) = (b[0].id, b[0].user);
    let (os, us) = (o.to_string(), u.to_string());
    let dir = tempfile::tempdir().expect("temp dir");
    let baseline_path = dir.path().join("baseline.json");

    // Pre-check: ready, every check passed, baseline written; nothing changes.
    let print = fingerprint(&t.pool).await;
    let pre = ic(&t.url, &["precheck", &os, "--user", &us, "--baseline-out", path_str(&baseline_path), "--json"]).await;
    let pre = pre.code(0).clean().json();
    assert_eq!(pre["ready"], true, "{pre}");
    let checks = pre["checks"].as_array().expect("checks");
    assert!(checks.len() >= 6, "{pre}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{pre}");
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&baseline_path).expect("baseline file")).expect("baseline JSON");
    assert_eq!(written, pre["baseline"], "the file holds the baseline the pre-check printed");
    assert_eq!(written["order_id"], os);
    assert_eq!(written["user_id"], us);
    let expected_refund = money(&written["expected_refund"]);
    let expected_release = money(&written["expected_margin_release"]);
    assert!(expected_refund > expected_release && expected_release > Decimal::ZERO, "{written}");
    assert_eq!(fingerprint(&t.pool).await, print, "a pre-check changes nothing");

    // Human pre-check output.
    let text = ic(&t.url, &["precheck", &os, "--user", &us]).await;
    assert!(text.code(0).stdout.contains("Pre-check: READY"), "{}", text.stdout);

    // Another user's order is not found for this user: a failed check, nothing changes.
    let stranger = b.iter().find(|x| x.user != u).expect("another burst user").user.to_string();
    let foreign = ic(&t.url, &["rollback", &os, "--user", &stranger, "--reason", REASON, "--yes", "--json"]).await;
    let f = foreign.code(1).clean().json();
    assert!(f["rollback"].is_null(), "{f}");
    assert!(f["precheck"]["baseline"].is_null(), "{f}");
    let exists =
        f["precheck"]["checks"].as_array().expect("checks").iter().find(|c| c["check"] == "order_exists").cloned();
    assert_eq!(exists.map(|c| c["passed"].clone()), Some(Value::Bool(false)), "{f}");
    // A post-check before the rollback fails (exit 1, not bad input).
    let early = ic(&t.url, &["postcheck", &os, "--user", &us, "--baseline", path_str(&baseline_path), "--json"]).await;
    let e = early.code(1).clean().json();
    assert_eq!(e["successful"], false, "{e}");
    assert_eq!(fingerprint(&t.pool).await, print, "nothing changed yet");

    // Rollback: success, post-check passed, money back exactly, operator recorded.
    let (bal, margin) = money_of(&t.pool, u).await;
    let out =
        ic(&t.url, &["rollback", &os, "--user", &us, "--reason", REASON, "--yes", "--json", "--operator", "alice"])
            .await;
    let r = out.code(0).clean().json();
    assert_eq!(r["rollback"]["success"], true, "{r}");
    assert_eq!(r["rollback"]["order_ids"], serde_json::json!([os]), "{r}");
    assert_eq!(money(&r["rollback"]["refunded"]), expected_refund, "{r}");
    assert_eq!(money(&r["rollback"]["margin_released"]), expected_release, "{r}");
    assert_eq!(r["postcheck"]["successful"], true, "{r}");
    assert!(r["postcheck"]["checks"].as_array().expect("checks").iter().all(|c| c["passed"] == true), "{r}");
    assert_eq!(money_of(&t.pool, u).await, (bal + expected_refund, margin - expected_release));
    assert_eq!(status_of(&t, o).await, "rolled_back");
    let (operator, reason): (String, Option<String>) = sqlx::query_as(
        "SELECT a.operator, o.rolled_back_reason FROM order_audit_log a JOIN orders o ON o.id = a.order_id \
         WHERE a.order_id = $1 AND a.action = 'order_rolled_back'",
    )
    .bind(o)
    .fetch_one(&t.pool)
    .await
    .expect("audit row");
    // The tests log in as postgres, which has no registered names: the name is recorded
    // with the login that claimed it.
    assert_eq!(operator, "alice (via postgres)");
    assert_eq!(reason.as_deref(), Some(REASON));

    // The same rollback again: refused, nothing changed.
    let print = fingerprint(&t.pool).await;
    let again = ic(&t.url, &["rollback", &os, "--user", &us, "--reason", REASON, "--yes", "--json"]).await;
    let a = again.code(1).clean().json();
    assert_eq!(a["precheck"]["ready"], false, "{a}");
    assert!(a["rollback"].is_null(), "no rollback is attempted: {a}");
    let executed_check = a["precheck"]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == "order_executed")
        .cloned()
        .expect("order_executed check");
    assert_eq!(executed_check["passed"], false, "{a}");
    assert_eq!(executed_check["detail"], "already rolled back", "{a}");
    let text = ic(&t.url, &["rollback", &os, "--user", &us, "--reason", REASON, "--yes"]).await;
    text.code(1).clean();
    assert!(
        text.stdout.contains("already rolled back") && text.stdout.contains("Nothing was changed"),
        "{}",
        text.stdout
    );
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_eq!(incident_console::store::db::rollback_audit_rows(&t.pool, o).await.expect("rows"), 1);

    // Post-check against the file, and the same baseline from stdin.
    let post = ic(&t.url, &["postcheck", &os, "--user", &us, "--baseline", path_str(&baseline_path)]).await;
    assert!(post.code(0).clean().stdout.contains("Post-check: PASSED"), "{}", post.stdout);
    let text = std::fs::read_to_string(&baseline_path).expect("baseline");
    let post = ic_stdin(&t.url, &["postcheck", &os, "--user", &us, "--baseline", "-", "--json"], &text).await;
    let p = post.code(0).clean().json();
    assert_eq!(p["successful"], true, "{p}");
    assert!(p["checks"].as_array().expect("checks").iter().any(|c| c["check"] == "balance_restored"), "{p}");
    // The whole pre-check output is accepted as a baseline too.
    let post = ic_stdin(&t.url, &["postcheck", &os, "--user", &us, "--baseline", "-"], &pre.to_string()).await;
    post.code(0).clean();

    // A baseline doctored by one cent fails the money check (exit 1), naming it.
    let mut doctored = written.clone();
    doctored["expected_refund"] = Value::from((expected_refund - Decimal::new(1, 2)).to_string());
    let post =
        ic_stdin(&t.url, &["postcheck", &os, "--user", &us, "--baseline", "-", "--json"], &doctored.to_string()).await;
    let p = post.code(1).clean().json();
    let failed: Vec<&str> = p["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["passed"] == false)
        .map(|c| c["check"].as_str().expect("name"))
        .collect();
    assert_eq!(failed, vec!["balance_restored"], "{p}");

    // Another format version is bad input, whatever else it holds.
    let mut future = written.clone();
    future["version"] = Value::from(2);
    let post = ic_stdin(&t.url, &["postcheck", &os, "--user", &us, "--baseline", "-"], &future.to_string()).await;
    assert!(post.code(2).clean().stderr.contains("the baseline's version is 2, not 1"), "{}", post.stderr);

    // A baseline of another order is bad input; so is one that is not JSON.
    let other = b.iter().find(|x| x.user != u).expect("another burst user");
    let other_path = dir.path().join("other.json");
    ic(
        &t.url,
        &[
            "precheck",
            &other.id.to_string(),
            "--user",
            &other.user.to_string(),
            "--baseline-out",
            path_str(&other_path),
        ],
    )
    .await
    .code(0);
    let print = fingerprint(&t.pool).await;
    let wrong = ic(&t.url, &["postcheck", &os, "--user", &us, "--baseline", path_str(&other_path)]).await;
    wrong.code(2).clean();
    assert!(wrong.stderr.contains("not the pre-check baseline of this order"), "{}", wrong.stderr);
    let garbage = ic_stdin(&t.url, &["postcheck", &os, "--user", &us, "--baseline", "-"], "{ not json").await;
    garbage.code(2).clean();
    let missing = ic(&t.url, &["postcheck", &os, "--user", &us, "--baseline", "/nonexistent/baseline.json"]).await;
    missing.code(2).clean();
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn rollback_without_yes_asks_on_stdin() {
    let t = seeded().await;
    let b = burst(&t).await;
    let (os, us) = (b[5].id.to_string(), b[5].user.to_string());
    let print = fingerprint(&t.pool).await;

    // A reason holding a terminal escape is refused before the question, the escape shown,
    // not sent.
    let escape = ic_stdin(&t.url, &["rollback", &os, "--user", &us, "--reason", "dup \x1b[2J deploy"], "yes\n").await;
    escape.code(2).clean();
    assert!(escape.stderr.contains("control or invisible character (\\x1b)"), "{}", escape.stderr);
    assert!(!escape.stderr.contains('\x1b') && !escape.stdout.contains('\x1b'), "escape sequences are shown, not sent");
    // "no".
    let no = ic_stdin(&t.url, &["rollback", &os, "--user", &us, "--reason", REASON], "no\n").await;
    no.code(1).clean();
    assert!(no.stderr.contains("Type yes to roll back"), "{}", no.stderr);
    assert!(no.stderr.contains("Not confirmed; nothing was changed."), "{}", no.stderr);
    // End of input is no confirmation either; nor is "y".
    ic_stdin(&t.url, &["rollback", &os, "--user", &us, "--reason", REASON], "").await.code(1).clean();
    ic_stdin(&t.url, &["rollback", &os, "--user", &us, "--reason", REASON], "y\n").await.code(1).clean();
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_eq!(status_of(&t, b[5].id).await, "executed");

    let yes = ic_stdin(&t.url, &["rollback", &os, "--user", &us, "--reason", REASON], "yes\n").await;
    yes.code(0).clean();
    assert!(yes.stdout.contains("Rolled back 1 order(s)"), "{}", yes.stdout);
    assert!(yes.stdout.contains("Post-check against the baseline: PASSED"), "{}", yes.stdout);
    assert_eq!(status_of(&t, b[5].id).await, "rolled_back");
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn transaction_flag_rolls_back_the_whole_group() {
    let t = seeded().await;
    let b = burst(&t).await;
    let first = b[0];
    let group: BTreeSet<String> = b.iter().filter(|x| x.tx == first.tx).map(|x| x.id.to_string()).collect();
    assert_eq!(group.len(), 3);
    let (bal, margin) = money_of(&t.pool, first.user).await;
    let pre = ic(&t.url, &["precheck", &first.id.to_string(), "--user", &first.user.to_string(), "--json"]).await;
    let pre = pre.code(0).json();
    let group_refund = money(&pre["baseline"]["group"]["expected_refund"]);
    let group_release = money(&pre["baseline"]["group"]["expected_margin_release"]);
    assert!(group_refund > money(&pre["baseline"]["expected_refund"]), "{pre}");

    let out = ic(
        &t.url,
        &[
            "rollback",
            &first.id.to_string(),
            "--user",
            &first.user.to_string(),
            "--reason",
            REASON,
            "--transaction",
            "--yes",
            "--json",
        ],
    )
    .await;
    let r = out.code(0).clean().json();
    assert_eq!(r["rollback"]["success"], true, "{r}");
    assert_eq!(r["rollback"]["mode"], "transaction", "{r}");
    let ids: BTreeSet<String> = r["rollback"]["order_ids"]
        .as_array()
        .expect("order ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids, group);
    assert_eq!(money(&r["rollback"]["refunded"]), group_refund, "{r}");
    assert_eq!(r["postcheck"]["successful"], true, "{r}");
    assert_eq!(r["postcheck"]["mode"], "group", "{r}");
    assert_eq!(money_of(&t.pool, first.user).await, (bal + group_refund, margin - group_release));

    let listed = ic(&t.url, &["orders", "--transaction", &first.tx.to_string(), "--json"]).await;
    let listed = listed.code(0).json();
    let listed = listed.as_array().expect("orders");
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|o| o["status"] == "rolled_back" && o["rolled_back_reason"] == REASON), "{listed:?}");
    assert_eq!(burst_statuses(&t).await.get("executed"), Some(&57), "only the group was rolled back");

    // An order without transaction id has no group: refused, nothing changes.
    let (lone, lone_user): (Uuid, Uuid) = sqlx::query_as(
        "SELECT id, user_id FROM orders WHERE transaction_id IS NULL AND status = 'executed' ORDER BY id LIMIT 1",
    )
    .fetch_one(&t.pool)
    .await
    .expect("an order without transaction id");
    let print = fingerprint(&t.pool).await;
    let out = ic(
        &t.url,
        &[
            "rollback",
            &lone.to_string(),
            "--user",
            &lone_user.to_string(),
            "--reason",
            REASON,
            "--transaction",
            "--yes",
            "--json",
        ],
    )
    .await;
    let r = out.code(1).clean().json();
    assert_eq!(r["rollback"]["success"], false, "{r}");
    assert_eq!(r["rollback"]["error_code"], "no_transaction_id", "{r}");
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_consistent(&t.pool).await;
}

// ----------------------------------------------------------------------------------------
// Batches
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn batch_by_window_rolls_back_the_burst_once() {
    let t = seeded().await;
    let (bal, margin) = burst_users_money(&t).await;
    let window =
        ["rollback", "--symbol", "GBPUSD", "--from", BURST_FROM, "--to", BURST_TO, "--reason", REASON, "--yes"];

    let mut args = window.to_vec();
    args.push("--json");
    let out = ic(&t.url, &args).await;
    let r = out.code(0).clean().json();
    assert_eq!(r["preview"]["orders"], 60, "{r}");
    assert_eq!(r["preview"]["executed"], 60, "{r}");
    assert_eq!(r["preview"]["users"], 20, "{r}");
    let s = &r["summary"];
    assert_eq!(s["total"], 60, "{r}");
    assert_eq!(s["rolled_back"], 60, "{r}");
    assert_eq!(s["already_rolled_back"], 0, "{r}");
    assert_eq!(s["refused"], serde_json::json!([]), "{r}");
    assert_eq!(s["failed"], serde_json::json!([]), "{r}");
    let refunded = money(&s["refunded"]);
    let released = money(&s["margin_released"]);
    assert_eq!(refunded, money(&r["preview"]["total_refund"]), "{r}");
    assert_eq!(released, money(&r["preview"]["total_margin_release"]), "{r}");
    assert!(refunded > Decimal::ZERO);
    assert_eq!(r["audit_of_touched_users"], serde_json::json!([]), "{r}");
    // The batch's post-check: the database's rows against the summary, each check passed.
    let checks = r["postcheck"].as_array().unwrap_or_else(|| panic!("a post-check: {r}"));
    assert_eq!(checks.len(), 6, "{r}");
    assert!(checks.iter().all(|c| c["passed"] == true), "{r}");
    let refund = checks.iter().find(|c| c["check"] == "refund_matches").expect("refund_matches");
    assert_eq!(money(&refund["actual"]), refunded, "the audit rows' refund is the summary's: {r}");
    assert!(out.stderr.contains("progress: 60/60 finished, 60 rolled back"), "progress on stderr:\n{}", out.stderr);
    assert!(!out.stdout.contains("progress:"), "progress stays off stdout");

    assert_eq!(burst_statuses(&t).await, BTreeMap::from([("rolled_back".to_string(), 60)]));
    assert_eq!(burst_users_money(&t).await, (bal + refunded, margin - released), "exactly the refund came back");
    assert_consistent(&t.pool).await;

    // Again: nothing matches, nothing changes.
    let print = fingerprint(&t.pool).await;
    let again = ic(&t.url, &window).await;
    assert!(again.code(0).clean().stdout.contains("No orders match"), "{}", again.stdout);
    assert_eq!(fingerprint(&t.pool).await, print);

    // The rolled-back ones, explicitly: all already rolled back, nothing changes.
    let mut args = window.to_vec();
    args.extend(["--status", "rolled-back", "--json"]);
    let r = ic(&t.url, &args).await.code(0).clean().json();
    assert_eq!(r["summary"]["rolled_back"], 0, "{r}");
    assert_eq!(r["summary"]["already_rolled_back"], 60, "{r}");
    assert_eq!(money(&r["summary"]["refunded"]), Decimal::ZERO, "{r}");
    assert_eq!(fingerprint(&t.pool).await, print);
}

#[tokio::test]
async fn batch_confirmation_wants_the_count_typed() {
    let t = seeded().await;
    // Times of day: on the book's latest trading day, and the preview says which window.
    let window = ["rollback", "--symbol", "GBPUSD", "--from", "13:02", "--to", "13:06", "--reason", REASON];
    let print = fingerprint(&t.pool).await;
    let no = ic_stdin(&t.url, &window, "yes\n").await;
    no.code(1).clean();
    assert!(
        no.stdout
            .contains("Window: GBPUSD executed orders created from 2026-11-25 13:02:00 to 2026-11-25 13:06:00 UTC."),
        "{}",
        no.stdout
    );
    assert!(no.stdout.contains("Batch: 60 order(s) (60 executed) of 20 user(s)"), "{}", no.stdout);
    assert!(no.stderr.contains("Type 60 to roll back 60 order(s)"), "{}", no.stderr);
    assert_eq!(fingerprint(&t.pool).await, print);
    let mut json_window = vec!["--json"];
    json_window.extend(window);
    let j = ic_stdin(&t.url, &json_window, "no\n").await.code(1).clean().json();
    assert_eq!(j, serde_json::json!({ "confirmed": false, "changed": false }));
    assert_eq!(fingerprint(&t.pool).await, print);

    let yes = ic_stdin(&t.url, &window, "60\n").await;
    yes.code(0).clean();
    assert!(yes.stdout.contains("60 rolled back, 0 already rolled back, 0 refused, 0 failed"), "{}", yes.stdout);
    assert!(yes.stdout.contains("Audit of the touched users: no violations"), "{}", yes.stdout);
    assert_eq!(burst_statuses(&t).await, BTreeMap::from([("rolled_back".to_string(), 60)]));
}

#[tokio::test]
async fn batch_from_an_order_file_finishes_what_is_left() {
    let t = seeded().await;
    let b = burst(&t).await;
    let ids: Vec<String> = b.iter().map(|x| x.id.to_string()).collect();
    let print = fingerprint(&t.pool).await;

    // A malformed line: bad input naming the line, nothing changes.
    let (_d1, bad) = temp_file("bad.txt", &format!("{}\n# the burst\n{}x\n{}\n", ids[0], ids[1], ids[2]));
    let out = ic(&t.url, &["rollback", "--orders", path_str(&bad), "--reason", REASON, "--yes"]).await;
    out.code(2).clean();
    assert!(out.stderr.contains("line 3"), "{}", out.stderr);
    // An unknown order id: bad input naming it, nothing changes.
    let unknown = Uuid::new_v4();
    let (_d2, unk) = temp_file("unknown.txt", &format!("{}\n{unknown}\n", ids[0]));
    let out = ic(&t.url, &["rollback", "--orders", path_str(&unk), "--reason", REASON, "--yes", "--json"]).await;
    out.code(2).clean();
    assert!(out.stderr.contains(&unknown.to_string()) && out.stderr.contains("do not exist"), "{}", out.stderr);
    assert_eq!(out.json()["exit_code"], 2, "with --json the error is JSON too");
    // No file, and a file of comments only.
    ic(&t.url, &["rollback", "--orders", "/nonexistent/orders.txt", "--reason", REASON, "--yes"]).await.code(2).clean();
    let (_d3, empty) = temp_file("empty.txt", "# nothing\n\n");
    ic(&t.url, &["rollback", "--orders", path_str(&empty), "--reason", REASON, "--yes"]).await.code(2).clean();
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_eq!(burst_statuses(&t).await, BTreeMap::from([("executed".to_string(), 60)]));

    // A first file with 20 of them, with comments and blank lines.
    let first: String = ids[..20].iter().map(|id| format!("{id}  # burst\n\n")).collect();
    let (_d4, part) = temp_file("part.txt", &format!("# first part\n{first}"));
    let r = ic(&t.url, &["rollback", "--orders", path_str(&part), "--reason", REASON, "--yes", "--json"]).await;
    let r = r.code(0).clean().json();
    assert_eq!(r["summary"]["rolled_back"], 20, "{r}");

    // All 60: the 40 left are rolled back, the 20 are reported, none twice.
    let (_d5, all) = temp_file("all.txt", &ids.join("\n"));
    let r = ic(&t.url, &["rollback", "--orders", path_str(&all), "--reason", REASON, "--yes", "--json"]).await;
    let r = r.code(0).clean().json();
    assert_eq!(r["preview"]["orders"], 60, "{r}");
    assert_eq!(r["preview"]["executed"], 40, "{r}");
    assert_eq!(r["summary"]["rolled_back"], 40, "{r}");
    assert_eq!(r["summary"]["already_rolled_back"], 20, "{r}");
    assert_eq!(money(&r["summary"]["refunded"]), money(&r["preview"]["total_refund"]), "{r}");
    assert_eq!(r["audit_of_touched_users"], serde_json::json!([]), "{r}");
    assert_eq!(burst_statuses(&t).await, BTreeMap::from([("rolled_back".to_string(), 60)]));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_audit_log WHERE action = 'order_rolled_back'")
        .fetch_one(&t.pool)
        .await
        .expect("audit rows");
    assert_eq!(rows, 60, "one audit row per order");

    let print = fingerprint(&t.pool).await;
    let window =
        ["rollback", "--symbol", "GBPUSD", "--from", BURST_FROM, "--to", BURST_TO, "--reason", REASON, "--yes"];
    assert!(ic(&t.url, &window).await.code(0).stdout.contains("No orders match"));
    assert_eq!(fingerprint(&t.pool).await, print);
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn a_batch_with_orders_that_cannot_be_rolled_back_reports_them_and_exits_1() {
    let t = seeded().await;
    let b = burst(&t).await;
    let others: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, status FROM orders WHERE status IN ('failed', 'pending') ORDER BY status, id")
            .fetch_all(&t.pool)
            .await
            .expect("unexecuted orders");
    let failed = others.iter().find(|o| o.1 == "failed").expect("a failed order").0;
    let pending = others.iter().find(|o| o.1 == "pending").expect("a pending order").0;
    let (_d, file) = temp_file("mixed.txt", &format!("{}\n{failed}\n{pending}\n{}\n", b[0].id, b[1].id));
    let args = ["rollback", "--orders", path_str(&file), "--reason", REASON, "--yes"];

    let out = ic(&t.url, &args).await;
    out.code(1).clean();
    assert!(out.stdout.contains("2 rolled back, 0 already rolled back, 2 refused, 0 failed"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("refused {failed}: not_rollbackable")), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("refused {pending}: not_rollbackable")), "{}", out.stdout);
    assert!(out.stdout.contains("The 2 refused order(s) cannot be rolled back as they stand"), "{}", out.stdout);
    assert!(!out.stdout.contains("Run the same command again"), "a second run would not help:\n{}", out.stdout);
    assert_eq!(status_of(&t, failed).await, "failed");
    assert_eq!(status_of(&t, pending).await, "pending");

    let print = fingerprint(&t.pool).await;
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let r = ic(&t.url, &json_args).await.code(1).clean().json();
    assert_eq!(r["summary"]["rolled_back"], 0, "{r}");
    assert_eq!(r["summary"]["already_rolled_back"], 2, "{r}");
    assert_eq!(r["summary"]["refused"].as_array().map(Vec::len), Some(2), "{r}");
    assert_eq!(fingerprint(&t.pool).await, print, "a rerun changes nothing");
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn ctrl_c_cancels_a_batch_on_the_server_and_a_rerun_finishes_it() {
    use sqlx::Connection;
    let t = seeded().await;
    let first = burst(&t).await[0];
    // Hold the first order's user, so the batch's first rollback waits on the lock.
    let mut locker = t.conn().await;
    let mut lock = locker.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM profiles WHERE id = $1 FOR UPDATE")
        .bind(first.user)
        .execute(&mut *lock)
        .await
        .expect("lock the profile");

    let window = [
        "rollback",
        "--symbol",
        "GBPUSD",
        "--from",
        BURST_FROM,
        "--to",
        BURST_TO,
        "--reason",
        REASON,
        "--yes",
        "--concurrency",
        "1",
        "--lock-timeout",
        "0",
    ];
    let mut c = console();
    c.arg("--database-url").arg(&t.url).args(window).arg("--json");
    c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let pid = child.id().expect("pid");

    let mut waiting = false;
    for _ in 0..400 {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'incident-console' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&t.pool)
        .await
        .expect("pg_stat_activity");
        if n > 0 {
            waiting = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(waiting, "the batch never waited on the held lock");
    // SAFETY: kill sends a signal to the child started above, which has not been reaped.
    let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0, "send SIGINT");
    // Wait until the console says it took the signal, then let the order in flight finish.
    let mut err_lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut stderr = String::new();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(line)) = err_lines.next_line().await {
            stderr.push_str(&line);
            stderr.push('\n');
            if line.contains("cancelling on the server") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(seen.ok(), Some(true), "the console never acknowledged SIGINT: {stderr}");
    lock.rollback().await.expect("release the lock");

    while let Ok(Some(line)) = err_lines.next_line().await {
        stderr.push_str(&line);
        stderr.push('\n');
    }
    let out = child.wait_with_output().await.expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "an incomplete batch exits 1\n{stdout}\n{stderr}");
    assert!(stderr.contains("cancelling on the server"), "{stderr}");
    let r: Value = serde_json::from_str(&stdout).expect("JSON summary");
    assert_eq!(r["summary"]["cancelled"], true, "{r}");
    // The order in flight was cancelled on the server, not left to commit after the
    // operator said stop.
    assert_eq!(r["summary"]["rolled_back"], 0, "the order in flight was cancelled: {r}");
    assert_eq!(r["summary"]["not_attempted"], 60, "{r}");
    assert_eq!(status_of(&t, first.id).await, "executed");
    assert_consistent(&t.pool).await;

    // The same command again finishes the rest.
    let r = ic(&t.url, &window[..window.len() - 4]).await;
    assert!(
        r.code(0).clean().stdout.contains("60 rolled back, 0 already rolled back, 0 refused, 0 failed"),
        "{}",
        r.stdout
    );
    assert_eq!(burst_statuses(&t).await, BTreeMap::from([("rolled_back".to_string(), 60)]));
    assert_consistent(&t.pool).await;
}

// ----------------------------------------------------------------------------------------
// Bad input
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_input_exits_2_and_changes_nothing() {
    let t = seeded().await;
    let b = burst(&t).await;
    let (os, us) = (b[0].id.to_string(), b[0].user.to_string());
    let long = "r".repeat(1001);
    let print = fingerprint(&t.pool).await;

    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("malformed order id", vec!["rollback", "test-order-uuid", "--user", &us, "--reason", REASON, "--yes"]),
        ("malformed order id (precheck)", vec!["precheck", "not-a-uuid", "--user", &us]),
        ("malformed user id", vec!["rollback", &os, "--user", "bob", "--reason", REASON, "--yes"]),
        ("no --user", vec!["rollback", &os, "--reason", REASON, "--yes"]),
        (
            "--from not a time",
            vec![
                "rollback",
                "--symbol",
                "GBPUSD",
                "--from",
                "yesterday",
                "--to",
                BURST_TO,
                "--reason",
                REASON,
                "--yes",
            ],
        ),
        ("--from not a time (orders)", vec!["orders", "--from", "soon"]),
        ("bad symbol", vec!["orders", "--symbol", "GBP;USD"]),
        ("empty reason", vec!["rollback", &os, "--user", &us, "--reason", "", "--yes"]),
        ("blank reason", vec!["rollback", &os, "--user", &us, "--reason", "  \t ", "--yes"]),
        ("1001-character reason", vec!["rollback", &os, "--user", &us, "--reason", &long, "--yes"]),
        (
            "1001-character reason (batch)",
            vec!["rollback", "--symbol", "GBPUSD", "--from", BURST_FROM, "--to", BURST_TO, "--reason", &long, "--yes"],
        ),
        (
            "empty reason (batch)",
            vec!["rollback", "--symbol", "GBPUSD", "--from", BURST_FROM, "--to", BURST_TO, "--reason", "", "--yes"],
        ),
        (
            "--from after --to",
            vec!["rollback", "--symbol", "GBPUSD", "--from", BURST_TO, "--to", BURST_FROM, "--reason", REASON, "--yes"],
        ),
        (
            "--from equal to --to",
            vec![
                "rollback", "--symbol", "GBPUSD", "--from", BURST_FROM, "--to", BURST_FROM, "--reason", REASON, "--yes",
            ],
        ),
        (
            "window without --to",
            vec!["rollback", "--symbol", "GBPUSD", "--from", BURST_FROM, "--reason", REASON, "--yes"],
        ),
        ("nothing to roll back", vec!["rollback", "--reason", REASON, "--yes"]),
        (
            "order and window at once",
            vec![
                "rollback", &os, "--user", &us, "--symbol", "GBPUSD", "--from", BURST_FROM, "--to", BURST_TO,
                "--reason", REASON, "--yes",
            ],
        ),
        ("empty maintenance reason", vec!["maintenance", "on", "--reason", " "]),
        ("bad duration", vec!["metrics", "--since", "a while"]),
        ("a window of centuries", vec!["metrics", "--since", "99999999999h"]),
        ("a burst window of centuries", vec!["metrics", "--burst-window", "99999999999h"]),
        ("a threshold of nothing", vec!["metrics", "--long-rollback", "0"]),
        ("a burst of none", vec!["metrics", "--burst-count", "0"]),
        ("a timeout the server cannot take", vec!["--statement-timeout", "30days", "audit"]),
        ("a timeout that would mean none", vec!["--lock-timeout", "500us", "audit"]),
        // A tab would be read by the server as the start of another startup option.
        (
            "an operator name with a tab",
            vec![
                "--operator",
                "eve\t-c\tincident.operator=mallory",
                "rollback",
                &os,
                "--user",
                &us,
                "--reason",
                REASON,
                "--yes",
            ],
        ),
        ("an operator name with a newline", vec!["--operator", "eve\nx", "audit"]),
        ("a reason of control characters", vec!["rollback", &os, "--user", &us, "--reason", "\x07\x1b", "--yes"]),
        ("a reason on two lines", vec!["rollback", &os, "--user", &us, "--reason", "one\ntwo", "--yes"]),
        ("a maintenance reason with an escape", vec!["maintenance", "on", "--reason", "stop\x1b[2J"]),
        (
            "a 201-character operator name",
            vec!["--operator", &long[..201], "rollback", &os, "--user", &us, "--reason", REASON, "--yes"],
        ),
    ];
    let url = t.url.as_str();
    let runs = cases.iter().map(|(name, args)| async move { (name, ic(url, args).await) });
    for (name, out) in futures::future::join_all(runs).await {
        assert_eq!(out.code, 2, "{name}: {out:#?}");
        out.clean();
        assert!(!out.stderr.trim().is_empty(), "{name}: says what is wrong");
    }
    assert_eq!(fingerprint(&t.pool).await, print, "bad input changed something");
    let m: bool =
        sqlx::query_scalar("SELECT maintenance_mode FROM system_settings").fetch_one(&t.pool).await.expect("m");
    assert!(!m);

    // The limits are inclusive: 1000 characters (of two bytes each) are accepted.
    let reason = "é".repeat(1000);
    let ok = ic(&t.url, &["rollback", &os, "--user", &us, "--reason", &reason, "--yes"]).await;
    ok.code(0).clean();
    let stored: Option<String> = sqlx::query_scalar("SELECT rolled_back_reason FROM orders WHERE id = $1")
        .bind(b[0].id)
        .fetch_one(&t.pool)
        .await
        .expect("reason");
    assert_eq!(stored.as_deref(), Some(reason.as_str()));
}

// ----------------------------------------------------------------------------------------
// audit, metrics, maintenance, drill
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn audit_passes_a_consistent_book_and_names_a_corrupted_balance() {
    let t = seeded().await;
    let ok = ic(&t.url, &["audit"]).await;
    assert!(ok.code(0).clean().stdout.contains("Ledger audit: no violations"), "{}", ok.stdout);
    let j = ic(&t.url, &["audit", "--json"]).await.code(0).json();
    assert_eq!(j["violations"], serde_json::json!([]), "{j}");

    let victim = burst(&t).await[0].user;
    let (bal, _) = money_of(&t.pool, victim).await;
    sqlx::query("UPDATE profiles SET balance = balance + 1 WHERE id = $1")
        .bind(victim)
        .execute(&t.pool)
        .await
        .expect("corrupt a balance");

    let bad = ic(&t.url, &["audit", "--json"]).await;
    let j = bad.code(1).clean().json();
    let v = j["violations"].as_array().expect("violations");
    let hit = v
        .iter()
        .find(|x| x["check_name"] == "balance_matches_ledger")
        .unwrap_or_else(|| panic!("balance_matches_ledger not named: {j}"));
    assert_eq!(hit["user_id"], victim.to_string(), "{j}");
    assert_eq!(money(&hit["expected"]), bal, "{j}");
    assert_eq!(money(&hit["actual"]), bal + Decimal::ONE, "{j}");
    let text = ic(&t.url, &["audit"]).await;
    assert!(text.code(1).stdout.contains("balance_matches_ledger"), "{}", text.stdout);
}

#[tokio::test]
async fn metrics_count_real_rollbacks_and_raise_a_burst_alert() {
    let t = test_db().await;
    let empty = ic(&t.url, &["metrics", "--json"]).await;
    let m = empty.code(0).clean().json();
    assert_eq!(m["metrics"]["total"], 0, "{m}");
    assert_eq!(m["metrics"]["succeeded"], 0, "{m}");
    assert!(m["metrics"]["success_rate_percent"].is_null(), "no rate when nothing ran, not 100: {m}");
    assert!(m["metrics"]["mean_ms"].is_null(), "{m}");
    assert_eq!(m["metrics"]["alerts"], serde_json::json!([]), "{m}");
    let text = ic(&t.url, &["metrics"]).await;
    assert!(text.code(0).stdout.contains("success rate none"), "{}", text.stdout);

    ic(&t.url, &["seed", "--seed", "7", "--date", "2026-11-25"]).await.code(0);
    let window =
        ["rollback", "--symbol", "GBPUSD", "--from", BURST_FROM, "--to", BURST_TO, "--reason", REASON, "--yes"];
    ic(&t.url, &window).await.code(0).clean();

    let after = ic(&t.url, &["metrics", "--json"]).await;
    let m = after.code(1).clean().json();
    let x = &m["metrics"];
    assert_eq!(x["total"], 60, "{m}");
    assert_eq!(x["succeeded"], 60, "{m}");
    assert_eq!(x["failed"], 0, "{m}");
    assert_eq!(x["orders_rolled_back"], 60, "{m}");
    // One batch: one operation, as the audit rows' batch ids say.
    let operations =
        count(&t, "SELECT count(DISTINCT batch_id) FROM order_audit_log WHERE action = 'order_rolled_back'").await;
    assert_eq!((x["operations"].as_i64(), operations), (Some(1), 1), "{m}");
    assert_eq!(money(&x["success_rate_percent"]), Decimal::from(100), "{m}");
    assert!(money(&x["mean_ms"]) > Decimal::ZERO && money(&x["p95_ms"]) > Decimal::ZERO, "{m}");
    assert_eq!(x["recent"], 60, "{m}");
    let alerts = x["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 1, "only the burst alert: {m}");
    assert_eq!(alerts[0]["alert"], "rollback_burst", "{m}");
    assert_eq!(alerts[0]["count"], 60, "{m}");
    let text = ic(&t.url, &["metrics"]).await;
    assert!(text.code(1).stdout.contains("ALERT: 60 rollbacks in the last 10 minutes"), "{}", text.stdout);

    let quiet = ic(&t.url, &["metrics", "--burst-count", "100", "--json"]).await;
    let m = quiet.code(0).clean().json();
    assert_eq!(m["metrics"]["total"], 60, "{m}");
    assert_eq!(m["metrics"]["alerts"], serde_json::json!([]), "{m}");
}

#[tokio::test]
async fn maintenance_mode_stops_and_resumes_new_orders() {
    let t = test_db().await;
    let user = account(&t.pool, "10000").await;
    let on = ic(&t.url, &["maintenance", "on", "--reason", "incident 42", "--json", "--operator", "carol"]).await;
    let j = on.code(0).clean().json();
    assert_eq!(j["state"]["maintenance_mode"], true, "{j}");
    assert_eq!(j["state"]["maintenance_reason"], "incident 42", "{j}");
    let text = ic(&t.url, &["maintenance", "on", "--reason", "still incident 42"]).await;
    assert!(text.code(0).stdout.contains("Maintenance mode is ON"), "{}", text.stdout);

    let print = fingerprint(&t.pool).await;
    let refused = execute(&t.pool, user, "EURUSD", "buy", "1000", "1.1", None).await;
    assert_eq!(refused["success"], false, "{refused}");
    assert_eq!(refused["error_code"], "maintenance_mode", "{refused}");
    assert_eq!(fingerprint(&t.pool).await, print, "a refused order changes nothing");

    let off = ic(&t.url, &["maintenance", "off", "--reason", "fixed"]).await;
    assert!(off.code(0).clean().stdout.contains("Maintenance mode is off"), "{}", off.stdout);
    let accepted = execute(&t.pool, user, "EURUSD", "buy", "1000", "1.1", None).await;
    assert_eq!(accepted["success"], true, "{accepted}");
}

/// One symbol's maintenance (issue 10, item 16): its new orders are refused, the other
/// symbols trade, and switching it off lets it trade again; proved by a probe each time.
#[tokio::test]
async fn maintenance_of_one_symbol_stops_it_and_lets_the_others_trade() {
    let t = test_db().await;
    let user = account(&t.pool, "100000").await;
    let on = ic(&t.url, &["maintenance", "on", "--symbol", "GBPUSD", "--reason", "burst on GBPUSD", "--json"]).await;
    let j = on.code(0).clean().json();
    assert_eq!((j["verified"].clone(), j["symbol"].clone()), (json!(true), json!("GBPUSD")), "{j}");
    assert_eq!(j["state"]["symbols"], json!(["GBPUSD"]), "{j}");
    assert_eq!(j["state"]["maintenance_mode"], false, "the book still trades: {j}");

    let refused = execute(&t.pool, user, "GBPUSD", "buy", "1000", "1.26", None).await;
    assert_eq!(refused["error_code"], "maintenance_mode", "{refused}");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("GBPUSD")), "{refused}");
    let other = execute(&t.pool, user, "EURUSD", "buy", "1000", "1.1", None).await;
    assert_eq!(other["success"], true, "another symbol trades: {other}");
    let logged: (bool, Option<String>) =
        sqlx::query_as("SELECT enabled, symbol FROM maintenance_log ORDER BY id DESC LIMIT 1")
            .fetch_one(&t.pool)
            .await
            .expect("log");
    assert_eq!(logged, (true, Some("GBPUSD".to_string())));

    // Bad input is refused and changes nothing.
    let print = fingerprint(&t.pool).await;
    ic(&t.url, &["maintenance", "on", "--symbol", "XXXYYY", "--reason", "r"])
        .await
        .code(2)
        .complains("no instrument XXXYYY");
    ic(&t.url, &["maintenance", "on", "--symbol", "gbp usd", "--reason", "r"]).await.code(2).complains("--symbol:");
    assert_eq!(fingerprint(&t.pool).await, print);

    let off = ic(&t.url, &["maintenance", "off", "--symbol", "GBPUSD", "--reason", "burst rolled back"]).await;
    off.code(0).clean().says("Maintenance mode for GBPUSD only is off");
    let again = execute(&t.pool, user, "GBPUSD", "buy", "1000", "1.26", None).await;
    assert_eq!(again["success"], true, "{again}");
    assert_consistent(&t.pool).await;
}

#[tokio::test]
async fn drill_passes_every_step_and_stays_out_of_metrics() {
    let t = test_db().await;
    let before = ic(&t.url, &["metrics", "--json"]).await.code(0).json();
    assert_eq!(before["metrics"]["total"], 0);

    let out = ic(&t.url, &["drill", "--json"]).await;
    let r = out.code(0).clean().json();
    assert_eq!(r["passed"], true, "{r}");
    let steps = r["steps"].as_array().expect("steps");
    assert!(steps.len() >= 10, "{r}");
    for s in steps {
        assert_eq!(s["passed"], true, "step failed: {s}");
    }
    assert_eq!(r["accounts"].as_array().map(Vec::len), Some(3), "{r}");
    assert_consistent(&t.pool).await;

    // Several rollbacks ran, yet none counts, and no burst alert fires.
    let after = ic(&t.url, &["metrics", "--json"]).await;
    let m = after.code(0).clean().json();
    assert_eq!(m["metrics"]["total"], 0, "{m}");
    assert_eq!(m["metrics"]["alerts"], serde_json::json!([]), "{m}");
    let drill_rollbacks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_audit_log WHERE is_drill AND action = 'order_rolled_back'")
            .fetch_one(&t.pool)
            .await
            .expect("count");
    assert!(drill_rollbacks >= 5, "the drill did roll back orders: {drill_rollbacks}");
    // Drill orders are left out of listings unless asked for.
    assert_eq!(ic(&t.url, &["orders", "--json"]).await.code(0).json(), serde_json::json!([]));
    let drill = ic(&t.url, &["orders", "--include-drill", "--json"]).await.code(0).json();
    assert!(drill.as_array().is_some_and(|a| a.len() >= 6), "{drill}");

    let text = ic(&t.url, &["drill"]).await;
    assert!(text.code(0).clean().stdout.contains("Drill PASSED"), "{}", text.stdout);
}

// ----------------------------------------------------------------------------------------
// Unreachable databases and the sandbox
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unreachable_database_exits_3_without_the_password() {
    let url = format!("postgres://bob:{PASSWORD}@127.0.0.1:1/nope");
    let commands: Vec<Vec<&str>> = vec![
        vec!["orders"],
        vec!["--json", "audit"],
        vec!["precheck", "6f1c1f5e-8d0e-4c59-9e3a-2b6a4f0b1c2d", "--user", "6f1c1f5e-8d0e-4c59-9e3a-2b6a4f0b1c2e"],
        vec!["rollback", "--symbol", "GBPUSD", "--from", BURST_FROM, "--to", BURST_TO, "--reason", REASON, "--yes"],
    ];
    let runs = commands.iter().map(|args| ic(&url, args));
    for out in futures::future::join_all(runs).await {
        out.code(3).clean();
        assert!(out.stderr.contains("database unreachable"), "{out:#?}");
    }
    // A URL that does not parse is bad input, and its password is not echoed either.
    let broken = format!("postgres://bob:{PASSWORD}@localhost:notaport/nope");
    let out = ic(&broken, &["orders"]).await;
    out.code(2).clean();
}

#[tokio::test]
async fn missing_server_binaries_say_how_to_install_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [vec!["orders"], vec!["sandbox", "start"], vec!["--json", "audit"]] {
        let mut c = console();
        c.env("INCIDENT_PG_BINDIR", "/nonexistent")
            .env("INCIDENT_CONSOLE_SANDBOX_DIR", dir.path().join("sandbox"))
            .args(&args);
        let out = run_cmd(c, None).await;
        out.code(3).clean();
        assert!(out.stderr.contains("apt-get install postgresql"), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("--database-url"), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("/nonexistent"), "names the setting: {}", out.stderr);
    }
}

/// Stops the sandbox and deletes its directory, also when the test fails half-way.
struct SandboxGuard {
    dir: PathBuf,
    sandbox: PathBuf,
}

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new(BIN)
            .env_remove("DATABASE_URL")
            .env_remove("INCIDENT_PG_BINDIR")
            .env("INCIDENT_CONSOLE_SANDBOX_DIR", &self.sandbox)
            .args(["sandbox", "stop"])
            .stdin(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sandbox_cmd(sandbox: &Path, args: &[&str]) -> tokio::process::Command {
    let mut c = console();
    c.env("INCIDENT_CONSOLE_SANDBOX_DIR", sandbox).args(args);
    c
}

async fn psql(url: &str, sql: &str) -> String {
    let mut c = tokio::process::Command::new("/usr/bin/psql");
    c.args(["-X", "-v", "ON_ERROR_STOP=1", "-At", url, "-c", sql]).kill_on_drop(true);
    let out = run_cmd(c, None).await;
    out.code(0);
    out.stdout
}

/// The SQL contract of DESIGN.md: signature, arguments as declared, result.
const CONTRACT: [(&str, &str, &str); 9] = [
    ("create_trading_account(uuid,numeric)", "p_user_id uuid, p_initial_deposit numeric", "jsonb"),
    (
        "execute_order_atomic(uuid,text,text,text,numeric,numeric,text,uuid)",
        "p_user_id uuid, p_symbol text, p_order_type text, p_side text, p_quantity numeric, p_price numeric, \
         p_idempotency_key text, p_transaction_id uuid DEFAULT NULL::uuid",
        "jsonb",
    ),
    (
        "rollback_execute_order_atomic(uuid,uuid,text)",
        "p_order_id uuid, p_user_id uuid, p_rollback_reason text",
        "jsonb",
    ),
    ("rollback_order_execution(uuid,uuid,text)", "p_order_id uuid, p_user_id uuid, p_rollback_reason text", "jsonb"),
    ("rollback_precheck(uuid,uuid)", "p_order_id uuid, p_user_id uuid", "jsonb"),
    ("rollback_postcheck(uuid,uuid,jsonb)", "p_order_id uuid, p_user_id uuid, p_baseline jsonb", "jsonb"),
    ("check_active_transactions(uuid)", "p_user_id uuid", "integer"),
    ("ledger_audit()", "", "TABLE(user_id uuid, check_name text, expected numeric, actual numeric)"),
    ("set_maintenance_mode(boolean,text)", "p_enabled boolean, p_reason text", "jsonb"),
];

#[tokio::test]
async fn sandbox_lifecycle_start_url_psql_status_stop() {
    // The server runs as `postgres` when the tests run as root: it must reach the directory.
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::temp_dir();
    let mode = std::fs::metadata(&base).expect("temp dir").permissions().mode();
    if mode & 0o001 == 0 {
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(mode | 0o011)).expect("chmod temp dir");
    }
    let dir = base.join(format!("ic-cli-sandbox-{}-{}", std::process::id(), Uuid::new_v4().simple()));
    std::fs::create_dir(&dir).expect("create sandbox parent");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod sandbox parent");
    let sandbox = dir.join("sandbox");
    let guard = SandboxGuard { dir: dir.clone(), sandbox: sandbox.clone() };

    let status = run_cmd(sandbox_cmd(&sandbox, &["sandbox", "status"]), None).await;
    assert!(status.code(0).clean().stdout.contains("Sandbox: not created"), "{}", status.stdout);

    let start = run_cmd(sandbox_cmd(&sandbox, &["sandbox", "start"]), None).await;
    start.code(0).clean();
    assert!(start.stdout.contains("Sandbox running"), "{}", start.stdout);
    assert!(start.stderr.contains("Demo book ready"), "first start seeds the book: {}", start.stderr);

    let url = run_cmd(sandbox_cmd(&sandbox, &["sandbox", "url"]), None).await;
    let url = url.code(0).clean().stdout.trim().to_string();
    assert!(url.starts_with("postgresql://") && !url.contains('\n'), "{url}");

    assert_eq!(psql(&url, "select count(*) from profiles").await.trim(), "200");
    let sql = format!(
        "SELECT s || '|' || coalesce(pg_get_function_arguments(to_regprocedure(s)), 'MISSING') || '|' || \
                coalesce(pg_get_function_result(to_regprocedure(s)), 'MISSING') \
         FROM unnest(ARRAY[{}]) AS s",
        CONTRACT.iter().map(|(s, _, _)| format!("'{s}'")).collect::<Vec<_>>().join(", ")
    );
    let got: BTreeSet<String> = psql(&url, &sql).await.lines().map(str::to_string).collect();
    let want: BTreeSet<String> = CONTRACT.iter().map(|(s, a, r)| format!("{s}|{a}|{r}")).collect();
    assert_eq!(got, want, "every contract function with exactly its signature");

    // The console's commands reach the sandbox too, with no URL given.
    let burst =
        run_cmd(sandbox_cmd(&sandbox, &["orders", "--symbol", "GBPUSD", "--status", "executed", "--limit", "5"]), None)
            .await;
    assert!(burst.code(0).clean().stdout.contains("5 order(s)"), "{}", burst.stdout);

    // migrate on the sandbox: its release history (migration 17) is never dropped, so an
    // undo below 17 is refused and changes nothing; a dry run then has nothing to do. (An undo
    // that lasts and a dry run of what is pending: tests/integration/migrations.rs.)
    let latest = incident_console::store::db::MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let version = "SELECT max(version) FROM _sqlx_migrations";
    // Below 17: the undo (one transaction) reaches 17, which refuses, so nothing is undone.
    let undo = run_cmd(sandbox_cmd(&sandbox, &["migrate", "--undo-to", "16"]), None).await;
    assert!(undo.code(1).clean().stderr.contains("releases are recorded"), "{}", undo.stderr);
    assert_eq!(psql(&url, version).await.trim(), latest.to_string(), "the refused undo changed nothing");
    assert_eq!(psql(&url, "SELECT count(*) FROM releases").await.trim(), "2");
    let dry = run_cmd(sandbox_cmd(&sandbox, &["migrate", "--dry-run"]), None).await;
    assert!(dry.code(0).clean().stdout.contains("nothing to do"), "{}", dry.stdout);

    // The sandbox tells the Level 3 story: the release history, and the headless drill
    // (on a database of its own there, with a real local service) passes every step.
    let list = run_cmd(sandbox_cmd(&sandbox, &["release", "list"]), None).await;
    let list = list.code(0).clean().stdout.clone();
    assert!(list.contains("gateway-lookup") && list.contains("fast-path") && list.contains("CURRENT"), "{list}");
    let drill = run_cmd(sandbox_cmd(&sandbox, &["drill", "--level", "3"]), None).await;
    drill.code(0).clean();
    assert!(drill.stdout.contains("Level 3 drill PASSED"), "{}", drill.stdout);
    assert_eq!(drill.stdout.matches(". PASS  ").count(), 15, "{}", drill.stdout);
    assert!(!drill.stdout.contains("FAIL"), "{}", drill.stdout);
    assert_eq!(
        psql(&url, "SELECT count(*) FROM pg_database WHERE datname = 'incident_console_drill3'").await.trim(),
        "0",
        "the drill's database is dropped"
    );
    assert_eq!(psql(&url, "SELECT count(*) FROM release_reverts").await.trim(), "0", "the sandbox is untouched");

    let status = run_cmd(sandbox_cmd(&sandbox, &["sandbox", "status"]), None).await;
    status.code(0).clean();
    assert!(status.stdout.contains("Sandbox: running"), "{}", status.stdout);
    assert!(status.stdout.contains(&url), "{}", status.stdout);

    run_cmd(sandbox_cmd(&sandbox, &["sandbox", "stop"]), None).await.code(0).clean();
    let status = run_cmd(sandbox_cmd(&sandbox, &["sandbox", "status"]), None).await;
    assert!(status.code(0).clean().stdout.contains("Sandbox: stopped"), "{}", status.stdout);

    drop(guard);
    assert!(!dir.exists(), "the directory is removed");
}
