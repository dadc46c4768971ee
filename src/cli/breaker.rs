//! `breaker status | open --reason R | close --reason R`: the circuit breaker. While it is
//! open every rollback is refused (`breaker_open`), from any console, CLI or psql session.

use serde_json::{Value, json};

use super::approvals::{Obtained, journal_use, obtain};
use super::args::{BreakerAction, GlobalArgs};
use super::output::print_json;
use super::{check_reason, connect, observe};
use crate::core::approval::ApprovalKind;
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::journal::event;
use crate::core::sanitize;
use crate::core::workflow::incident::Observation;
use crate::ops::approval::{Ask, current_incident};
use crate::store::db;

pub(super) async fn breaker(g: &GlobalArgs, action: BreakerAction) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let (open, reason) = match &action {
        BreakerAction::Status => {
            let m = db::maintenance_state(&pool).await?;
            pool.close().await;
            if g.json {
                print_json(&json!({ "open": m.breaker.is_some(), "breaker": m.breaker }))?;
            } else {
                match &m.breaker {
                    Some(b) => println!(
                        "Circuit breaker OPEN since {} ({}{}): {}\nEvery rollback is refused until a person closes it: \
                         breaker close --reason \"...\"",
                        b.since.format("%Y-%m-%d %H:%M:%S UTC"),
                        b.source,
                        b.opened_by.as_deref().map(|w| format!(", by {}", sanitize::line(w))).unwrap_or_default(),
                        sanitize::line(&b.reason)
                    ),
                    None => println!("Circuit breaker closed: rollbacks are accepted."),
                }
            }
            return Ok(if m.breaker.is_some() { EXIT_CHECK_FAILED } else { EXIT_OK });
        }
        BreakerAction::Open { reason } => (true, reason.clone()),
        BreakerAction::Close { reason } => (false, reason.clone()),
    };
    check_reason(&reason)?;
    let v = if open {
        db::open_breaker(&pool, &reason, "person").await?
    } else {
        // Closing it at Level 3 needs a second person, when the policy says so.
        let ask = Ask {
            kind: ApprovalKind::BreakerClose,
            operation: uuid::Uuid::new_v4(),
            orders: Vec::new(),
            target: None,
            reason: reason.clone(),
            incident: current_incident(),
            preview: json!({ "breaker": db::maintenance_state(&pool).await?.breaker }),
            single: false,
        };
        let approval = obtain(g, &pool, &ask).await?;
        let v = match &approval {
            Obtained::NotNeeded => db::close_breaker(&pool, &reason).await?,
            Obtained::Approved(req) => db::close_breaker_approved(&pool, &reason, req.operation_id).await?,
            Obtained::Stopped(code) => {
                pool.close().await;
                return Ok(*code);
            }
        };
        if v.get("success").and_then(Value::as_bool) == Some(true) {
            journal_use(g, &pool, &approval).await;
        }
        v
    };
    if v.get("success").and_then(Value::as_bool) != Some(true) {
        pool.close().await;
        return Err(Error::BadInput(format!(
            "refused: {}",
            sanitize::line(v.get("message").and_then(Value::as_str).unwrap_or("unknown"))
        )));
    }
    let changed = v.get("changed").and_then(Value::as_bool) == Some(true);
    if changed {
        let seen = Observation::Breaker(event::Breaker { open, reason: reason.clone(), source: "person".into() });
        observe(g, vec![seen], Some(&pool)).await;
    }
    pool.close().await;
    if g.json {
        print_json(&json!({ "open": open, "changed": changed, "result": v }))?;
    } else if !changed {
        println!("The circuit breaker was already {}.", if open { "open" } else { "closed" });
    } else if open {
        println!("Circuit breaker OPEN: every rollback is refused until a person closes it.");
    } else {
        println!("Circuit breaker closed: rollbacks are accepted again.");
    }
    Ok(EXIT_OK)
}
