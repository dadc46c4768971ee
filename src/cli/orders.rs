//! `orders`: find orders.

use super::args::{self, GlobalArgs};
use super::connect;
use super::output::{self, print_json};
use crate::core::error::{EXIT_OK, Error, Result};
use crate::core::orders::filter::parse_filter;
use crate::core::orders::{IdRange, OrderListing, OrderQuery};
use crate::store::db;

pub(super) async fn orders(g: &GlobalArgs, a: args::OrdersArgs) -> Result<i32> {
    let query = match &a.filter {
        // The console's filter language; clap keeps the single-term flags out of it.
        Some(text) => parse_filter(text).map_err(|e| Error::BadInput(format!("--filter: {e}")))?,
        None => OrderQuery {
            ids: a.id.map(IdRange::exact).into_iter().collect(),
            user_ids: a.user.map(IdRange::exact).into_iter().collect(),
            transaction_ids: a.transaction.map(IdRange::exact).into_iter().collect(),
            symbols: a.symbol.into_iter().collect(),
            statuses: a.status.map(|s| s.as_str().to_string()).into_iter().collect(),
            from: a.from,
            to: a.to,
            ..Default::default()
        },
    };
    let (_s, pool) = connect(g).await?;
    let times = db::resolve_time_bounds(&pool, [query.from, query.to]).await?;
    let unknown =
        if query.symbols.is_empty() { Vec::new() } else { db::unknown_symbols(&pool, &query.symbols).await? };
    let filter = OrderListing {
        filter: query.resolved(times, &unknown).map_err(Error::BadInput)?,
        include_drill: a.include_drill,
        limit: a.limit,
    };
    let rows = db::find_orders(&pool, &filter).await?;
    if rows.len() as i64 == a.limit && g.json {
        eprintln!("note: {} orders shown, the --limit; more may match", a.limit);
    }
    if g.json {
        print_json(&rows)?;
    } else {
        print!("{}", output::orders(&rows));
        println!(
            "{} order(s){}",
            rows.len(),
            if rows.len() as i64 == a.limit { " (limit reached; use --limit)" } else { "" }
        );
    }
    Ok(EXIT_OK)
}
