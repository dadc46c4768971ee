//! `bench` end to end, small: the real binary on the test cluster measures every row of the
//! issue's table (rollbacks through the batch path, the contract called by a pgbench script,
//! the CLI rolling back an order file, the audit, and the console launched in tmux), checks
//! what it counted against the database itself, and leaves no database behind.

use serde_json::Value;

use crate::support::cli::{console_in, run_cmd};
use crate::support::db::admin_url;

fn f(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for p in path {
        v = &v[p];
    }
    v.as_f64().unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}

#[tokio::test]
async fn bench_measures_every_row_of_the_table_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let admin = admin_url();
    let mut c = console_in(dir.path(), "bench-test");
    c.env("DATABASE_URL", &admin).args([
        "--json",
        "bench",
        "--orders",
        "120",
        "--concurrency",
        "2",
        "--chunk",
        "1,50",
        "--pgbench-seconds",
        "1",
        "--audit-orders",
        "600",
        "--batch-orders",
        "60",
        "--console-rounds",
        "1",
    ]);
    let out = run_cmd(c, None).await;
    out.code(0);
    let r = out.json();

    // Two chunk sizes at one concurrency, each all of its orders, next to TPC-B.
    let rollback = r["rollback"].as_array().expect("rollback figures");
    assert_eq!(rollback.len(), 2, "{r}");
    for x in rollback {
        assert_eq!(x["orders"], 120, "{x}");
        assert!(f(x, &["ratio"]) > 0.0, "{x}");
    }

    // The script: 4 clients × 30 calls, every one an order rolled back (the bench counts
    // them in the database and fails otherwise).
    let s = &r["single_calls"];
    assert_eq!(s["clients"], 4, "{s}");
    assert_eq!(s["orders"], 120, "{s}");
    let ratio = f(s, &["ratio"]);
    let expected = f(s, &["orders_per_second"]) / f(s, &["pgbench_tps"]);
    assert!((ratio - expected).abs() < 1e-9, "{s}");

    // The CLI: the real binary rolled back the file's 60 orders.
    let b = &r["cli_batch"];
    assert_eq!(b["orders"], 60, "{b}");
    assert!(f(b, &["seconds"]) > 0.0 && f(b, &["ratio"]) > 0.0, "{b}");

    // The audit over everything seeded (grown to 600) is clean.
    let a = &r["audit"];
    assert!(a["orders"].as_i64().unwrap_or(0) >= 600, "{a}");
    assert_eq!(a["violations"], 0, "{a}");

    // The console in tmux: a frame, then orders, then keys and memory.
    let c = &r["console"];
    assert_eq!(c["rounds"], 1, "{c}");
    let first = f(c, &["first_frame_ms"]);
    let listed = f(c, &["orders_listed_ms"]);
    assert!(first > 0.0 && listed >= first, "{c}");
    assert!(f(c, &["key_ms"]) > 0.0, "{c}");
    assert!(f(c, &["rss_mb"]) > 1.0, "{c}");

    // Nothing left on the server: the bench's databases are dropped.
    let mut conn = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&admin).await.expect("connect as admin")
    };
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'incident\\_bench\\_%' OR datname LIKE 'incident\\_pgbench\\_%'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count databases");
    assert_eq!(left, 0);
}
