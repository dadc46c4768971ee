//! `approvals list | show | approve | deny | cancel` and `policy show | set`: four-eyes
//! approval from the command line, and `obtain`, the step a dangerous command takes before
//! it runs (ask whether a second person is needed, file the request, wait for them).

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::args::{ApprovalsAction, GlobalArgs, PolicyAction};
use super::output::{print_json, table};
use super::signals::Interrupts;
use super::{check_reason, connect, observe, operator, say};
use crate::core::approval::{ApprovalRequest, RequestState};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::sanitize::line;
use crate::core::workflow::incident::Observation;
use crate::ops::approval::{self, Ask};
use crate::store::db::{self, Db};

/// What came of asking for a second person.
pub(super) enum Obtained {
    /// The policy does not ask for one.
    NotNeeded,
    /// Approved: the work may run under the request's operation.
    Approved(Box<ApprovalRequest>),
    /// Denied, withdrawn, expired or interrupted (already said): the command ends with this code.
    Stopped(i32),
}

/// Before dangerous work: whether the policy asks for a second person; if so, files the
/// request, journals it, and waits for the decision (Ctrl-C withdraws the request).
pub(super) async fn obtain(g: &GlobalArgs, pool: &Db, ask: &Ask) -> Result<Obtained> {
    let need = approval::needed(pool, ask).await?;
    if !need.required {
        return Ok(Obtained::NotNeeded);
    }
    say("This needs a second person:");
    for why in &need.reasons {
        say(&format!("  - {}", line(why)));
    }
    let req = approval::file(pool, ask, &need).await?;
    observe(g, vec![Observation::Approval(req.event("requested", &req.reason, &operator(g)))], Some(pool)).await;
    say(&format!(
        "Approval request {} filed: {}; reason: {}.\nWaiting for a second person (another login): \
         `incident-console approvals approve {} --reason \"...\"`, or V in their console. Ctrl-C withdraws the request.",
        short(&req),
        req.scope(),
        line(&req.reason),
        req.id
    ));
    let mut interrupts = Interrupts::listen();
    let stop = async {
        interrupts.next().await;
    };
    let Some(decided) = approval::wait_decided(pool, req.id, stop).await? else {
        let why = "the requester stopped waiting";
        let done = approval::withdraw(pool, req.id, why).await;
        if done.is_ok() {
            observe(g, vec![Observation::Approval(req.event("cancelled", why, &operator(g)))], Some(pool)).await;
        }
        say(&format!("Interrupted: request {} withdrawn; nothing was changed.", short(&req)));
        return Ok(Obtained::Stopped(EXIT_CHECK_FAILED));
    };
    let by = decided.decided_by.clone().unwrap_or_default();
    let because = decided.decision_reason.clone().unwrap_or_default();
    match decided.state(Utc::now()) {
        RequestState::Approved => {
            observe(g, vec![Observation::Approval(decided.event("approved", &because, &by))], Some(pool)).await;
            say(&format!(
                "Approved by {} ({}): {}",
                line(&by),
                line(decided.decided_login.as_deref().unwrap_or("?")),
                line(&because)
            ));
            Ok(Obtained::Approved(Box::new(decided)))
        }
        RequestState::Denied => {
            observe(g, vec![Observation::Approval(decided.event("denied", &because, &by))], Some(pool)).await;
            say(&format!("DENIED by {}: {}. Nothing was changed.", line(&by), line(&because)));
            Ok(Obtained::Stopped(EXIT_CHECK_FAILED))
        }
        state => {
            say(&format!(
                "Request {} is {}: nothing was changed. Run the command again to file a new one.",
                short(&decided),
                if state == RequestState::Expired { "expired" } else { "withdrawn" }
            ));
            Ok(Obtained::Stopped(EXIT_CHECK_FAILED))
        }
    }
}

/// After work ran under an approval: its use, in the journal (the database logged it when
/// the first rollback committed).
pub(super) async fn journal_use(g: &GlobalArgs, pool: &Db, obtained: &Obtained) {
    if let Obtained::Approved(r) = obtained {
        observe(g, vec![Observation::Approval(r.event("used", &r.reason, &operator(g)))], Some(pool)).await;
    }
}

/// A request's id as lists show it.
fn short(r: &ApprovalRequest) -> String {
    r.id.to_string().chars().take(8).collect()
}

pub(super) async fn approvals(g: &GlobalArgs, action: Option<ApprovalsAction>) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let result = run(g, &pool, action.unwrap_or(ApprovalsAction::List { all: false })).await;
    pool.close().await;
    result
}

async fn run(g: &GlobalArgs, pool: &Db, action: ApprovalsAction) -> Result<i32> {
    let now = Utc::now();
    match action {
        ApprovalsAction::List { all } => {
            let list = db::approval_requests(pool, !all, 50).await?;
            if g.json {
                print_json(&list)?;
            } else if list.is_empty() {
                println!(
                    "{}",
                    if all { "No approval requests." } else { "No request is waiting for a second person." }
                );
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|r| {
                        vec![
                            short(r),
                            r.state_text(now),
                            r.scope(),
                            format!("L{}", r.level),
                            format!("{} ({})", line(&r.requested_by), line(&r.requested_login)),
                            line(&r.reason).into_owned(),
                        ]
                    })
                    .collect();
                print!("{}", table(&["ID", "STATE", "SCOPE", "LEVEL", "REQUESTED BY", "REASON"], &rows));
            }
            Ok(EXIT_OK)
        }
        ApprovalsAction::Show { id } => {
            let r = approval::find(pool, &id).await?;
            let orders = db::approval_orders(pool, r.id, 20).await?;
            if g.json {
                print_json(
                    &json!({ "request": r, "orders_first_20": orders.iter().map(|(o, u)| json!({"order_id": o, "user_id": u})).collect::<Vec<_>>() }),
                )?;
                return Ok(EXIT_OK);
            }
            for l in describe(&r, now) {
                println!("{l}");
            }
            if !orders.is_empty() {
                println!(
                    "Orders{}:",
                    if r.order_count > 20 { format!(" (first 20 of {})", r.order_count) } else { String::new() }
                );
                for (o, u) in orders {
                    println!("  {o}  user {u}");
                }
            }
            Ok(EXIT_OK)
        }
        ApprovalsAction::Approve { id, reason } => decide(g, pool, &id, true, &reason).await,
        ApprovalsAction::Deny { id, reason } => decide(g, pool, &id, false, &reason).await,
        ApprovalsAction::Cancel { id, reason } => {
            check_reason(&reason)?;
            let r = approval::find(pool, &id).await?;
            let done = approval::withdraw(pool, r.id, &reason).await?;
            observe(g, vec![Observation::Approval(done.event("cancelled", &reason, &operator(g)))], Some(pool)).await;
            if g.json {
                print_json(&done)?;
            } else {
                println!("Request {} withdrawn.", short(&done));
            }
            Ok(EXIT_OK)
        }
    }
}

/// A request in lines: what it covers, the preview the requester saw, who asked, why the
/// policy asks, where it stands.
pub(super) fn describe(r: &ApprovalRequest, now: chrono::DateTime<Utc>) -> Vec<String> {
    let mut out = vec![
        format!("Request {} — {}", r.id, r.state_text(now)),
        format!("  scope: {}", r.scope()),
        format!("  reason: {}", line(&r.reason)),
        format!(
            "  asked by {} (login {}) at {}{}, Level {}",
            line(&r.requested_by),
            line(&r.requested_login),
            r.requested_at.format("%H:%M:%S UTC"),
            r.incident_id.as_deref().map(|i| format!(" for incident {}", line(i))).unwrap_or_default(),
            r.level
        ),
        format!("  expires {}", r.expires_at.format("%Y-%m-%d %H:%M:%S UTC")),
    ];
    for why in r.required_because() {
        out.push(format!("  needs a second person: {why}"));
    }
    out.extend(r.preview_items().into_iter().map(|item| format!("  {item}")));
    if let (Some(d), Some(by)) = (&r.decision, &r.decided_by) {
        out.push(format!(
            "  {d} by {} (login {}): {}",
            line(by),
            line(r.decided_login.as_deref().unwrap_or("?")),
            line(r.decision_reason.as_deref().unwrap_or(""))
        ));
    }
    if let Some(u) = r.used_at {
        out.push(format!("  used at {}", u.format("%H:%M:%S UTC")));
    }
    out
}

async fn decide(g: &GlobalArgs, pool: &Db, id: &str, approve: bool, reason: &str) -> Result<i32> {
    check_reason(reason)?;
    let r = approval::find(pool, id).await?;
    let incident = approval::current_incident();
    let done = approval::decide(pool, r.id, approve, reason, incident.as_ref().map(|(i, _)| i.as_str())).await?;
    let action = if approve { "approved" } else { "denied" };
    observe(g, vec![Observation::Approval(done.event(action, reason, &operator(g)))], Some(pool)).await;
    if g.json {
        print_json(&done)?;
    } else {
        for l in describe(&done, Utc::now()) {
            println!("{l}");
        }
    }
    Ok(EXIT_OK)
}

pub(super) async fn policy(g: &GlobalArgs, action: PolicyAction) -> Result<i32> {
    let (_s, pool) = connect(g).await?;
    let result = async {
        if let PolicyAction::Set { settings } = &action {
            db::set_approval_policy(&pool, &Value::Object(parse_settings(settings)?)).await?;
        }
        let p = db::approval_policy(&pool).await?;
        if g.json {
            print_json(&p)?;
        } else {
            for l in p.lines() {
                println!("{l}");
            }
        }
        Ok(EXIT_OK)
    }
    .await;
    pool.close().await;
    result
}

/// `SETTING=VALUE` pairs as the JSON object `set_approval_policy` takes.
fn parse_settings(pairs: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(Error::BadInput(format!("{pair:?} is not SETTING=VALUE")));
        };
        let value = match k {
            "enabled" | "release_rollback" | "level3_batches" | "level3_breaker_close" => match v {
                "true" | "yes" | "on" => json!(true),
                "false" | "no" | "off" => json!(false),
                _ => return Err(Error::BadInput(format!("{k} is true or false, not {v:?}"))),
            },
            "batch_orders" | "single_limit" | "window_minutes" | "expiry_minutes" => match v.parse::<i64>() {
                Ok(n) if n >= 0 => json!(n),
                _ => return Err(Error::BadInput(format!("{k} is a whole number, not {v:?}"))),
            },
            "batch_refunded" => match v.parse::<rust_decimal::Decimal>() {
                Ok(d) if d > rust_decimal::Decimal::ZERO => json!(d.to_string()),
                _ => return Err(Error::BadInput(format!("{k} is a positive amount, not {v:?}"))),
            },
            _ => {
                return Err(Error::BadInput(format!(
                    "unknown setting {k:?}: enabled, release_rollback, level3_batches, level3_breaker_close, \
                     batch_orders, batch_refunded, single_limit, window_minutes, expiry_minutes"
                )));
            }
        };
        out.insert(k.to_string(), value);
    }
    Ok(out)
}
