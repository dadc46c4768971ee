//! `bench --scale` run as a real process against the test cluster: the book it generates on
//! the server has exactly the migrated schema (indexes, constraints, triggers enabled), the
//! expected rows, audits clean from the tables alone, and every figure of the cost curve is
//! measured (through the console's and the CLI's own functions) and printed with what it
//! should do as the book grows.

use sqlx::{Connection, PgConnection};

use crate::support::cli::{console_in, run_cmd};
use crate::support::db::{admin_url, database_url, test_db};

/// Indexes, constraints and triggers (with whether they fire) of the public schema, one
/// definition a line, sorted: what "the same schema" means here.
const SCHEMA: &str = "SELECT string_agg(d, E'\\n' ORDER BY d) FROM ( \
       SELECT 'c ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) || ' ' || convalidated AS d \
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
       UNION ALL \
       SELECT 'i ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
       WHERE c.relnamespace = 'public'::regnamespace \
       UNION ALL \
       SELECT 't ' || tgrelid::regclass || ' ' || tgname || ' ' || tgenabled::text FROM pg_trigger t \
       JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal) s";

/// Runs `bench --scale` keeping its database; returns the report and the database's name.
async fn bench(args: &[&str]) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = console_in(dir.path(), "bench-test");
    cmd.args(["--json", "--database-url", &admin_url(), "bench", "--scale", "--runs", "1", "--keep-database"]);
    cmd.args(args);
    let out = run_cmd(cmd, None).await;
    out.code(0).clean();
    let name = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("Kept the database "))
        .unwrap_or_else(|| panic!("no database named in:\n{}", out.stderr))
        .trim()
        .to_string();
    assert!(out.stderr.contains("orders with their positions and transfers"), "progress on stderr:\n{}", out.stderr);
    (out.json(), name)
}

async fn drop_database(name: &str) {
    let mut admin = PgConnection::connect(&admin_url()).await.expect("admin");
    let _ = incident_console::store::db::drop_database(&mut admin, name).await;
}

/// Checks the kept book: the migrated schema, the rows, a clean full audit. Returns the
/// orders rolled back by the figures.
async fn check_book(name: &str, orders: i64) -> i64 {
    let reference = test_db().await;
    let expected_schema: String = sqlx::query_scalar(SCHEMA).fetch_one(&reference.pool).await.expect("schema");
    let mut c = PgConnection::connect(&database_url(name)).await.expect("the kept book");
    let schema: String = sqlx::query_scalar(SCHEMA).fetch_one(&mut c).await.expect("schema");
    assert_eq!(schema, expected_schema, "the generated book has the migrated schema, exactly");
    let (n, executed, rolled_back, positions, users): (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM orders WHERE status = 'executed'), \
                (SELECT count(*) FROM orders WHERE status = 'rolled_back'), (SELECT count(*) FROM positions), \
                (SELECT count(*) FROM profiles)",
    )
    .fetch_one(&mut c)
    .await
    .expect("counts");
    assert_eq!((n, positions, users), (orders, orders, orders / 100), "orders, positions, accounts");
    assert_eq!(executed + rolled_back, orders);
    let (deposits, executions, reversals): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE kind = 'deposit'), count(*) FILTER (WHERE kind IN ('margin_lock', 'commission')), \
                count(*) FILTER (WHERE kind = 'reversal') FROM ledger_transfers",
    )
    .fetch_one(&mut c)
    .await
    .expect("transfers");
    assert_eq!(
        (deposits, executions, reversals),
        (users, 2 * orders, 2 * rolled_back),
        "deposits, executions, reversals"
    );
    // The money: every account's cache against its ledger, every order against its
    // transfers and position, recomputed from the tables alone.
    let violations: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ledger_audit_full()").fetch_one(&mut c).await.expect("audit");
    assert_eq!(violations, 0, "the generated book audits clean");
    // The book spans its orders at 100,000 a day, ending on yesterday's last second.
    let days: i64 = sqlx::query_scalar("SELECT count(DISTINCT (created_at AT TIME ZONE 'UTC')::date) FROM orders")
        .fetch_one(&mut c)
        .await
        .expect("days");
    assert_eq!(days, (orders + 99_999) / 100_000);
    let _ = c.close().await;
    rolled_back
}

fn figure<'a>(size: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    size["figures"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no figure {name:?} in {size}"))
}

#[tokio::test]
async fn scale_bench_at_10k_measures_every_figure_on_a_clean_book() {
    let (report, name) = bench(&["--sizes", "10k"]).await;
    let rolled_back = check_book(&name, 10_000).await;
    drop_database(&name).await;
    // One single rollback and one batch of 1,000 (one run each).
    assert_eq!(rolled_back, 1 + 1000);
    let size = &report["sizes"][0];
    assert_eq!(size["orders"], 10_000);
    assert_eq!(size["accounts"], 100);
    for name in [
        "orders list, first page",
        "symbol + 1 h window, first page",
        "count in the list's title",
        "blast radius",
        "pre-check",
        "single rollback",
        "batch of 1,000",
        "audit from checkpoint",
        "full audit",
        "console RSS after paging",
    ] {
        let f = figure(size, name);
        assert!(f["median"].as_f64().is_some_and(|m| m > 0.0), "{name}: {f}");
        assert!(f["expected"].as_str().is_some_and(|e| !e.is_empty()), "{name} says how it should grow");
        assert_eq!(f["runs"], 1);
        assert!(f["growth"].is_null(), "no size before the first");
    }
    // A console holding a few pages of 200 orders: tens of MB, not the book.
    let rss = figure(size, "console RSS after paging")["median"].as_f64().unwrap_or(0.0);
    assert!((4_000.0..200_000.0).contains(&rss), "RSS {rss} KiB");
    assert!(size["build"]["total_seconds"].as_f64().is_some_and(|s| s > 0.0));
}

#[tokio::test]
async fn scale_bench_at_100k_builds_a_clean_book_with_the_migrated_schema() {
    let (report, name) = bench(&["--sizes", "100k", "--no-console"]).await;
    let rolled_back = check_book(&name, 100_000).await;
    drop_database(&name).await;
    assert_eq!(rolled_back, 1 + 1000);
    let size = &report["sizes"][0];
    assert_eq!(size["accounts"], 1000);
    let figures = size["figures"].as_array().map_or(0, Vec::len);
    assert_eq!(figures, 9, "every figure but the console's");
}
