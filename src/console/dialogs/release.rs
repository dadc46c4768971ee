//! The release overlay (Level 3): the execution system's current and previous release, what
//! going back to the previous one would change and archive (and what was changed by hand
//! since), a reason and the target's name typed to confirm, then the rollback and its proof,
//! which go into the journal.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

use crate::console::app::{App, Effects};
use crate::console::hints::Keys;
use crate::console::keys::EventKeys;
use crate::console::protocol::{Command, ConnState, ReleasePlan, RequestId};
use crate::console::widgets::centered;
use crate::core::keys::KeyAction;
use crate::core::release::{ReleaseRow, RevertPrecheck};
use crate::core::sanitize;
use crate::ops::release::{Answer, ReleaseRollback};

/// Which input takes what is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Field {
    /// Why (recorded with the revert and in the journal).
    #[default]
    Reason,
    /// The target release's name, typed to confirm.
    Confirm,
}

/// The overlay's state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReleaseView {
    /// The request in flight (the plan, or the rollback).
    pub request: Option<RequestId>,
    /// The history and the pre-check.
    pub plan: Option<ReleasePlan>,
    /// Why the plan could not be read.
    pub error: Option<String>,
    /// The reason typed.
    pub reason: String,
    /// The confirmation typed.
    pub typed: String,
    /// The input that takes keys.
    pub field: Field,
    /// The rollback is running.
    pub running: bool,
    /// What the rollback answered.
    pub done: Option<Result<Answer<ReleaseRollback>, String>>,
}

impl ReleaseView {
    /// The pre-check, when the plan has one that was not refused.
    fn precheck(&self) -> Option<&RevertPrecheck> {
        match self.plan.as_ref()?.precheck.as_ref()? {
            Answer::Done(p) => Some(p),
            Answer::Refused(_) => None,
        }
    }
}

/// Opens it and asks the worker for the plan.
pub(crate) fn open(app: &mut App) -> Effects {
    if !matches!(app.conn, ConnState::Up { .. }) {
        return app.say("Releases need the database: it is not connected.", true);
    }
    let id = app.id();
    app.release = Some(ReleaseView { request: Some(id), ..ReleaseView::default() });
    Effects::with(vec![Command::ReleasePlan { id }])
}

/// The worker's plan.
pub(crate) fn on_plan(app: &mut App, id: RequestId, result: Result<ReleasePlan, String>) -> Effects {
    let Some(v) = app.release.as_mut().filter(|v| v.request == Some(id)) else { return Effects::none() };
    v.request = None;
    match result {
        Ok(p) => v.plan = Some(p),
        Err(e) => v.error = Some(e),
    }
    Effects::redraw()
}

/// The worker's answer to the rollback: shown, and journaled.
pub(crate) fn on_rolled_back(
    app: &mut App,
    id: RequestId,
    reason: String,
    result: Result<Answer<ReleaseRollback>, String>,
) -> Effects {
    let mut e = Effects::redraw();
    if let Ok(Answer::Done(d)) = &result {
        e.journal = app.observe(vec![crate::core::observed::release_rollback(&d.answer, d.proof.as_ref(), &reason)]);
    }
    let text = match &result {
        Ok(Answer::Done(d)) if d.proof.as_ref().is_some_and(|p| p.passed) => {
            format!("Release rollback to {} PROVED.", sanitize::line(&d.answer.target))
        }
        Ok(Answer::Done(d)) => format!("Release rollback to {} done but NOT proved.", sanitize::line(&d.answer.target)),
        Ok(Answer::Refused(r)) => format!("Release rollback refused ({}): nothing changed.", r.error_code),
        Err(e) => format!("Release rollback failed: {}", sanitize::line(e)),
    };
    let error = !matches!(&result, Ok(Answer::Done(d)) if d.proof.as_ref().is_some_and(|p| p.passed));
    if let Some(v) = app.release.as_mut().filter(|v| v.request == Some(id)) {
        v.request = None;
        v.running = false;
        v.done = Some(result);
    }
    let said = app.say(text, error);
    e.redraw |= said.redraw;
    e
}

/// A key while it is open.
pub(crate) fn key(app: &mut App, key: KeyEvent) -> Effects {
    let Some(v) = app.release.as_mut() else { return Effects::none() };
    if v.running {
        return app.say("The release rollback is running; its proof follows.", false);
    }
    if v.done.is_some() || v.error.is_some() || (v.plan.is_some() && v.precheck().is_none()) {
        app.release = None;
        return Effects::redraw();
    }
    let action = app.keymap.dialog_action(&key);
    match (action, key.code) {
        (Some(KeyAction::Dismiss), _) => {
            let mut e = Effects::redraw();
            if let Some(id) = v.request {
                e.commands.push(Command::Cancel { id });
            }
            app.release = None;
            e
        }
        (Some(KeyAction::Accept), _) => accept(app),
        (_, KeyCode::Backspace) => {
            match v.field {
                Field::Reason => v.reason.pop(),
                Field::Confirm => v.typed.pop(),
            };
            Effects::redraw()
        }
        (_, KeyCode::Char(c)) if !c.is_control() => {
            let text = match v.field {
                Field::Reason => &mut v.reason,
                Field::Confirm => &mut v.typed,
            };
            if text.chars().count() < 1000 {
                text.push(c);
            }
            Effects::redraw()
        }
        _ => Effects::none(),
    }
}

/// Enter: the reason, then the confirmation, then the rollback.
fn accept(app: &mut App) -> Effects {
    let Some(v) = app.release.as_mut() else { return Effects::none() };
    let Some(target) = v.precheck().map(|p| p.target.clone()) else { return Effects::none() };
    match v.field {
        Field::Reason => match crate::core::workflow::incident::reason_ok(&v.reason, "a reason") {
            Ok(_) => {
                v.field = Field::Confirm;
                Effects::redraw()
            }
            Err(e) => app.say(e.to_string(), true),
        },
        Field::Confirm if v.typed.trim() != target => {
            app.say(format!("Type {target} exactly to roll back to it."), true)
        }
        Field::Confirm => {
            let reason = v.reason.trim().to_string();
            let id = app.id();
            if let Some(v) = app.release.as_mut() {
                v.request = Some(id);
                v.running = true;
            }
            let mut e = Effects::with(vec![Command::ReleaseRollback { id, to: target.clone(), reason }]);
            let said = app.say(format!("Rolling the execution system back to {target}, then proving it …"), false);
            e.redraw |= said.redraw;
            e
        }
    }
}

/// The footer while it is open.
pub(crate) fn hint(app: &App, k: Keys) -> String {
    match app.release.as_ref() {
        Some(v) if v.running => " release rollback running · its proof follows".into(),
        Some(v) if v.done.is_some() || v.error.is_some() => " release rollback · any key closes".into(),
        Some(v) if v.field == Field::Confirm => format!(
            " type the release's name · {} rolls back · {} closes, nothing changed",
            k.of(KeyAction::Accept),
            k.of(KeyAction::Dismiss)
        ),
        _ => format!(
            " type why · {} next · {} closes, nothing changed",
            k.of(KeyAction::Accept),
            k.of(KeyAction::Dismiss)
        ),
    }
}

fn release_line(label: &str, r: Option<&ReleaseRow>) -> Line<'static> {
    Line::from(match r {
        Some(r) => format!(
            " {label}: {} (service {}), deployed {} UTC by {}",
            sanitize::line(&r.name),
            sanitize::line(r.service_version.as_deref().unwrap_or("-")),
            r.deployed_at.format("%Y-%m-%d %H:%M"),
            sanitize::line(&r.deployed_by)
        ),
        None => format!(" {label}: none"),
    })
}

fn plan_lines(v: &ReleaseView, p: &ReleasePlan, waiting: bool, lines: &mut Vec<Line<'static>>) {
    let mut active = p.releases.iter().filter(|r| r.active()).rev();
    lines.push(release_line("Current", active.next()));
    lines.push(release_line("Previous", active.next()));
    let pre = match &p.precheck {
        None => {
            lines.push(Line::from(" Nothing to roll back to: fewer than two releases are in effect."));
            return;
        }
        Some(Answer::Refused(r)) => {
            lines.push(Line::from(format!(" Cannot roll back ({}): {}", r.error_code, sanitize::line(&r.message))));
            return;
        }
        Some(Answer::Done(pre)) => pre,
    };
    let red = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    lines.push(if pre.maintenance_mode {
        Line::from(" Maintenance mode: ON (a probe proves it again before the revert)")
    } else {
        Line::from(Span::styled(" Maintenance mode: off — the rollback is refused until M turns it on", red))
    });
    let names: Vec<String> = pre.releases.iter().map(|r| sanitize::line(&r.name).into_owned()).collect();
    lines.push(Line::from(format!(
        " Reverts {} -> {}, changing {} object(s):",
        names.join(", "),
        sanitize::line(&pre.target),
        pre.objects.len()
    )));
    for o in &pre.objects {
        lines.push(Line::from(format!("   {:<8} {:<9} {}", o.action, o.kind, sanitize::line(&o.identity))));
    }
    if pre.archive.is_empty() {
        lines.push(Line::from(" Drops no value."));
    }
    for a in &pre.archive {
        lines.push(Line::from(format!(
            " Archives (count + checksum), then drops: {} — {} value(s)",
            sanitize::line(&a.object),
            a.values
        )));
    }
    if pre.drift.is_empty() {
        lines.push(Line::from(" Drift: none; every object is as its release deployed it."));
    } else {
        for d in &pre.drift {
            lines.push(Line::from(Span::styled(
                format!(
                    " DRIFT: {} {} changed by hand since deployed: refused (CLI: --accept-drift)",
                    d.kind,
                    sanitize::line(&d.identity)
                ),
                red,
            )));
        }
    }
    let cursor = |f: Field| if v.field == f { "█" } else { "" };
    lines.push(Line::from(""));
    lines.push(Line::from(format!(" Reason: {}{}", sanitize::line(&v.reason), cursor(Field::Reason))));
    if v.field == Field::Confirm || v.running {
        lines.push(Line::from(format!(
            " Type {} to roll back to it: {}{}",
            sanitize::line(&pre.target),
            sanitize::line(&v.typed),
            cursor(Field::Confirm)
        )));
    }
    if v.running && waiting {
        lines.push(Line::from(" Waiting for a second person to approve it (in their console: V) …"));
    } else if v.running {
        lines.push(Line::from(" Rolling back in one transaction, then proving …"));
    }
}

fn done_lines(d: &Result<Answer<ReleaseRollback>, String>, lines: &mut Vec<Line<'static>>) {
    let red = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
    let green = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);
    match d {
        Err(e) => lines.push(Line::from(Span::styled(format!(" Failed: {}", sanitize::line(e)), red))),
        Ok(Answer::Refused(r)) => {
            lines.push(Line::from(Span::styled(format!(" Refused ({}), nothing changed:", r.error_code), red)));
            lines.push(Line::from(format!(" {}", sanitize::line(&r.message))));
        }
        Ok(Answer::Done(d)) => {
            let names: Vec<String> = d.answer.reverted.iter().map(|r| sanitize::line(&r.name).into_owned()).collect();
            lines.push(Line::from(format!(
                " Reverted {} -> {} in one transaction.",
                names.join(", "),
                sanitize::line(&d.answer.target)
            )));
            for x in &d.answer.archived {
                lines.push(Line::from(format!(
                    " Archived {}: {} value(s), checksum {} = the live table's (set {}).",
                    sanitize::line(&x.object),
                    x.rows,
                    x.archived_checksum,
                    x.set_id
                )));
            }
            if let Some(p) = &d.proof {
                for c in &p.checks {
                    lines.push(Line::from(vec![
                        Span::styled(if c.passed { " PASS " } else { " FAIL " }, if c.passed { green } else { red }),
                        Span::raw(format!(" {:<22} {}", c.name, sanitize::line(&c.detail))),
                    ]));
                }
                lines.push(Line::from(Span::styled(
                    if p.passed { " Release rollback PROVED." } else { " Release rollback NOT PROVED." },
                    if p.passed { green } else { red },
                )));
            }
        }
    }
}

/// Draws it over the screen.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(v) = &app.release else { return };
    let k = Keys(&app.keymap);
    let rect = centered(area, area.width.min(110), area.height.saturating_sub(2).min(26));
    frame.render_widget(Clear, rect);
    let title = format!(" Release rollback · Level 3 · {} closes ", k.of(KeyAction::Dismiss));
    let block = Block::bordered().title(title).border_type(BorderType::Double);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let mut lines: Vec<Line<'static>> = Vec::new();
    match (&v.plan, &v.error, &v.done) {
        (_, _, Some(d)) => done_lines(d, &mut lines),
        (_, Some(e), _) => lines.push(Line::from(Span::styled(
            format!(" Could not read the releases: {}", sanitize::line(e)),
            Style::new().fg(Color::Red),
        ))),
        (Some(p), _, _) => {
            // This console's own request for it, not decided yet.
            let waiting = app.approvals.iter().any(|r| {
                r.kind == "release_rollback"
                    && app.my_requests.contains(&r.id)
                    && r.state(app.now) == crate::core::approval::RequestState::Pending
            });
            plan_lines(v, p, waiting, &mut lines)
        }
        _ => lines.push(Line::from(" reading the releases and the pre-check …")),
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
