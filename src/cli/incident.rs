//! `incident …`: open one, classify it, follow its phases and checklist, keep its timeline,
//! verify the journal (and its database copy), write the post-incident report.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::args::{GlobalArgs, IncidentAction, IncidentArgs};
use super::{operator, print_json};
use crate::core::error::{EXIT_CHECK_FAILED, EXIT_OK, Error, Result};
use crate::core::journal::{Entry, Verification};
use crate::core::orders::parse_time_bound;
use crate::core::report::{describe_in, matches};
use crate::core::sanitize::line;
use crate::core::workflow::classify::{self, Answer, classification_steps};
use crate::core::workflow::incident::times::{TimeKind, parse_at};
use crate::core::workflow::incident::{ItemState, Role, Step};
use crate::core::workflow::{Level, Phase};
use crate::ops::incident::{compare_with_copy, copy_journal, first_execution, message_context, open, write_report};
use crate::store::config::checklist;
use crate::store::incidents::{IncidentStore, OpenIncident};
use crate::store::{db, target};

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Runs `work` on the database of incident commands when one is at hand without starting
/// anything (a URL was given, or the sandbox is already running), within 5 s. None: no
/// database at hand; `Err` says what went wrong.
async fn with_database_at_hand<T, F, Fut>(g: &GlobalArgs, work: F) -> Option<Result<T>>
where
    F: FnOnce(crate::store::db::Db) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let settings = target::at_hand(g.database_url(), &g.session()).await?;
    let attempt = async {
        let pool = settings.pool(1).await?;
        let out = work(pool.clone()).await;
        pool.close().await;
        out
    };
    Some(match tokio::time::timeout(std::time::Duration::from_secs(5), attempt).await {
        Ok(r) => r,
        Err(_) => Err(Error::Unreachable("no answer within 5 s".into())),
    })
}

/// After an incident command: copy the journal to the database when one is at hand.
async fn sync_if_reachable(g: &GlobalArgs, inc: &OpenIncident) {
    let copied = with_database_at_hand(g, |pool| async move { copy_journal(&pool, inc).await }).await;
    if let Some(Err(why)) = copied {
        eprintln!("note: journal kept on disk only (database: {why})");
    }
}

/// `incident …`
pub(super) async fn incident_command(g: &GlobalArgs, a: IncidentArgs) -> Result<i32> {
    let id = a.incident.as_deref();
    let op = operator(g);
    let now = Utc::now();
    let step = match a.action {
        IncidentAction::New { title, level, reason } => return new(g, &title, level, &reason, &op, now).await,
        IncidentAction::Show => return show(g, &open(id)?, now),
        IncidentAction::List => return list(g),
        IncidentAction::Switch { id } => {
            IncidentStore::open_default()?.switch(&id)?;
            println!("{id} is now the current incident.");
            return Ok(EXIT_OK);
        }
        IncidentAction::Classify { answers, apply } => return classify_command(g, id, &answers, apply, &op).await,
        IncidentAction::Timeline { filter, limit } => return timeline(g, &open(id)?, filter.as_deref(), limit),
        IncidentAction::Verify => return verify(g, &open(id)?).await,
        IncidentAction::Report { out } => return report(g, id, out, &op).await,
        IncidentAction::Bundle(b) => return super::bundle::bundle_command(g, id, b, &op).await,
        IncidentAction::Level { level, reason } => {
            Step::SetLevel { to: Level::from_number(level).unwrap_or(Level::Critical), reason }
        }
        IncidentAction::Phase { name } => match Phase::parse(&name) {
            Some(to) => Step::Advance { to },
            None => {
                return Err(Error::BadInput(format!(
                    "no phase \"{}\": assessment, response, recovery, post_incident",
                    line(&name)
                )));
            }
        },
        IncidentAction::Tick { item, approved_by: Some(approver) } => Step::Approve { item, approver },
        IncidentAction::Tick { item, approved_by: None } => Step::Tick { item },
        IncidentAction::Skip { item, reason } => Step::Skip { item, reason },
        IncidentAction::Assign { item, role } => Step::AssignItem { item, role: parse_role(&role)? },
        IncidentAction::Role { role, person } => Step::AssignRole { role: parse_role(&role)?, person },
        IncidentAction::Note { text } => Step::Note { text },
        IncidentAction::Field { name, value } => Step::SetField { name, value },
        IncidentAction::Waive { name } => Step::Waive { name },
        IncidentAction::Time { which, at, from_orders, symbol, from, to } => {
            let which = TimeKind::parse(&which).ok_or_else(|| {
                Error::BadInput(format!("no time \"{}\": impact-began, detected, mitigated, resolved", line(&which)))
            })?;
            let (at, source) = if from_orders {
                from_the_book(g, symbol.as_deref(), from.as_deref(), to.as_deref()).await?
            } else {
                let at = at.unwrap_or_default();
                (parse_at(&at, now).map_err(|e| Error::BadInput(format!("{}: {e}", line(&at))))?, "commander".into())
            };
            Step::SetTime { which, at, source, now }
        }
        IncidentAction::Close { reason } => Step::Close { reason, now },
    };
    let mut inc = open(id)?;
    let written = inc.act(step, &op, now)?;
    if g.json {
        print_json(&json!({ "incident": inc.incident.id, "recorded": written }))?;
    } else {
        for e in &written {
            println!("{}  {}", when(e.at), line(&describe_in(&inc.incident, &inc.checklist, e)));
        }
    }
    sync_if_reachable(g, &inc).await;
    Ok(EXIT_OK)
}

/// The first execution in a window, read from the database (`--from-orders`).
async fn from_the_book(
    g: &GlobalArgs,
    symbol: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(DateTime<Utc>, String)> {
    let bound = |s: Option<&str>, what: &str| {
        let s = s.ok_or_else(|| Error::BadInput(format!("--from-orders needs --{what}")))?;
        parse_time_bound(s).map_err(|e| Error::BadInput(format!("--{what} {}: {e}", line(s))))
    };
    let (from, to) = (bound(from, "from")?, bound(to, "to")?);
    let symbol = symbol.ok_or_else(|| Error::BadInput("--from-orders needs --symbol".into()))?;
    let (_s, pool) = super::connect(g).await?;
    let first = first_execution(&pool, symbol, from, to).await;
    pool.close().await;
    first?.ok_or_else(|| Error::BadInput(format!("no execution of {} in that window: nothing set", line(symbol))))
}

fn parse_role(s: &str) -> Result<Role> {
    Role::parse(s).ok_or_else(|| {
        let known: Vec<&str> = Role::ALL.iter().map(|r| r.key()).collect();
        Error::BadInput(format!("no role \"{}\": {}", line(s), known.join(", ")))
    })
}

async fn new(g: &GlobalArgs, title: &str, level: u8, reason: &str, op: &str, now: DateTime<Utc>) -> Result<i32> {
    let level = Level::from_number(level).ok_or_else(|| Error::BadInput("the level is 1, 2 or 3".into()))?;
    let store = IncidentStore::open_default()?;
    let previous = store.current_id()?;
    let inc = store.create(title, level, reason, op, now, checklist()?)?;
    if g.json {
        print_json(
            &json!({ "incident": inc.incident.id, "dir": inc.dir, "level": level.number(), "previous": previous }),
        )?;
    } else {
        println!(
            "Opened {} at Level {} {}: {}",
            inc.incident.id,
            level.number(),
            level.label(),
            line(&inc.incident.title)
        );
        println!("Journal: {}", inc.journal.path().display());
        if let Some(p) = previous {
            println!("({p} is no longer current; `incident switch {p}` goes back to it.)");
        }
    }
    sync_if_reachable(g, &inc).await;
    Ok(EXIT_OK)
}

fn list(g: &GlobalArgs) -> Result<i32> {
    let store = IncidentStore::open_default()?;
    let current = store.current_id()?;
    let all = store.list()?;
    if g.json {
        let rows: Vec<Value> = all
            .iter()
            .map(|s| {
                json!({ "id": s.id, "title": s.title, "level": s.level.number(), "phase": s.phase.key(),
                        "opened_at": s.opened_at, "closed": s.closed,
                        "current": current.as_deref() == Some(s.id.as_str()) })
            })
            .collect();
        print_json(&rows)?;
    } else if all.is_empty() {
        println!("No incidents yet. Start one with `incident new --title TITLE --level N`.");
    } else {
        for s in all {
            let mark = if current.as_deref() == Some(s.id.as_str()) { "*" } else { " " };
            println!(
                "{mark} {}  L{} {:<8}  {:<13}  {}  {}",
                s.id,
                s.level.number(),
                s.level.label(),
                if s.closed { "CLOSED" } else { s.phase.label() },
                when(s.opened_at),
                line(&s.title)
            );
        }
    }
    Ok(EXIT_OK)
}

fn item_mark(s: &ItemState) -> &'static str {
    match s {
        ItemState::Open => "[ ]",
        ItemState::Done { .. } => "[x]",
        ItemState::Skipped { .. } => "[-]",
    }
}

fn show(g: &GlobalArgs, inc: &OpenIncident, now: DateTime<Utc>) -> Result<i32> {
    let entries = inc.entries()?;
    let ctx = message_context(inc, &entries, None, now);
    let i = &inc.incident;
    if g.json {
        print_json(&json!({ "context": ctx.to_value(), "dir": inc.dir }))?;
        return Ok(EXIT_OK);
    }
    let closed = if i.closed.is_some() { "  CLOSED" } else { "" };
    println!("{}  Level {} {}{closed}  {}", i.id, i.level.number(), i.level.label(), line(&i.title));
    let phase_line = match i.phase_deadline() {
        _ if i.closed.is_some() => "closed: the time box no longer counts".to_string(),
        Some(d) if now > d => {
            format!("OVERDUE by {} (time box ended {})", crate::core::format::short_duration(now - d), when(d))
        }
        Some(d) => format!("{} left (time box ends {})", crate::core::format::short_duration(d - now), when(d)),
        None => "no time box".to_string(),
    };
    println!("Phase: {} since {}, {}", i.phase.label(), when(i.phase_started()), phase_line);
    match i.maintenance_on() {
        Some(p) => println!(
            "Maintenance mode: ON since {}{}",
            when(p.on_at),
            if p.verified { " (verified: new orders refused)" } else { " (NOT verified)" }
        ),
        None => println!("Maintenance mode: off"),
    }
    for (symbol, p) in i.symbols_stopped() {
        println!(
            "Maintenance mode for {} only: ON since {}{}",
            line(symbol),
            when(p.on_at),
            if p.verified { " (verified: its new orders refused)" } else { " (NOT verified)" }
        );
    }
    let due = |label: &str, d: Option<DateTime<Utc>>| match d {
        Some(d) if now > d => println!("{label}: OVERDUE since {}", when(d)),
        Some(d) => println!("{label}: due {} (in {})", when(d), crate::core::format::short_duration(d - now)),
        None => {}
    };
    let times: Vec<String> = TimeKind::ALL
        .iter()
        .map(|k| match (k, i.times.get(*k)) {
            (_, Some(m)) => format!("{} {} ({})", k.label(), when(m.at), line(&m.source)),
            (TimeKind::Detected, None) => format!("detected {} (incident opened)", when(i.detected_at())),
            (_, None) => format!("{} not set", k.label()),
        })
        .collect();
    println!("Times: {}", times.join("; "));
    if let Some(c) = &i.closed {
        println!("CLOSED at {} by {}: {} (no update due)", when(c.at), line(&c.by), line(&c.reason));
    }
    due("Next internal update", ctx.next_update_due);
    if i.last_message("customer").is_none() {
        due("First customer notice", ctx.next_customer_notice_due);
    }
    println!("Team:");
    for r in Role::ALL {
        match i.roles.get(&r) {
            Some(a) => println!("  {:<22} {}", r.label(), line(&a.person)),
            None => println!("  {:<22} (unassigned)", r.label()),
        }
    }
    println!("Checklist, {} (Level {}):", i.phase.label(), i.level.number());
    for it in inc.checklist.for_phase(i.phase, i.level) {
        let st = i.item_state(&it.id);
        let extra = match st {
            ItemState::Done { by, auto: true, .. } => format!("  (observed; {})", line(by)),
            ItemState::Done { by, at, approved_by: Some(who), .. } => {
                format!("  (approved by {}; ticked by {}, {})", line(who), line(by), at.format("%H:%M"))
            }
            ItemState::Done { by, at, .. } => format!("  ({}, {})", line(by), at.format("%H:%M")),
            ItemState::Skipped { reason, .. } => format!("  (skipped: {})", line(reason)),
            ItemState::Open => i.item_roles.get(&it.id).map(|r| format!("  -> {}", r.label())).unwrap_or_default(),
        };
        println!("  {} {:<24} {}{extra}", item_mark(st), line(&it.id), line(&it.text));
    }
    let earlier: Vec<_> = i.open_items(&inc.checklist).into_iter().filter(|it| it.phase < i.phase).collect();
    if !earlier.is_empty() {
        println!("Still open from earlier phases:");
        for it in earlier {
            println!("  [ ] {:<24} {} ({})", line(&it.id), line(&it.text), it.phase.label());
        }
    }
    if !i.fields.is_empty() || !i.waived.is_empty() {
        println!("Message fields:");
        for (k, v) in &i.fields {
            println!("  {} = {}", line(k), line(v));
        }
        for k in &i.waived {
            println!("  {} (waived)", line(k));
        }
    }
    println!("Journal: {} entries in {}", entries.len(), inc.journal.path().display());
    Ok(EXIT_OK)
}

fn timeline(g: &GlobalArgs, inc: &OpenIncident, filter: Option<&str>, limit: usize) -> Result<i32> {
    let entries = inc.entries()?;
    let shown: Vec<(&Entry, String)> = entries
        .iter()
        .rev()
        .map(|e| (e, describe_in(&inc.incident, &inc.checklist, e)))
        .filter(|(e, text)| matches(e, text, filter.unwrap_or("")))
        .take(limit)
        .collect();
    if g.json {
        let rows: Vec<Value> = shown.iter().map(|(e, text)| json!({ "entry": e, "text": text })).collect();
        print_json(&rows)?;
    } else {
        for (e, text) in shown {
            println!("{}  {:<12} {:<16} {}", when(e.at), line(&e.operator), e.kind(), line(&text));
        }
    }
    Ok(EXIT_OK)
}

/// The database copy's entries, when a database is at hand without starting anything
/// (as for copying): `Err` says why it was not checked.
async fn copied_entries(g: &GlobalArgs, incident: &str) -> std::result::Result<Vec<(i64, String)>, String> {
    match with_database_at_hand(g, |pool| async move { db::incident_event_hashes(&pool, incident, 1).await }).await {
        Some(r) => r.map_err(|e| e.to_string()),
        None => Err("no database URL and the sandbox is not running".into()),
    }
}

async fn verify(g: &GlobalArgs, inc: &OpenIncident) -> Result<i32> {
    let v = inc.verify()?;
    // The chain alone cannot see lines deleted from the end: the database copy can.
    let copy = match &v {
        Verification::Intact { .. } => Some(copied_entries(g, &inc.incident.id).await),
        Verification::Broken { .. } => None,
    };
    let against_copy = match &copy {
        Some(Ok(rows)) if !rows.is_empty() => Some(compare_with_copy(&inc.entries()?, rows)),
        _ => None,
    };
    if g.json {
        let database = match (&copy, &against_copy) {
            (Some(Ok(rows)), Some(problem)) => json!({ "checked": true, "entries": rows.len(), "problem": problem }),
            (Some(Ok(_)), None) => json!({ "checked": true, "entries": 0, "problem": null }),
            (Some(Err(why)), _) => json!({ "checked": false, "why": why }),
            (None, _) => Value::Null,
        };
        print_json(&json!({ "incident": inc.incident.id, "journal": inc.journal.path(), "verification": v,
                            "database_copy": database }))?;
    }
    if let Some(Some(problem)) = &against_copy {
        if !g.json {
            println!("Journal DOES NOT MATCH its database copy: {}", line(problem));
            println!("({})", inc.journal.path().display());
        }
        return Ok(EXIT_CHECK_FAILED);
    }
    match v {
        Verification::Intact { entries, last_hash } => {
            if !g.json {
                println!("Journal intact: {entries} entries, final hash {last_hash}");
                match &copy {
                    Some(Ok(rows)) if !rows.is_empty() => println!("Database copy: {} entries, matching.", rows.len()),
                    Some(Ok(_)) => println!("Database copy: none yet."),
                    Some(Err(why)) => println!("Database copy not checked: {}", line(why)),
                    None => {}
                }
            }
            Ok(EXIT_OK)
        }
        Verification::Broken { line: n, reason } => {
            if !g.json {
                println!("Journal BROKEN at line {n}: {}", line(&reason));
                println!("({})", inc.journal.path().display());
            }
            Ok(EXIT_CHECK_FAILED)
        }
    }
}

/// Answers as `id=yes|no|unsure`.
fn parse_answers(raw: &[String]) -> Result<Vec<(&'static str, Answer)>> {
    let mut out = Vec::new();
    for r in raw {
        let (k, v) = r
            .split_once('=')
            .ok_or_else(|| Error::BadInput(format!("an answer is ID=yes|no|unsure, not \"{}\"", line(r))))?;
        let q = classify::QUESTIONS.iter().find(|q| q.id == k.trim()).ok_or_else(|| {
            let ids: Vec<&str> = classify::QUESTIONS.iter().map(|q| q.id).collect();
            Error::BadInput(format!("no question \"{}\": {}", line(k), ids.join(", ")))
        })?;
        out.push((q.id, parse_answer(v).ok_or_else(|| Error::BadInput(format!("{k}: answer yes, no or unsure")))?));
    }
    Ok(out)
}

fn parse_answer(v: &str) -> Option<Answer> {
    match v.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(Answer::Yes),
        "n" | "no" => Some(Answer::No),
        "u" | "unsure" | "?" => Some(Answer::Unsure),
        _ => None,
    }
}

async fn ask_questions() -> Result<Vec<(&'static str, Answer)>> {
    tokio::task::spawn_blocking(|| {
        let mut out = Vec::new();
        let stdin = std::io::stdin();
        for q in classify::QUESTIONS {
            loop {
                eprint!("{} [y/n/u] ", q.text);
                let _ = std::io::stderr().flush();
                let mut l = String::new();
                match stdin.lock().read_line(&mut l) {
                    Ok(0) | Err(_) => return Err(Error::BadInput("classification interrupted; nothing set".into())),
                    Ok(_) => {}
                }
                if let Some(a) = parse_answer(&l) {
                    out.push((q.id, a));
                    break;
                }
                eprintln!("  answer y (yes), n (no) or u (unsure)");
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| Error::task("the classification questions", e))?
}

async fn classify_command(g: &GlobalArgs, id: Option<&str>, raw: &[String], apply: bool, op: &str) -> Result<i32> {
    let answers = if raw.is_empty() {
        if !std::io::stdin().is_terminal() {
            return Err(Error::BadInput(
                "give the answers with --answer ID=yes|no|unsure (no terminal to ask on)".into(),
            ));
        }
        ask_questions().await?
    } else {
        parse_answers(raw)?
    };
    let (level, why) = classify::propose(&answers);
    let mut applied = None;
    let mut kept = None;
    if apply {
        let mut inc = open(id)?;
        let now = Utc::now();
        // Running the helper is the classification step; it is ticked unless done already.
        let open_item =
            inc.checklist.get("classify").is_some() && inc.incident.item_state("classify") == &ItemState::Open;
        let (result, steps) = classification_steps(inc.incident.level, &answers, open_item);
        kept = (result != level).then_some(result);
        let mut written = Vec::new();
        for step in steps {
            written.extend(inc.act(step, op, now)?);
        }
        applied = Some(written);
        sync_if_reachable(g, &inc).await;
    }
    if g.json {
        print_json(&json!({ "level": level.number(), "why": why, "applied": applied }))?;
    } else {
        println!("Proposed: Level {} {}", level.number(), level.label());
        for w in &why {
            println!("  because: {w}");
        }
        if answers.iter().any(|(_, a)| *a == Answer::Unsure) {
            println!("  (unsure answers count as yes: when in doubt, the higher level)");
        }
        if let Some(current) = kept {
            println!(
                "Level {} kept (noted): the classification never lowers the level; `incident level {} --reason …` does.",
                current.number(),
                level.number()
            );
        } else if applied.is_some() {
            println!("Set on the incident.");
        } else {
            println!("Apply it with --apply, or `incident level N --reason …`.");
        }
    }
    Ok(EXIT_OK)
}

async fn report(g: &GlobalArgs, id: Option<&str>, out: Option<PathBuf>, op: &str) -> Result<i32> {
    let mut inc = open(id)?;
    let path = write_report(&mut inc, out, op, Utc::now())?;
    if g.json {
        print_json(&json!({ "incident": inc.incident.id, "report": path }))?;
    } else {
        println!("Report written to {}", path.display());
    }
    sync_if_reachable(g, &inc).await;
    Ok(EXIT_OK)
}
