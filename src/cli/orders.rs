//! `orders`: find orders.

use super::args::{self, GlobalArgs};
use super::connect;
use super::output::{self, print_json};
use crate::core::error::{EXIT_OK, Error, Result};
use crate::core::orders::{OrderListing, ResolvedQuery};
use crate::store::db;

pub(super) async fn orders(g: &GlobalArgs, a: args::OrdersArgs) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let [from, to] = db::resolve_time_bounds(&pool, [a.from, a.to]).await?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(Error::BadInput(format!("--from ({f}) must be before --to ({t})")));
    }
    let filter = OrderListing {
        filter: ResolvedQuery {
            id: a.id,
            user_id: a.user,
            transaction_id: a.transaction,
            symbol: a.symbol,
            status: a.status.map(|s| s.as_str().to_string()),
            from,
            to,
        },
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
