//! From an incident's journal to what its messages and report say: builds the templates'
//! `MessageContext` from the folded incident and its entries.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::core::comms::context::{
    AuditResult, CheckLine, CheckResult, IncidentTimes, InternalRefs, JournalSummary, LevelChange, MaintenancePeriod,
    MaintenanceState, MessageContext, OpenItem, PhaseSpan, RoleAssignment, RollbackRecord, SentMessage, TimelineEntry,
};
use crate::core::journal::event::{self, Event};
use crate::core::journal::{Entry, Verification};
use crate::core::workflow::Phase;
use crate::core::workflow::checklist::{AutoSignal, Checklist};
use crate::core::workflow::incident::{Incident, Role};

/// A pre-check (passed = ready) or post-check (passed = successful) with its failed checks.
fn check_result(passed: bool, failed: &[String]) -> CheckResult {
    CheckResult {
        passed,
        checks: failed.iter().map(|check| CheckLine { check: check.clone(), passed: false, detail: None }).collect(),
    }
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
        || e.kind().to_lowercase().contains(&n)
        || e.operator.to_lowercase().contains(&n)
        || text.to_lowercase().contains(&n)
}

/// What the timeline and the report say of a rollback intended whose outcome the journal
/// does not have.
pub const OUTCOME_NOT_RECORDED: &str = "outcome not recorded — check the database";

/// One line of text for a journal entry of incident `i`, for timelines: as [`describe`],
/// with checklist items by their text (the journal keeps their ids), and a rollback
/// intended whose outcome is not in the journal says so, with the operation id to look
/// for (its audit rows' `batch_id`).
pub fn describe_in(i: &Incident, checklist: &Checklist, e: &Entry) -> String {
    let name = |id: &str| checklist.get(id).map_or_else(|| id.to_string(), |it| it.text.clone());
    match &e.event {
        Event::RollbackIntended(d) if !i.outcome_recorded(d.operation) => {
            format!("{} — {OUTCOME_NOT_RECORDED} (operation {})", describe(e), d.operation)
        }
        Event::ItemTicked(d) => format!("ticked {}{}", name(&d.item), tick_tail(d)),
        Event::ItemSkipped(d) => format!("skipped {}: {}", name(&d.item), d.reason),
        Event::ItemAssigned(d) => format!("{} assigned to {}", name(&d.item), d.role.label()),
        _ => describe(e),
    }
}

/// What follows "ticked ITEM": observed, or who approved.
fn tick_tail(d: &crate::core::journal::event::ItemTicked) -> String {
    match (&d.approved_by, d.auto) {
        (Some(who), _) => format!(" (approved by {who})"),
        (None, true) => " (observed)".into(),
        (None, false) => String::new(),
    }
}

/// One line of text for a journal entry, for timelines.
pub fn describe(e: &Entry) -> String {
    describe_event(&e.event)
}

/// One line of text for what an entry says.
fn describe_event(event: &Event) -> String {
    match event {
        Event::IncidentOpened(d) => format!("opened \"{}\" at Level {}", d.title, d.level.number()),
        Event::LevelChanged(d) => format!("level {} -> {}: {}", d.from.number(), d.to.number(), d.reason),
        Event::PhaseChanged(d) => format!("phase {} -> {}", d.from.key(), d.to.key()),
        Event::ItemTicked(d) => format!("ticked {}{}", d.item, tick_tail(d)),
        Event::ItemSkipped(d) => format!("skipped {}: {}", d.item, d.reason),
        Event::ItemAssigned(d) => format!("{} assigned to {}", d.item, d.role.label()),
        Event::RoleAssigned(d) => format!("{} is {}", d.person, d.role.label()),
        Event::Note(d) => d.text.clone(),
        Event::FieldSet(d) => format!("field {} = {}", d.name, d.value),
        Event::FieldWaived(d) => format!("field {} waived", d.name),
        Event::Precheck(d) => format!("pre-check {}: order {}", if d.ready { "ready" } else { "NOT READY" }, d.order),
        Event::RollbackIntended(d) => format!(
            "{} rollback intended: {} order(s), refund {}{}",
            d.mode,
            d.orders,
            d.refund,
            d.order.map(|o| format!(", order {o}")).unwrap_or_default()
        ),
        Event::Rollback(d) => format!(
            "{} rollback: {} order(s), refunded {}{}",
            d.mode,
            d.orders,
            d.refunded,
            if d.success { String::new() } else { format!(" — {}", d.detail) }
        ),
        Event::RollbackSettled(d) => format!(
            "rollback settled from the database: operation {} rolled back {} order(s), refunded {} (the journal said: {})",
            d.operation, d.orders, d.refunded, d.was
        ),
        Event::Postcheck(d) => {
            format!("post-check {}: order {}", if d.successful { "passed" } else { "FAILED" }, d.order)
        }
        Event::MaintenanceSeen(d) => format!(
            "maintenance mode {} outside this console (seen in the database{}): {}",
            if d.on { "switched ON" } else { "switched off" },
            d.by.as_ref().map(|b| format!(", by {b}")).unwrap_or_default(),
            d.reason
        ),
        Event::Maintenance(d) => format!(
            "maintenance mode {}{}, {}: {}",
            if d.on { "ON" } else { "off" },
            d.symbol.as_ref().map(|s| format!(" for {s} only")).unwrap_or_default(),
            match (d.on, d.verified) {
                (true, true) => "verified (new orders refused)",
                (false, true) => "verified (new orders accepted)",
                _ => "NOT verified",
            },
            d.reason
        ),
        Event::Audit(d) => format!("ledger audit: {} violation(s)", d.violations),
        Event::MessageCopied(d) => format!("{} copied: {}", d.template, file_name(&d.path)),
        Event::ReportWritten(d) => format!("report written: {}", file_name(&d.path)),
        Event::TimeSet(d) => {
            format!("{} set to {} ({})", d.which.label(), crate::core::comms::context::time_s(d.at), d.source)
        }
        Event::IncidentClosed(d) => format!("incident CLOSED: {}", d.reason),
        Event::ReleaseRollback(d) => format!(
            "release rollback to {} ({} reverted), {}{}{}: {}",
            d.target,
            d.reverted.join(", "),
            if d.proved { "PROVED".to_string() } else { format!("NOT proved (failed: {})", d.failed.join(", ")) },
            if d.archived.is_empty() { String::new() } else { format!("; archived {}", d.archived.join("; ")) },
            if d.drift.is_empty() { String::new() } else { format!("; drift discarded: {}", d.drift.join(", ")) },
            d.reason
        ),
        Event::Breaker(d) => format!(
            "circuit breaker {} ({}): {}",
            if d.open { "OPENED: every rollback refused" } else { "closed: rollbacks accepted again" },
            d.source,
            d.reason
        ),
        Event::Approval(d) => format!(
            "approval {} {} ({}): {} by {}: {}",
            d.id.to_string().get(..8).unwrap_or_default(),
            d.action,
            approval_scope(d),
            match d.action.as_str() {
                "requested" => "asked",
                "used" => "used",
                other => other,
            },
            d.by,
            d.reason
        ),
        Event::BundleWritten(d) => format!(
            "evidence bundle written: {} ({} files, manifest {}{})",
            file_name(&d.path),
            d.files,
            d.manifest_sha256.get(..16).unwrap_or(&d.manifest_sha256),
            if d.signed { ", signed" } else { "" }
        ),
        Event::ServiceRollback(d) => format!(
            "service rollback to {}: {} — {}",
            d.expected,
            if d.passed { "verified" } else { "NOT verified" },
            d.verdict
        ),
        Event::Unknown(u) => format!("{}: {}", u.kind(), u.data()),
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
        .map(|e| TimelineEntry {
            at: e.at,
            operator: e.operator.clone(),
            kind: e.kind().to_string(),
            text: describe_in(i, checklist, e),
        })
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
    if let Some(r) = &i.times.resolved {
        c.resolved_at = Some(r.at);
    } else if i.phase == Phase::PostIncident {
        c.resolved_at = Some(i.phase_started());
    }
    c.times = IncidentTimes {
        impact_began: i.times.impact_began.as_ref().map(|m| (m.at, m.source.clone())),
        detected: i.detected_at(),
        detected_source: i.times.detected.as_ref().map_or("incident opened".into(), |m| m.source.clone()),
        mitigated: i.times.mitigated.as_ref().map(|m| m.at),
        resolved: i.times.resolved.as_ref().map(|m| m.at),
    };
    c.closed = i.closed.as_ref().map(|cl| (cl.at, cl.reason.clone()));
    add_rollbacks(&mut c, i);
    add_team_and_maintenance(&mut c, i);
    c.next_update_due = i.next_update_due(now);
    c.next_customer_notice_due = i.customer_notice_due(now);
    c.audit = i.records_of::<event::Audit>().last().map(|(r, a)| AuditResult { at: r.at, violations: a.violations });
    c.system_rollbacks = i
        .records
        .iter()
        .filter(|r| matches!(r.event, Event::ReleaseRollback(_) | Event::ServiceRollback(_)))
        .map(|r| (r.at, describe_event(&r.event)))
        .collect();
    c.messages_sent = i
        .records_of::<event::MessageCopied>()
        .map(|(r, m)| SentMessage { at: r.at, template: m.template.clone(), path: Some(m.path.clone()) })
        .collect();
    // An item the report itself satisfies (writing it) is not open in the report: the
    // report would otherwise list itself as missing. The checklist still shows it open
    // until the report is written.
    c.open_items = i
        .open_items(checklist)
        .into_iter()
        .filter(|it| it.auto != Some(AutoSignal::ReportWritten))
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

/// The rollbacks, each with the pre-check before it and the post-check after it, and the
/// orders, users and internal references they touched.
fn add_rollbacks(c: &mut MessageContext, i: &Incident) {
    let mut users = BTreeSet::new();
    let mut orders_affected = 0u64;
    let mut internal = InternalRefs::default();
    for (r, rollback) in i.records_of::<event::Rollback>() {
        if let Some(user) = rollback.user {
            internal.user_ids.push(user.to_string());
        }
        // People, not runs: a user two runs touched is one user affected.
        match i.users_rolled_back(rollback) {
            Some(ids) => {
                for u in ids {
                    internal.user_ids.push(u.to_string());
                    users.insert(u.to_string());
                }
            }
            // A batch journaled before its users were: its count is all that is known.
            None => {
                for k in 0..rollback.users {
                    users.insert(format!("batch-{}-{k}", r.at.timestamp_micros()));
                }
            }
        }
        if let Some(order) = rollback.order {
            internal.order_ids.push(order.to_string());
        }
        let mut record = rollback_record(i, r.at, rollback);
        // What the database later showed it did replaces what the journal could know then.
        if let Some(s) = rollback.operation.and_then(|op| i.settled(op)) {
            record.orders_reversed = s.orders;
            record.refunded = s.refunded.parse::<Decimal>().unwrap_or_default();
            record.outcome = format!(
                "{}; settled from the database: {} order(s), refunded {}",
                record.outcome, s.orders, s.refunded
            );
        }
        orders_affected += record.orders_reversed;
        c.rollbacks.push(record);
    }
    // An intent with no outcome in the journal: the money may have moved, or not. The report
    // says so instead of leaving it out; only the database can tell which.
    let recorded = c.rollbacks.len();
    for (r, intent) in i.intents_without_outcome() {
        if let Some(user) = intent.user {
            internal.user_ids.push(user.to_string());
        }
        if let Some(order) = intent.order {
            internal.order_ids.push(order.to_string());
        }
        if let Some(s) = i.settled(intent.operation) {
            orders_affected += s.orders;
            for u in &s.user_ids {
                internal.user_ids.push(u.to_string());
                users.insert(u.to_string());
            }
            c.rollbacks.push(RollbackRecord {
                at: r.at,
                order_id: intent.order.map(|o| o.to_string()).unwrap_or_default(),
                user_id: intent.user.map(|u| u.to_string()).unwrap_or_default(),
                scope: intent.mode.clone(),
                reason: intent.reason.clone(),
                succeeded: false,
                outcome: format!(
                    "outcome not journaled; settled from the database: {} order(s), refunded {}",
                    s.orders, s.refunded
                ),
                outcome_recorded: true,
                orders_reversed: s.orders,
                refunded: s.refunded.parse::<Decimal>().unwrap_or_default(),
                precheck: None,
                postcheck: None,
            });
            continue;
        }
        c.rollbacks.push(RollbackRecord {
            at: r.at,
            order_id: intent.order.map(|o| o.to_string()).unwrap_or_default(),
            user_id: intent.user.map(|u| u.to_string()).unwrap_or_default(),
            scope: intent.mode.clone(),
            reason: intent.reason.clone(),
            succeeded: false,
            outcome: format!("{OUTCOME_NOT_RECORDED} (operation {})", intent.operation),
            outcome_recorded: false,
            // The orders it was to roll back: the batch's heading counts them.
            orders_reversed: intent.orders,
            refunded: Decimal::ZERO,
            precheck: None,
            postcheck: None,
        });
    }
    if c.rollbacks.len() > recorded {
        c.rollbacks.sort_by_key(|r| r.at);
    }
    let mut seen = BTreeSet::new();
    internal.user_ids.retain(|u| seen.insert(u.clone()));
    c.orders_affected = orders_affected;
    c.users_affected = users.len() as u64;
    c.internal = internal;
}

/// One rollback as the messages show it. Checks belong to a rollback by its order (a batch
/// names none): the last pre-check before it and the first post-check after it.
fn rollback_record(i: &Incident, at: DateTime<Utc>, rollback: &event::Rollback) -> RollbackRecord {
    let pre = rollback.order.and_then(|order| {
        i.records_of::<event::Precheck>().filter(|(p, check)| check.order == order && p.at <= at).last()
    });
    let post = rollback
        .order
        .and_then(|order| i.records_of::<event::Postcheck>().find(|(p, check)| check.order == order && p.at >= at));
    RollbackRecord {
        at,
        order_id: rollback.order.map(|o| o.to_string()).unwrap_or_default(),
        user_id: rollback.user.map(|u| u.to_string()).unwrap_or_default(),
        scope: rollback.mode.clone(),
        reason: rollback.reason.clone(),
        succeeded: rollback.success,
        outcome: rollback.detail.clone(),
        outcome_recorded: true,
        orders_reversed: rollback.orders,
        refunded: rollback.refunded.parse::<Decimal>().unwrap_or_default(),
        precheck: pre.map(|(_, p)| check_result(p.ready, &p.failed)),
        postcheck: post.map(|(_, p)| check_result(p.successful, &p.failed)),
    }
}

/// Maintenance mode now and its periods, who holds which role, and the level's changes.
fn add_team_and_maintenance(c: &mut MessageContext, i: &Incident) {
    c.maintenance = match i.maintenance_on() {
        Some(p) => MaintenanceState { on: true, since: Some(p.on_at), reason: Some(p.reason.clone()), symbols: vec![] },
        None => MaintenanceState::default(),
    };
    c.maintenance.symbols = i.symbols_stopped().into_iter().map(|(s, _)| s.to_string()).collect();
    c.maintenance_periods = i
        .maintenance
        .iter()
        .map(|p| MaintenancePeriod { from: p.on_at, until: p.off_at, reason: p.reason.clone() })
        .collect();
    c.roles = Role::ALL
        .iter()
        .filter_map(|r| i.roles.get(r).map(|a| RoleAssignment { role: r.label().to_string(), name: a.person.clone() }))
        .collect();
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
}

/// What an approval covers, in a few words.
fn approval_scope(d: &crate::core::journal::event::Approval) -> String {
    match d.kind.as_str() {
        "release_rollback" => format!("release rollback to {}", d.target.as_deref().unwrap_or("?")),
        "breaker_close" => "closing the circuit breaker".into(),
        kind => format!("{kind} of {} order(s), {} refunded", d.orders, crate::core::format::money(d.refunded)),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::core::workflow::Level;
    use crate::core::workflow::incident::Step;

    #[test]
    fn the_report_does_not_list_its_own_writing_as_open_and_a_closed_incident_has_nothing_due() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 0, 25, 0).single().unwrap_or_default();
        let checklist = Checklist::shipped();
        let opened = Incident::open_record("INC-1", "burst", Level::Critical, "x").unwrap_or_else(|e| panic!("{e}"));
        let mut i = Incident::from_records([(&opened, at, "alice")]).unwrap_or_else(|e| panic!("{e}"));
        assert!(i.open_items(&checklist).iter().any(|it| it.id == "report"), "the checklist still shows it");
        let c = context_without_timeline(&i, &checklist, &[], None, at);
        assert!(!c.open_items.is_empty());
        assert!(!c.open_items.iter().any(|o| o.item == "Post-incident report written"), "{:?}", c.open_items);
        assert!(c.next_update_due.is_some() && c.next_customer_notice_due.is_some());

        let close = Step::Close { reason: "done".into(), now: at + chrono::Duration::minutes(9) };
        for e in i.decide(close, &checklist).unwrap_or_default() {
            i.apply(&e, at + chrono::Duration::minutes(9), "alice");
        }
        let c = context_without_timeline(&i, &checklist, &[], None, at + chrono::Duration::hours(2));
        assert_eq!((c.next_update_due, c.next_customer_notice_due), (None, None));
        assert_eq!(c.resolved_at, Some(at + chrono::Duration::minutes(9)));
        assert_eq!(c.closed.map(|(_, r)| r), Some("done".to_string()));
    }
}
