//! `migrate [--dry-run] [--undo-to V]`.

use serde_json::{Value, json};

use super::args::GlobalArgs;
use super::output::print_json;
use crate::core::error::{EXIT_OK, Result};
use crate::store::db;

pub(super) async fn migrate(g: &GlobalArgs, dry_run: bool, undo_to: Option<i64>) -> Result<i32> {
    // Migrating needs no sandbox seeding first: connect to the URL, or prepare the sandbox.
    let settings = crate::store::target::resolve(g.database_url(), &g.session(), &super::say).await?;
    let pool = settings.session_pool(2, "migrating").await?;
    let applied = db::applied_migrations(&pool).await?;
    let plan: Vec<&sqlx::migrate::Migration> = match undo_to {
        None => db::MIGRATOR
            .iter()
            .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
            .collect(),
        Some(target) => {
            let mut v: Vec<_> = db::MIGRATOR
                .iter()
                .filter(|m| m.migration_type.is_down_migration() && m.version > target && applied.contains(&m.version))
                .collect();
            v.sort_by_key(|m| std::cmp::Reverse(m.version));
            v
        }
    };
    if dry_run {
        if g.json {
            let list: Vec<Value> = plan
                .iter()
                .map(|m| json!({ "version": m.version, "description": m.description, "sql": m.sql.as_str() }))
                .collect();
            print_json(&json!({ "dry_run": true, "migrations": list }))?;
        } else if plan.is_empty() {
            println!("-- nothing to do: the database is at the latest version");
        } else {
            for m in &plan {
                println!(
                    "-- migration {} {} (runs in one transaction)\n{}\n",
                    m.version,
                    m.description,
                    m.sql.as_str().trim_end()
                );
            }
        }
        return Ok(EXIT_OK);
    }
    match undo_to {
        None => db::migrate(&pool).await?,
        Some(target) => {
            db::undo_to(&pool, target).await?;
        }
    }
    if g.json {
        print_json(&json!({ "applied": plan.iter().map(|m| m.version).collect::<Vec<_>>() }))?;
    } else if plan.is_empty() {
        println!("Nothing to do: the database is at the latest version.");
    } else {
        for m in &plan {
            println!("{} {} {}", if undo_to.is_some() { "undid" } else { "applied" }, m.version, m.description);
        }
    }
    Ok(EXIT_OK)
}
