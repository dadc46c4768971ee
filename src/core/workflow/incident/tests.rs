//! The incident state machine's tests: every transition and timer with a fixed clock.

use super::times::TimeKind;
use super::*;
use chrono::TimeZone;
use serde_json::json;
use uuid::Uuid;

fn t(min: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 3, 0, 0).single().unwrap_or_default() + Duration::minutes(min)
}

/// A tiny journal in memory: records are appended and folded as the real one does.
struct Book {
    entries: Vec<(Event, DateTime<Utc>, String)>,
    checklist: Checklist,
}

impl Book {
    fn open(level: Level) -> Self {
        let opened = Incident::open_record("INC-1", "Duplicate executions", level, "first look")
            .unwrap_or_else(|_| Event::from_parts("x", json!({})));
        Book { entries: vec![(opened, t(0), "alice".into())], checklist: Checklist::shipped() }
    }
    fn incident(&self) -> Incident {
        Incident::from_records(self.entries.iter().map(|(e, at, by)| (e, *at, by.as_str())))
            .unwrap_or_else(|e| panic!("{e}"))
    }
    fn step(&mut self, step: Step, at: DateTime<Utc>) -> Result<Vec<String>, String> {
        let records = self.incident().decide(step, &self.checklist).map_err(|r| r.to_string())?;
        let kinds = records.iter().map(|e| e.kind().to_string()).collect();
        for e in records {
            self.entries.push((e, at, "alice".into()));
        }
        Ok(kinds)
    }
}

#[test]
fn opening_starts_in_assessment_at_the_given_level() {
    let b = Book::open(Level::Critical);
    let i = b.incident();
    assert_eq!((i.level, i.phase), (Level::Critical, Phase::Assessment));
    assert_eq!(i.phase_deadline(), Some(t(15)));
    assert!(!i.phase_overdue(t(15)));
    assert!(i.phase_overdue(t(16)));
    assert!(Incident::from_records(std::iter::empty()).is_err());
    let note = Event::from_parts("note", json!({ "text": "x" }));
    assert!(Incident::from_records([(&note, t(0), "a")]).is_err());
}

#[test]
fn level_changes_need_a_reason_and_a_different_level_and_are_kept() {
    let mut b = Book::open(Level::Moderate);
    assert!(b.step(Step::SetLevel { to: Level::Critical, reason: "  ".into() }, t(1)).is_err());
    assert!(b.step(Step::SetLevel { to: Level::Moderate, reason: "same".into() }, t(1)).is_err());
    b.step(Step::SetLevel { to: Level::Critical, reason: "balances corrupted".into() }, t(2)).unwrap_or_default();
    b.step(Step::SetLevel { to: Level::Moderate, reason: "only the burst".into() }, t(9)).unwrap_or_default();
    let i = b.incident();
    assert_eq!(i.level, Level::Moderate);
    let h: Vec<_> = i.level_history.iter().map(|c| (c.from, c.to, c.reason.as_str())).collect();
    assert_eq!(
        h,
        vec![
            (None, Level::Moderate, "first look"),
            (Some(Level::Moderate), Level::Critical, "balances corrupted"),
            (Some(Level::Critical), Level::Moderate, "only the burst"),
        ]
    );
}

#[test]
fn phases_only_move_forward_and_time_in_each_is_measured() {
    let mut b = Book::open(Level::Moderate);
    assert!(b.step(Step::Advance { to: Phase::Assessment }, t(1)).is_err());
    let kinds = b.step(Step::Advance { to: Phase::Response }, t(10)).unwrap_or_default();
    // Assessment items left open are noted.
    assert_eq!(kinds, vec!["phase_changed", "note"]);
    b.step(Step::Advance { to: Phase::PostIncident }, t(70)).unwrap_or_default();
    assert!(b.step(Step::Advance { to: Phase::Recovery }, t(71)).is_err());
    let i = b.incident();
    assert_eq!(i.phase, Phase::PostIncident);
    assert_eq!(i.phase_deadline(), None);
    assert!(!i.phase_overdue(t(10_000)));
    let times = i.time_in_phases(t(100));
    assert_eq!(
        times,
        vec![
            (Phase::Assessment, Duration::minutes(10)),
            (Phase::Response, Duration::minutes(60)),
            (Phase::PostIncident, Duration::minutes(30))
        ]
    );
}

#[test]
fn response_phase_overdue_after_45_minutes() {
    let mut b = Book::open(Level::Moderate);
    b.step(Step::Advance { to: Phase::Response }, t(15)).unwrap_or_default();
    let i = b.incident();
    assert_eq!(i.phase_deadline(), Some(t(60)));
    assert!(!i.phase_overdue(t(60)));
    assert!(i.phase_overdue(t(61)));
}

#[test]
fn items_are_ticked_skipped_with_a_reason_and_assigned() {
    let mut b = Book::open(Level::Moderate);
    b.step(Step::Tick { item: "detect".into() }, t(1)).unwrap_or_default();
    assert!(b.step(Step::Tick { item: "detect".into() }, t(2)).err().unwrap_or_default().contains("already done"));
    assert!(b.step(Step::Skip { item: "classify".into(), reason: "".into() }, t(2)).is_err());
    b.step(Step::Skip { item: "classify".into(), reason: "done by phone".into() }, t(2)).unwrap_or_default();
    assert!(b.step(Step::Tick { item: "classify".into() }, t(3)).err().unwrap_or_default().contains("skipped"));
    assert!(b.step(Step::Tick { item: "nope".into() }, t(3)).err().unwrap_or_default().contains("no checklist item"));
    // Level 3 items are not part of a Level 2 response.
    assert!(
        b.step(Step::Tick { item: "regulatory_notice".into() }, t(3)).err().unwrap_or_default().contains("Level 2")
    );
    b.step(Step::AssignItem { item: "preserve_state".into(), role: Role::DatabaseAdmin }, t(4)).unwrap_or_default();
    let i = b.incident();
    assert!(matches!(i.item_state("detect"), ItemState::Done { auto: false, .. }));
    assert!(matches!(i.item_state("classify"), ItemState::Skipped { reason, .. } if reason == "done by phone"));
    assert_eq!(i.item_roles.get("preserve_state"), Some(&Role::DatabaseAdmin));
    assert!(!i.open_items(&b.checklist).iter().any(|it| it.id == "detect" || it.id == "classify"));
}

#[test]
fn an_approval_is_ticked_by_naming_who_approved() {
    let mut b = Book::open(Level::Moderate);
    let refused = b.step(Step::Tick { item: "approval".into() }, t(1)).err().unwrap_or_default();
    assert!(refused.contains("name who approved"), "{refused}");
    assert!(b.step(Step::Approve { item: "approval".into(), approver: "  ".into() }, t(1)).is_err());
    let approver = "Dana Reyes, CTO".to_string();
    b.step(Step::Approve { item: "approval".into(), approver: approver.clone() }, t(2)).unwrap_or_default();
    let i = b.incident();
    assert!(
        matches!(i.item_state("approval"), ItemState::Done { approved_by: Some(w), auto: false, .. } if *w == approver),
        "{:?}",
        i.item_state("approval")
    );
    assert!(
        b.step(Step::Approve { item: "approval".into(), approver }, t(3))
            .err()
            .unwrap_or_default()
            .contains("already done")
    );
}

#[test]
fn level_1_ticks_what_the_console_observed_levels_2_and_3_do_not() {
    for (level, expect_auto) in [(Level::Minor, true), (Level::Moderate, false), (Level::Critical, false)] {
        let mut b = Book::open(level);
        let o = Observation::Postcheck { order: Uuid::nil(), successful: true, failed: vec![] };
        let kinds = b.step(Step::Observe(o), t(30)).unwrap_or_default();
        assert_eq!(kinds.contains(&"item_ticked".to_string()), expect_auto, "{level:?}: {kinds:?}");
        let i = b.incident();
        let auto = matches!(i.item_state("validate_results"), ItemState::Done { auto: true, .. });
        assert_eq!(auto, expect_auto);
        assert_eq!(i.records_of::<event::Postcheck>().count(), 1);
    }
    // A failed post-check ticks nothing, even at Level 1.
    let mut b = Book::open(Level::Minor);
    let o = Observation::Postcheck { order: Uuid::nil(), successful: false, failed: vec!["balance_restored".into()] };
    assert_eq!(b.step(Step::Observe(o), t(5)).unwrap_or_default(), vec!["postcheck"]);
}

#[test]
fn roles_are_assigned_and_handed_over() {
    let mut b = Book::open(Level::Critical);
    b.step(Step::AssignRole { role: Role::TechnicalLead, person: "Bo".into() }, t(1)).unwrap_or_default();
    assert!(b.step(Step::AssignRole { role: Role::TechnicalLead, person: "Bo".into() }, t(2)).is_err());
    b.step(Step::AssignRole { role: Role::TechnicalLead, person: "Cy".into() }, t(3)).unwrap_or_default();
    let i = b.incident();
    assert_eq!(i.roles.get(&Role::TechnicalLead).map(|a| a.person.as_str()), Some("Cy"));
    assert_eq!(i.handovers.len(), 1);
    assert_eq!((i.handovers[0].1.as_str(), i.handovers[0].2.as_str()), ("Bo", "Cy"));
}

#[test]
fn maintenance_periods_fields_and_messages() {
    let mut b = Book::open(Level::Critical);
    let on = Observation::Maintenance { on: true, reason: "burst".into(), verified: true };
    b.step(Step::Observe(on), t(3)).unwrap_or_default();
    assert!(b.incident().maintenance_on().is_some_and(|p| p.verified && p.on_at == t(3)));
    let off = Observation::Maintenance { on: false, reason: "fixed".into(), verified: false };
    b.step(Step::Observe(off), t(50)).unwrap_or_default();
    let i = b.incident();
    assert!(i.maintenance_on().is_none());
    assert_eq!(i.maintenance[0].off_at, Some(t(50)));

    b.step(Step::SetField { name: "impact".into(), value: "60 orders".into() }, t(4)).unwrap_or_default();
    b.step(Step::Waive { name: "estimated_resolution".into() }, t(4)).unwrap_or_default();
    assert!(b.step(Step::SetField { name: "Bad Name".into(), value: "x".into() }, t(4)).is_err());
    let copied = Observation::MessageCopied {
        template: "customer_notice".into(),
        audience: "customer".into(),
        path: "/x".into(),
    };
    b.step(Step::Observe(copied), t(5)).unwrap_or_default();
    let i = b.incident();
    assert_eq!(i.fields.get("impact").map(String::as_str), Some("60 orders"));
    assert!(i.waived.contains("estimated_resolution"));
    assert_eq!(i.last_message("customer"), Some(t(5)));
    assert_eq!(i.last_message("internal"), None);
}

fn set_time(which: TimeKind, at: DateTime<Utc>, now: DateTime<Utc>) -> Step {
    Step::SetTime { which, at, source: "commander".into(), now }
}

#[test]
fn times_are_folded_and_detected_defaults_to_the_opening_while_impact_is_never_guessed() {
    let mut b = Book::open(Level::Critical);
    let i = b.incident();
    assert_eq!(i.detected_at(), t(0));
    assert_eq!(i.times, times::Times::default());
    assert!(i.times.impact_began.is_none());
    let kinds = b.step(set_time(TimeKind::ImpactBegan, t(-40), t(5)), t(5));
    assert_eq!(kinds, Ok(vec!["time_set".to_string()]));
    b.step(set_time(TimeKind::Detected, t(-10), t(6)), t(6)).unwrap_or_default();
    let i = b.incident();
    let began = i.times.impact_began.clone().unwrap_or_else(|| panic!("impact began not folded"));
    assert_eq!(
        (began.at, began.source.as_str(), began.by.as_str(), began.recorded_at),
        (t(-40), "commander", "alice", t(5))
    );
    assert_eq!(i.detected_at(), t(-10));
    // A correction is a new entry, and the latest wins.
    b.step(set_time(TimeKind::ImpactBegan, t(-45), t(7)), t(7)).unwrap_or_default();
    assert_eq!(b.incident().times.impact_began.map(|m| m.at), Some(t(-45)));
}

#[test]
fn a_time_in_the_future_or_out_of_order_is_refused_and_nothing_is_appended() {
    let mut b = Book::open(Level::Critical);
    b.step(set_time(TimeKind::Detected, t(0), t(1)), t(1)).unwrap_or_default();
    let before = b.entries.len();
    // Beyond the clock skew: refused, saying the date is wanted.
    let why = b.step(set_time(TimeKind::Mitigated, t(10), t(5)), t(5)).err().unwrap_or_default();
    assert!(why.contains("in the future") && why.contains("YYYY-MM-DD HH:MM"), "{why}");
    // Within the skew: fine.
    assert!(b.incident().decide(set_time(TimeKind::Mitigated, t(6), t(5)), &b.checklist).is_ok());
    // Impact cannot begin after its detection, nor resolution come before mitigation.
    let why = b.step(set_time(TimeKind::ImpactBegan, t(1), t(5)), t(5)).err().unwrap_or_default();
    assert!(why.contains("impact began") && why.contains("after detected"), "{why}");
    b.step(set_time(TimeKind::Mitigated, t(4), t(5)), t(5)).unwrap_or_default();
    let why = b.step(set_time(TimeKind::Resolved, t(3), t(5)), t(5)).err().unwrap_or_default();
    assert!(why.contains("resolved") && why.contains("before mitigated"), "{why}");
    let why = b.step(set_time(TimeKind::Detected, t(5), t(6)), t(6)).err().unwrap_or_default();
    assert!(why.contains("after mitigated"), "{why}");
    assert_eq!(b.entries.len(), before + 1, "only the good mitigated time was appended");
    // A source must be said.
    let empty = Step::SetTime { which: TimeKind::Resolved, at: t(5), source: " ".into(), now: t(6) };
    assert!(b.step(empty, t(6)).is_err());
}

#[test]
fn closing_records_resolved_once_stops_the_timers_and_cannot_happen_twice() {
    let mut b = Book::open(Level::Critical);
    assert!(b.incident().next_update_due(t(3)).is_some());
    assert!(b.incident().customer_notice_due(t(3)).is_some());
    assert!(b.step(Step::Close { reason: " ".into(), now: t(30) }, t(30)).is_err());
    let kinds = b.step(Step::Close { reason: "burst reversed, audit clean".into(), now: t(30) }, t(30));
    assert_eq!(kinds, Ok(vec!["time_set".to_string(), "incident_closed".to_string()]));
    let i = b.incident();
    assert_eq!(i.times.resolved.as_ref().map(|m| m.at), Some(t(30)));
    let closed = i.closed.clone().unwrap_or_else(|| panic!("not closed"));
    assert_eq!((closed.at, closed.reason.as_str()), (t(30), "burst reversed, audit clean"));
    assert_eq!(i.next_update_due(t(90)), None);
    assert_eq!(i.customer_notice_due(t(90)), None);
    let why = b.step(Step::Close { reason: "again".into(), now: t(31) }, t(31)).err().unwrap_or_default();
    assert!(why.contains("closed at"), "{why}");

    // A resolved time set before is kept: closing adds only the close.
    let mut b = Book::open(Level::Moderate);
    b.step(set_time(TimeKind::Resolved, t(20), t(25)), t(25)).unwrap_or_default();
    let kinds = b.step(Step::Close { reason: "done".into(), now: t(40) }, t(40));
    assert_eq!(kinds, Ok(vec!["incident_closed".to_string()]));
    assert_eq!(b.incident().times.resolved.map(|m| m.at), Some(t(20)));
}

#[test]
fn a_journal_without_times_folds_as_before() {
    let mut b = Book::open(Level::Critical);
    b.step(Step::Note { text: "x".into() }, t(1)).unwrap_or_default();
    let i = b.incident();
    assert_eq!((i.times.clone(), i.closed.clone()), (times::Times::default(), None));
    assert_eq!(
        i.next_update_due(t(1)),
        crate::core::comms::cadence::next_update_due(Level::Critical, None, t(0), t(1))
    );
}

/// "Customers told the service is restored" is observed from the resolution notice, not
/// from the first customer notice (which says the service is degraded).
#[test]
fn the_resolution_notice_is_what_tells_customers_the_service_is_restored() {
    let copied = |template: &str| Observation::MessageCopied {
        template: template.into(),
        audience: "customer".into(),
        path: format!("messages/{template}.md"),
    };
    assert_eq!(
        copied("customer_notice").signal(),
        Some(vec![crate::core::workflow::checklist::AutoSignal::CustomerNoticeSent])
    );
    assert_eq!(
        copied("resolution_notice").signal(),
        Some(vec![crate::core::workflow::checklist::AutoSignal::ResolutionNoticeSent])
    );
    let shipped = crate::core::workflow::checklist::Checklist::shipped();
    let item = shipped.get("customer_update").unwrap_or_else(|| panic!("the item"));
    assert_eq!(item.auto, Some(crate::core::workflow::checklist::AutoSignal::ResolutionNoticeSent));
}
