//! `config path|example|check`.

use serde_json::{Value, json};

use super::args::{self, GlobalArgs};
use super::output::print_json;
use crate::core::error::{EXIT_OK, Result};
use crate::core::sanitize;

pub(super) fn config_command(g: &GlobalArgs, action: args::ConfigAction) -> Result<i32> {
    let path = crate::store::config::config_path()?;
    match action {
        args::ConfigAction::Path => {
            if g.json {
                print_json(&json!({ "path": path, "exists": path.exists() }))?;
            } else {
                println!("{}", path.display());
            }
        }
        args::ConfigAction::Example => print!("{}", crate::store::config::EXAMPLE),
        args::ConfigAction::Check => {
            let c = crate::store::config::ConsoleConfig::load()?;
            if g.json {
                let keys: serde_json::Map<String, Value> = crate::core::keys::KeyAction::ALL
                    .into_iter()
                    .chain(crate::core::keys::KeyAction::DIALOG)
                    .map(|a| (a.describe().to_string(), json!(c.keymap.keys_for(a))))
                    .collect();
                print_json(&json!({ "path": path, "exists": path.exists(), "valid": true, "keys": keys,
                                    "service_configured": c.service.is_some(),
                                    "replica_url": c.replica_url.as_ref().map(ToString::to_string),
                                    "replica_max_lag_ms": c.replica_max_lag.as_millis() as u64 }))?;
            } else {
                println!(
                    "{}: {}",
                    sanitize::line(&path.display().to_string()),
                    if path.exists() { "ok" } else { "not present, defaults in effect" }
                );
                for a in crate::core::keys::KeyAction::ALL.into_iter().chain(crate::core::keys::KeyAction::DIALOG) {
                    println!("  {:<16} {}", c.keymap.keys_for(a), a.describe());
                }
                if let Some(url) = &c.replica_url {
                    // Displayed with the password hidden (`SecretUrl`).
                    println!(
                        "replica: {url} (reads go back to the primary past {} of lag)",
                        crate::core::replica::lag_text(c.replica_max_lag.as_millis().try_into().unwrap_or(u64::MAX))
                    );
                }
                if let Some(svc) = &c.service {
                    // Shown as `service rollback` would show them: secrets redacted.
                    let r = crate::core::service::Redactor::new(&svc.redact);
                    println!("[service]");
                    println!("  rollback  {}", svc.rollback.shown(None, &r));
                    println!("  version   {}", svc.version.shown(None, &r));
                    if let Some(p) = &svc.probe {
                        println!("  probe     {}", p.shown(None, &r));
                    }
                }
            }
        }
    }
    Ok(EXIT_OK)
}
