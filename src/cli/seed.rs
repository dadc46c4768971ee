//! `seed`: the demo book into an empty database.

use serde_json::json;

use super::args::{self, GlobalArgs};
use super::output::print_json;
use crate::core::error::{EXIT_OK, Error, Result};
use crate::store::db;
use crate::store::{demo, target};

pub(super) async fn seed(g: &GlobalArgs, a: args::SeedArgs) -> Result<i32> {
    let settings = match g.database_url() {
        Some(url) => target::settings_for(url.to_string(), false, &g.session()),
        None => {
            return Err(Error::BadInput(
                "the sandbox is seeded when it is created; for a fresh book run `incident-console sandbox reset`, \
                 or give --database-url of an empty database to seed"
                    .into(),
            ));
        }
    };
    let pool = settings.session_pool(2, "seeding").await?;
    db::migrate(&pool).await?;
    let spec =
        demo::DemoSpec::standard(a.seed, a.date.unwrap_or_else(|| demo::default_trading_date(chrono::Utc::now())));
    let mut conn = pool.acquire().await?;
    let book = target::seed_demo(&mut conn, &spec).await?;
    if g.json {
        print_json(&json!({ "accounts": book.accounts.len(), "executed": book.executed.len(),
                             "unexecuted": book.unexecuted.len(), "burst": book.burst }))?;
    } else {
        println!(
            "Seeded {} accounts, {} executed and {} other orders. Bad burst: {} executions on {} from {} to {} UTC.",
            book.accounts.len(),
            book.executed.len(),
            book.unexecuted.len(),
            book.burst.orders,
            book.burst.symbol,
            book.burst.from.format("%Y-%m-%d %H:%M"),
            book.burst.to.format("%H:%M")
        );
    }
    Ok(EXIT_OK)
}
