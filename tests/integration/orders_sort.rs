//! The orders list sorted by any column (issue 10, item 10), against the demo book: paging
//! through each column in each direction, down from the top and up from the end, lists
//! every order once in the order SQL written by hand gives (NULLS LAST, ties by id); the
//! repeat marks of a page are the burst's and only the burst's; the per-minute counts of
//! a filter peak in the burst.

use crate::support::db::{BURST_SQL, TestDb, seeded};
use incident_console::core::blast::REPEAT_WITHIN_SECONDS;
use incident_console::core::orders::{OrderSort, ResolvedQuery, SortColumn};
use incident_console::store::db::{self, PageFrom};
use uuid::Uuid;

/// Every order outside drill accounts in the order `ORDER BY` gives, by SQL written by
/// hand (not the store's sentinel: NULLS LAST).
async fn expected(t: &TestDb, sort: OrderSort) -> Vec<Uuid> {
    let column = match sort.column {
        SortColumn::Time => "o.created_at",
        SortColumn::Symbol => "o.symbol",
        SortColumn::Side => "o.side::text",
        SortColumn::Status => "o.status::text",
        SortColumn::Quantity => "o.quantity",
        SortColumn::Price => "o.price",
        SortColumn::Cost => "o.total_cost",
        SortColumn::User => "o.user_id",
    };
    let dir = if sort.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT o.id FROM orders o JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill \
         ORDER BY {column} {dir} NULLS LAST, o.id {dir}"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_all(&t.pool).await.expect("the orders in SQL's order")
}

/// The list paged down from its top, `limit` rows a page, as the console pages it.
async fn paged_down(t: &TestDb, sort: OrderSort, limit: i64) -> Vec<Uuid> {
    let all = ResolvedQuery::default();
    let mut out = Vec::new();
    let mut from = PageFrom::Start;
    loop {
        let (rows, more) = db::orders_page(&t.pool, &all, sort, &from, limit).await.expect("a page");
        assert!(rows.len() as i64 <= limit);
        out.extend(rows.iter().map(|r| r.id));
        match (more, rows.last()) {
            (true, Some(last)) => from = PageFrom::After(sort.key(last)),
            _ => return out,
        }
    }
}

/// The list paged up from its end, put back in the list's order.
async fn paged_up(t: &TestDb, sort: OrderSort, limit: i64) -> Vec<Uuid> {
    let all = ResolvedQuery::default();
    let mut out = Vec::new();
    let mut from = PageFrom::End;
    loop {
        let (rows, more) = db::orders_page(&t.pool, &all, sort, &from, limit).await.expect("a page");
        out.extend(rows.iter().map(|r| r.id));
        match (more, rows.last()) {
            (true, Some(last)) => from = PageFrom::Before(sort.key(last)),
            _ => break,
        }
    }
    out.reverse();
    out
}

#[tokio::test]
async fn every_column_pages_through_every_order_once_in_sql_order() {
    let t = seeded().await;
    let nulls: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE price IS NULL OR total_cost IS NULL")
        .fetch_one(&t.pool)
        .await
        .expect("count");
    assert!(nulls > 0, "the book has orders without a price or a cost, or the NULL case proves nothing");
    for column in SortColumn::ALL {
        for descending in [true, false] {
            let sort = OrderSort { column, descending };
            let want = expected(&t, sort).await;
            assert!(want.len() > 500, "a book deeper than a few pages: {}", want.len());
            // An odd page size, so pages end in the middle of runs of equal values.
            let down = paged_down(&t, sort, 97).await;
            assert_eq!(down.len(), want.len(), "{sort:?}: every order once");
            assert!(down == want, "{sort:?}: paged down in SQL's order");
            let up = paged_up(&t, sort, 97).await;
            assert!(up == want, "{sort:?}: paged up from the end in SQL's order");
        }
    }
}

#[tokio::test]
async fn a_pages_repeat_marks_are_the_bursts_orders_and_only_those() {
    let t = seeded().await;
    let burst: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM orders WHERE status = 'executed' AND {BURST_SQL}"
    )))
    .fetch_all(&t.pool)
    .await
    .expect("the burst");
    assert_eq!(burst.len(), 60);
    // The list sorted by quantity, largest first: the first pages, as the console reads them.
    let all = ResolvedQuery::default();
    let sort = OrderSort { column: SortColumn::Quantity, descending: true };
    let mut from = PageFrom::Start;
    let mut marked: Vec<(Uuid, i64)> = Vec::new();
    let mut listed = 0;
    loop {
        let (rows, more) = db::orders_page(&t.pool, &all, sort, &from, 200).await.expect("a page");
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        listed += ids.len();
        marked.extend(db::repeat_counts(&t.pool, &ids, REPEAT_WITHIN_SECONDS).await.expect("marks"));
        match (more, rows.last()) {
            (true, Some(last)) => from = PageFrom::After(sort.key(last)),
            _ => break,
        }
    }
    assert!(listed > 500);
    let mut ids: Vec<Uuid> = marked.iter().map(|m| m.0).collect();
    ids.sort();
    let mut want = burst.clone();
    want.sort();
    assert_eq!(ids, want, "marked: the burst's 60 executions, no other order");
    // The burst is 20 orders executed three times each: each copy has two twins (×3).
    assert!(marked.iter().all(|m| m.1 == 2), "{marked:?}");
    // The same rule as the blast radius's, which finds the same orders.
    let mut repeated: Vec<Uuid> = db::repeated_executions(&t.pool, REPEAT_WITHIN_SECONDS)
        .await
        .expect("repeated")
        .into_iter()
        .map(|r| r.id)
        .collect();
    repeated.sort();
    assert_eq!(repeated, want);
}

#[tokio::test]
async fn orders_per_minute_of_a_filter_peak_in_the_burst() {
    let t = seeded().await;
    let gbpusd = ResolvedQuery { symbols: vec!["GBPUSD".into()], ..ResolvedQuery::default() };
    let rows = db::orders_per_minute(&t.pool, &gbpusd).await.expect("per minute");
    let total: i64 = rows.iter().map(|r| r.1).sum();
    let want: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orders o JOIN profiles pr ON pr.id = o.user_id AND NOT pr.is_drill \
         WHERE o.symbol = 'GBPUSD' \
           AND o.created_at > (SELECT max(o2.created_at) FROM orders o2 JOIN profiles p2 ON p2.id = o2.user_id \
                               AND NOT p2.is_drill WHERE o2.symbol = 'GBPUSD') - interval '1 day'",
    )
    .fetch_one(&t.pool)
    .await
    .expect("count");
    assert_eq!(total, want, "every GBPUSD order of the day counted once");
    let peak = rows.iter().max_by_key(|r| r.1).expect("a peak");
    let minute = peak.0.format("%H:%M").to_string();
    assert!(("13:02".."13:06").contains(&minute.as_str()), "the peak {peak:?} is in the burst");
    println!("FIGURES per minute GBPUSD: {total} orders in {} minutes, peak {} at {minute}", rows.len(), peak.1);
}
