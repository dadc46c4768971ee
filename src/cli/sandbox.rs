//! `sandbox start|stop|status|url|reset`.

use serde_json::json;

use super::args::{GlobalArgs, SandboxAction};
use super::output::print_json;
use super::say;
use crate::core::error::{EXIT_OK, Error, Result};
use crate::store::sandbox::{self, Durability, Status};
use crate::store::target;

pub(super) async fn sandbox_command(g: &GlobalArgs, action: SandboxAction) -> Result<i32> {
    let cluster =
        tokio::task::spawn_blocking(sandbox::sandbox_cluster).await.map_err(|e| Error::Sandbox(e.to_string()))??;
    match action {
        SandboxAction::Start => {
            let url = target::ensure_ready(&cluster, Durability::Durable, &say).await?;
            if g.json {
                print_json(&json!({ "status": "running", "url": url, "root": cluster.root() }))?;
            } else {
                println!("Sandbox running. Connect with: psql '{url}'");
            }
        }
        SandboxAction::Stop => {
            let c = cluster.clone();
            tokio::task::spawn_blocking(move || c.stop()).await.map_err(|e| Error::Sandbox(e.to_string()))??;
            if g.json {
                print_json(&json!({ "status": "stopped" }))?;
            } else {
                println!("Sandbox stopped.");
            }
        }
        SandboxAction::Status => {
            let c = cluster.clone();
            let status =
                tokio::task::spawn_blocking(move || c.status()).await.map_err(|e| Error::Sandbox(e.to_string()))??;
            let text = match status {
                Status::NotInitialized => "not created",
                Status::Stopped => "stopped",
                Status::Running => "running",
            };
            if g.json {
                print_json(
                    &json!({ "status": text, "root": cluster.root(), "url": cluster.url(sandbox::SANDBOX_DATABASE),
                                     "server_binaries": cluster.binaries().dir() }),
                )?;
            } else {
                println!("Sandbox: {text}");
                println!("Directory: {}", cluster.root().display());
                println!("Server binaries: {}", cluster.binaries().dir().display());
                if status == Status::Running {
                    println!("URL: {}", cluster.url(sandbox::SANDBOX_DATABASE));
                }
            }
        }
        SandboxAction::Url => {
            let url = target::ensure_ready(&cluster, Durability::Durable, &say).await?;
            if g.json {
                print_json(&json!({ "url": url }))?;
            } else {
                println!("{url}");
            }
        }
        SandboxAction::Reset => {
            let c = cluster.clone();
            say(&format!("Deleting the sandbox in {} …", cluster.root().display()));
            tokio::task::spawn_blocking(move || c.destroy()).await.map_err(|e| Error::Sandbox(e.to_string()))??;
            let url = target::ensure_ready(&cluster, Durability::Durable, &say).await?;
            if g.json {
                print_json(&json!({ "status": "running", "url": url }))?;
            } else {
                println!("Sandbox reset. Connect with: psql '{url}'");
            }
        }
        SandboxAction::BreakerDrill => {
            let url = target::ensure_ready(&cluster, Durability::Durable, &say).await?;
            let settings = target::settings_for(url, true, &g.session());
            let pool = settings.pool(1).await?;
            let drill = crate::ops::drill::breaker_drill_order(&pool).await;
            pool.close().await;
            let (order, user) = drill?;
            if g.json {
                print_json(&json!({ "order": order, "user": user }))?;
            } else {
                println!("Drill order {order} of drill account {user}: its post-check is made to fail.");
                println!("Roll it back (the console, or: rollback {order} --user {user} --reason \"breaker drill\"):");
                println!("the rollback goes through, its post-check fails, the circuit breaker opens and every");
                println!("rollback after it is refused. Then: breaker status; breaker close --reason \"...\".");
            }
        }
        // Dispatched before the cluster is looked at (`cli::run`).
        SandboxAction::Service { .. } => return Err(Error::BadInput("sandbox service: not a cluster action".into())),
    }
    Ok(EXIT_OK)
}
