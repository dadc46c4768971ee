//! The blast radius against the demo book (issue 10): the repeated executions the SQL finds
//! on the book's last day are exactly the burst's 60 orders, grouped into one suspicion
//! whose filter lists them; executions per minute peak inside the burst.

use crate::support::db::{BURST_SQL, seeded};
use incident_console::core::blast::{REPEAT_WITHIN_SECONDS, per_minute, suspicions};
use incident_console::store::db;
use uuid::Uuid;

#[tokio::test]
async fn the_blast_radius_finds_the_burst_and_nothing_else() {
    let t = seeded().await;
    let mut burst: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM orders WHERE status = 'executed' AND {BURST_SQL}"
    )))
    .fetch_all(&t.pool)
    .await
    .expect("the burst");
    burst.sort();
    assert_eq!(burst.len(), 60);

    let repeated = db::repeated_executions(&t.pool, REPEAT_WITHIN_SECONDS).await.expect("repeated executions");
    let mut found: Vec<Uuid> = repeated.iter().map(|r| r.id).collect();
    found.sort();
    assert_eq!(found, burst, "the repeated executions are the burst, all of it and only it");

    let s = suspicions(repeated, chrono::Duration::minutes(2));
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!((s[0].symbol.as_str(), s[0].orders.len(), s[0].groups), ("GBPUSD", 60, 20));
    // Its filter: from its first minute to the minute after its last, which lists it whole.
    let last_minute = s[0].to.format("%H:%M").to_string();
    let filter = s[0].filter();
    assert!(filter.starts_with("symbol:GBPUSD from:13:02 to:"), "{filter}");
    assert!(
        filter.as_str() > &*format!("symbol:GBPUSD from:13:02 to:{last_minute}"),
        "{filter} ends after {last_minute}"
    );

    let rows = db::executions_per_minute(&t.pool).await.expect("per minute");
    let minutes = per_minute(&rows, Some("GBPUSD"));
    let peak = minutes.iter().max_by_key(|m| m.1).expect("a peak");
    assert!(
        peak.0 >= s[0].from - chrono::Duration::minutes(1) && peak.0 <= s[0].to,
        "the peak {peak:?} is in the burst"
    );
    println!(
        "FIGURES blast radius: {} repeated = burst {}; suspicion {} {}–{}; GBPUSD peak {} at {}",
        found.len(),
        burst.len(),
        s[0].symbol,
        s[0].from,
        s[0].to,
        peak.1,
        peak.0
    );
}
