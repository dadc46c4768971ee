//! `migrate [--dry-run] [--undo-to V]`.

use serde_json::{Value, json};

use super::args::GlobalArgs;
use super::output::print_json;
use super::say;
use crate::core::error::{EXIT_OK, Result};
use crate::store::{db, target};

pub(super) async fn migrate(g: &GlobalArgs, dry_run: bool, undo_to: Option<i64>) -> Result<i32> {
    // Not the usual connect path: that migrates and seeds the sandbox, which would apply
    // the very migrations a dry run only shows, and undo an undo.
    let url = match g.database_url() {
        Some(url) => Some(url.to_string()),
        None => target::sandbox_unmigrated(!dry_run, &say).await?,
    };
    let pool = match &url {
        Some(url) => Some(
            target::settings_for(url.clone(), g.database_url().is_none(), &g.session())
                .session_pool(2, "migrating")
                .await?,
        ),
        None => None,
    };
    let applied = match &pool {
        Some(pool) => db::applied_migrations(pool).await?,
        None => Vec::new(),
    };
    let plan = plan(&applied, undo_to);
    if dry_run {
        if pool.is_none() && !g.json {
            println!("-- the sandbox does not exist yet: `migrate` would create it and apply every migration");
        }
        print_plan(g, &plan, undo_to)?;
        return Ok(EXIT_OK);
    }
    let Some(pool) = pool else {
        // Unreachable in practice: without --dry-run the sandbox was created above.
        return Err(crate::core::error::Error::Sandbox("the sandbox database could not be created".into()));
    };
    match undo_to {
        None => db::migrate(&pool).await?,
        Some(target) => {
            db::undo_to(&pool, target).await?;
        }
    }
    pool.close().await;
    if g.json {
        print_json(&json!({ "applied": plan.iter().map(|m| m.version).collect::<Vec<_>>() }))?;
    } else if plan.is_empty() {
        match undo_to {
            Some(v) => println!("Nothing to undo: no migration above {v} is applied."),
            None => println!("Nothing to do: the database is at the latest version."),
        }
    } else {
        for m in &plan {
            println!("{} {} {}", if undo_to.is_some() { "undid" } else { "applied" }, m.version, m.description);
        }
    }
    Ok(EXIT_OK)
}

/// The migrations a run would apply (oldest first) or undo (newest first).
fn plan(applied: &[i64], undo_to: Option<i64>) -> Vec<&'static sqlx::migrate::Migration> {
    match undo_to {
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
    }
}

/// The plan as SQL (or JSON), nothing run.
fn print_plan(g: &GlobalArgs, plan: &[&sqlx::migrate::Migration], undo_to: Option<i64>) -> Result<()> {
    if g.json {
        let list: Vec<Value> = plan
            .iter()
            .map(|m| json!({ "version": m.version, "description": m.description, "sql": m.sql.as_str() }))
            .collect();
        print_json(&json!({ "dry_run": true, "migrations": list }))?;
    } else if plan.is_empty() {
        match undo_to {
            Some(v) => println!("-- nothing to undo: no migration above {v} is applied"),
            None => println!("-- nothing to do: the database is at the latest version"),
        }
    } else {
        println!("-- all of it runs in one transaction: if any part fails, nothing is changed");
        for m in plan {
            println!("-- migration {} {}\n{}\n", m.version, m.description, m.sql.as_str().trim_end());
        }
    }
    Ok(())
}
