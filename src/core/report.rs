//! From an incident's journal to what its messages and report say: builds the templates'
//! `MessageContext` from the folded incident and its entries.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::core::comms::cadence;
use crate::core::comms::context::{
    AuditResult, CheckLine, CheckResult, InternalRefs, JournalSummary, LevelChange, MaintenancePeriod,
    MaintenanceState, MessageContext, OpenItem, PhaseSpan, RoleAssignment, RollbackRecord, SentMessage, TimelineEntry,
};
use crate::core::journal::{Entry, Verification};
use crate::core::workflow::Phase;
use crate::core::workflow::checklist::Checklist;
use crate::core::workflow::incident::Incident;

fn check_result(data: &serde_json::Value, passed_key: &str) -> CheckResult {
    let failed: Vec<String> = data["failed"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    CheckResult {
        passed: data[passed_key].as_bool().unwrap_or(false),
        checks: failed.into_iter().map(|check| CheckLine { check, passed: false, detail: None }).collect(),
    }
}

fn role(key: &str) -> String {
    crate::core::workflow::incident::Role::parse(key).map_or(key.to_string(), |r| r.label().to_string())
}

/// The last part of a path, for lines too narrow for the whole of it.
pub fn file_name(path: &str) -> String {
    std::path::Path::new(path).file_name().map_or(path.to_string(), |f| f.to_string_lossy().into_owned())
}

/// Whether an entry passes a timeline filter: its kind, operator or text contains the
/// needle, ignoring case (an empty needle passes everything).
pub fn matches(e: &Entry, text: &str, needle: &str) -> bool {
    let n = needle.to_lowercase();
    n.is_empty()
        || e.kind.to_lowercase().contains(&n)
        || e.operator.to_lowercase().contains(&n)
        || text.to_lowercase().contains(&n)
}

/// One line of text for a journal entry, for timelines.
pub fn describe(e: &Entry) -> String {
    let d = &e.data;
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    match e.kind.as_str() {
        "incident_opened" => format!("opened \"{}\" at Level {}", s("title"), d["level"]),
        "level_changed" => format!("level {} -> {}: {}", d["from"], d["to"], s("reason")),
        "phase_changed" => format!("phase {} -> {}", s("from"), s("to")),
        "item_ticked" => format!("ticked {}{}", s("item"), if d["auto"] == true { " (observed)" } else { "" }),
        "item_skipped" => format!("skipped {}: {}", s("item"), s("reason")),
        "item_assigned" => format!("{} assigned to {}", s("item"), role(&s("role"))),
        "role_assigned" => format!("{} is {}", s("person"), role(&s("role"))),
        "note" => s("text"),
        "field_set" => format!("field {} = {}", s("name"), s("value")),
        "field_waived" => format!("field {} waived", s("name")),
        "precheck" => {
            format!("pre-check {}: order {}", if d["ready"] == true { "ready" } else { "NOT READY" }, s("order"))
        }
        "rollback" => format!(
            "{} rollback: {} order(s), refunded {}{}",
            s("mode"),
            d["orders"],
            s("refunded"),
            if d["success"] == true { String::new() } else { format!(" — {}", s("detail")) }
        ),
        "postcheck" => {
            format!("post-check {}: order {}", if d["successful"] == true { "passed" } else { "FAILED" }, s("order"))
        }
        "maintenance" if d["seen_in_database"] == true => format!(
            "maintenance mode {} outside this console (seen in the database{}): {}",
            if d["on"] == true { "switched ON" } else { "switched off" },
            d["by"].as_str().map(|b| format!(", by {b}")).unwrap_or_default(),
            s("reason")
        ),
        "maintenance" => format!(
            "maintenance mode {}, {}: {}",
            if d["on"] == true { "ON" } else { "off" },
            match (d["on"] == true, d["verified"] == true) {
                (true, true) => "verified (new orders refused)",
                (false, true) => "verified (new orders accepted)",
                _ => "NOT verified",
            },
            s("reason")
        ),
        "audit" => format!("ledger audit: {} violation(s)", d["violations"]),
        "message_copied" => format!("{} copied: {}", s("template"), file_name(&s("path"))),
        "report_written" => format!("report written: {}", file_name(&s("path"))),
        other => format!("{other}: {d}"),
    }
}

/// The context of the messages and report of an incident's state and journal entries.
pub fn context_of(
    i: &Incident,
    checklist: &Checklist,
    entries: &[Entry],
    verification: Option<&Verification>,
    now: DateTime<Utc>,
) -> MessageContext {
    let mut c = context_without_timeline(i, checklist, entries, verification, now);
    c.timeline = entries
        .iter()
        .map(|e| TimelineEntry { at: e.at, operator: e.operator.clone(), kind: e.kind.clone(), text: describe(e) })
        .collect();
    c
}

/// The same context with an empty timeline: what a message that does not list the timeline
/// needs, at a fraction of the cost for a long journal.
pub fn context_without_timeline(
    i: &Incident,
    checklist: &Checklist,
    entries: &[Entry],
    verification: Option<&Verification>,
    now: DateTime<Utc>,
) -> MessageContext {
    let mut c = MessageContext::new(i.id.clone(), i.title.clone(), i.level, i.opened_at, now);
    c.phase = i.phase;
    c.phase_since = i.phase_started();
    c.phases = i
        .phase_history
        .iter()
        .enumerate()
        .map(|(n, (p, at))| PhaseSpan { phase: *p, started_at: *at, ended_at: i.phase_history.get(n + 1).map(|x| x.1) })
        .collect();
    if i.phase == Phase::PostIncident {
        c.resolved_at = Some(i.phase_started());
    }

    // Rollbacks, each with the pre-check before it and the post-check after it.
    let mut users = BTreeSet::new();
    let mut orders_affected = 0u64;
    let mut internal = InternalRefs::default();
    for r in i.records_of("rollback") {
        let order = r.data["order"].as_str().unwrap_or("").to_string();
        let user = r.data["user"].as_str().unwrap_or("").to_string();
        if !user.is_empty() {
            users.insert(user.clone());
            internal.user_ids.push(user.clone());
        }
        if !order.is_empty() {
            internal.order_ids.push(order.clone());
        }
        let n = r.data["orders"].as_u64().unwrap_or(0);
        orders_affected += n;
        let pre = i.records_of("precheck").filter(|p| p.data["order"].as_str() == Some(&order) && p.at <= r.at).last();
        let post = i.records_of("postcheck").find(|p| p.data["order"].as_str() == Some(&order) && p.at >= r.at);
        c.rollbacks.push(RollbackRecord {
            at: r.at,
            order_id: order.clone(),
            user_id: user,
            scope: r.data["mode"].as_str().unwrap_or("").to_string(),
            reason: r.data["reason"].as_str().unwrap_or("").to_string(),
            succeeded: r.data["success"].as_bool().unwrap_or(false),
            outcome: r.data["detail"].as_str().unwrap_or("").to_string(),
            orders_reversed: n,
            refunded: r.data["refunded"].as_str().and_then(|s| s.parse::<Decimal>().ok()).unwrap_or_default(),
            precheck: pre.filter(|_| !order.is_empty()).map(|p| check_result(&p.data, "ready")),
            postcheck: post.filter(|_| !order.is_empty()).map(|p| check_result(&p.data, "successful")),
        });
        // A batch names no single user; its count of users stands for them.
        if r.data["user"].is_null() {
            for k in 0..r.data["users"].as_u64().unwrap_or(0) {
                users.insert(format!("batch-{}-{k}", r.at.timestamp_micros()));
            }
        }
    }
    c.orders_affected = orders_affected;
    c.users_affected = users.len() as u64;
    c.internal = internal;

    c.maintenance = match i.maintenance_on() {
        Some(p) => MaintenanceState { on: true, since: Some(p.on_at), reason: Some(p.reason.clone()) },
        None => MaintenanceState::default(),
    };
    c.maintenance_periods = i
        .maintenance
        .iter()
        .map(|p| MaintenancePeriod { from: p.on_at, until: p.off_at, reason: p.reason.clone() })
        .collect();
    c.roles = crate::core::workflow::incident::Role::ALL
        .iter()
        .filter_map(|r| i.roles.get(r).map(|a| RoleAssignment { role: r.label().to_string(), name: a.person.clone() }))
        .collect();
    c.next_update_due = cadence::next_update_due(i.level, i.last_message("internal"), i.opened_at, now);
    c.next_customer_notice_due = cadence::customer_notice_due(i.level, i.last_message("customer"), i.opened_at, now);
    c.audit = i
        .records_of("audit")
        .last()
        .map(|a| AuditResult { at: a.at, violations: a.data["violations"].as_u64().unwrap_or(0) });
    c.level_history = i
        .level_history
        .iter()
        .filter_map(|h| {
            h.from.map(|from| LevelChange {
                at: h.at,
                from,
                to: h.to,
                reason: h.reason.clone(),
                operator: h.by.clone(),
            })
        })
        .collect();
    c.messages_sent = i
        .records_of("message_copied")
        .map(|m| SentMessage {
            at: m.at,
            template: m.data["template"].as_str().unwrap_or("").to_string(),
            path: m.data["path"].as_str().map(str::to_string),
        })
        .collect();
    c.open_items = i
        .open_items(checklist)
        .into_iter()
        .map(|it| OpenItem {
            phase: it.phase,
            item: it.text.clone(),
            assignee: i.item_roles.get(&it.id).map(|r| r.label().to_string()),
        })
        .collect();
    if let Some(last) = entries.last() {
        c.journal = Some(JournalSummary {
            entries: entries.len() as u64,
            final_hash: last.hash.clone(),
            verified: matches!(verification, Some(Verification::Intact { .. })),
        });
    }
    c.fields = i.fields.clone();
    c.waived = i.waived.clone();
    c
}
