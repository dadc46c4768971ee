//! The filter language against the database (issue 10, item 2): `orders --filter` with the
//! real binary on the demo book, each answer held against SQL written by hand; terms that
//! mean nothing are errors that name them, never "0 match".

use crate::support::cli::{Out, console_in, run_cmd};
use crate::support::db::{TestDb, count, seeded};
use serde_json::Value;

async fn orders(t: &TestDb, filter: &str) -> Out {
    let home = tempfile::tempdir().expect("home");
    let mut c = console_in(home.path(), "filter-test");
    c.arg("--database-url").arg(&t.url).args(["--json", "orders", "--limit", "100000", "--filter", filter]);
    run_cmd(c, None).await
}

/// The ids the binary listed, sorted.
async fn listed(t: &TestDb, filter: &str) -> Vec<String> {
    let j = orders(t, filter).await.code(0).clean().json();
    let rows = j.as_array().unwrap_or_else(|| panic!("{filter:?}: not a list: {j}"));
    let mut ids: Vec<String> =
        rows.iter().map(|r| r["id"].as_str().unwrap_or_else(|| panic!("no id in {r}")).to_string()).collect();
    ids.sort();
    ids
}

/// The ids SQL finds outside drill accounts for a condition on `o`, sorted.
async fn expected(t: &TestDb, condition: &str) -> Vec<String> {
    let sql = format!(
        "SELECT o.id::text FROM orders o JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill \
         WHERE {condition} ORDER BY 1"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&t.pool).await.expect(condition)
}

#[tokio::test]
async fn the_filter_language_lists_what_sql_finds() {
    let t = seeded().await;
    // The book's last trading day, in UTC, as the filter's times of day mean.
    let day = "(SELECT max(o2.created_at AT TIME ZONE 'UTC')::date FROM orders o2 \
               JOIN profiles p2 ON p2.id = o2.user_id AND NOT p2.is_drill)";
    let cases = [
        ("GBPUSD EURUSD", "o.symbol IN ('GBPUSD', 'EURUSD')".to_string()),
        ("symbol:gbpusd,eurusd", "o.symbol IN ('GBPUSD', 'EURUSD')".to_string()),
        ("GBPUSD sell", "o.symbol = 'GBPUSD' AND o.side = 'sell'".to_string()),
        ("executed rolled_back", "o.status IN ('executed', 'rolled_back')".to_string()),
        ("GBPUSD qty:20000..50000", "o.symbol = 'GBPUSD' AND o.quantity BETWEEN 20000 AND 50000".to_string()),
        ("qty:>50000 buy", "o.quantity > 50000 AND o.side = 'buy'".to_string()),
        (
            "GBPUSD from:13:02 to:13:06",
            format!(
                "o.symbol = 'GBPUSD' AND o.created_at >= ({day} + time '13:02') AT TIME ZONE 'UTC' \
                 AND o.created_at < ({day} + time '13:06') AT TIME ZONE 'UTC'"
            ),
        ),
    ];
    for (filter, condition) in &cases {
        let want = expected(&t, condition).await;
        assert!(!want.is_empty(), "{filter:?}: the book must have some, or this proves nothing");
        assert_eq!(listed(&t, filter).await, want, "{filter:?} against {condition}");
    }
    // Several alternatives are more than either alone: OR within a key, not the last one.
    assert!(
        expected(&t, cases[0].1.as_str()).await.len() > expected(&t, "o.symbol = 'EURUSD'").await.len(),
        "GBPUSD EURUSD is not EURUSD alone"
    );

    // Ids by the prefix the console shows, for orders, users and transaction groups.
    let (order, user, tx): (String, String, String) = sqlx::query_as(
        "SELECT o.id::text, o.user_id::text, o.transaction_id::text FROM orders o \
         WHERE o.transaction_id IS NOT NULL ORDER BY o.created_at LIMIT 1",
    )
    .fetch_one(&t.pool)
    .await
    .expect("an order in a transaction group");
    for (filter, column, id) in
        [("id:", "o.id", &order), ("", "o.id", &order), ("user:", "o.user_id", &user), ("tx:", "o.transaction_id", &tx)]
    {
        let prefix = &id[..8];
        let want = expected(&t, &format!("{column}::text LIKE '{prefix}%'")).await;
        assert!(!want.is_empty());
        assert_eq!(listed(&t, &format!("{filter}{prefix}")).await, want, "{filter}{prefix}");
    }
    let whole = listed(&t, &format!("id:{order}")).await;
    assert_eq!(whole, vec![order]);
    println!("FIGURES filter cases: {} compared with SQL, plus 4 id prefixes", cases.len());
}

#[tokio::test]
async fn a_filter_that_means_nothing_is_an_error_that_names_the_term() {
    let t = seeded().await;
    let refused = |out: Out, needle: &str| {
        let j: Value = out.code(2).json();
        let error = j["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
    };
    refused(orders(&t, "GBPUSD sel").await, "no instrument has the symbol SEL");
    refused(orders(&t, "XYZABC").await, "no instrument has the symbol XYZABC");
    refused(orders(&t, "from:13:06 to:13:02").await, "empty window");
    // An instant against a time of day: told once the book's day is known.
    refused(orders(&t, "from:2030-01-01T00:00 to:13:02").await, "empty window");
    refused(orders(&t, "colour:red").await, "colour:red");
    refused(orders(&t, "qty:50..10").await, "qty:50..10");
    refused(orders(&t, "side:up").await, "side:up");
    refused(orders(&t, "user:bob").await, "user:bob");
    // Nothing was changed by any of it.
    assert_eq!(count(&t, "SELECT count(*) FROM order_audit_log WHERE action = 'order_rolled_back' AND created_at > now() - interval '1 minute'").await, 0);
}
