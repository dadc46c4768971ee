//! Drawing the Rollback pane: what to press when no rollback is prepared, else the flow's
//! plan and stage.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, Wrap};

use super::{Flow, FlowTarget, LastBatch, Stage};
use crate::console::app::{App, Load};
use crate::console::hints::Keys;
use crate::console::panes::Pane;
use crate::console::panes::postcheck::value_text;
use crate::console::panes::precheck::check_lines;
use crate::console::protocol::BatchTarget;
use crate::console::widgets::{duration_text, pane_block, short};
use crate::core::batch::{Outcome, Proof};
use crate::core::contract::Check;
use crate::core::format::money;
use crate::core::keys::KeyAction;
use crate::core::orders::TimeBound;
use crate::core::sanitize;

/// Draws the pane.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let k = Keys(&app.keymap);
    let Some(flow) = &app.flow else {
        let block = pane_block(app, Pane::Rollback, "Rollback".into());
        frame.render_widget(
            // The last batch's result comes first: after a batch it is what the commander
            // reads, and the keys below are in the footer and the help as well.
            Paragraph::new(
                last_batch(app)
                    .into_iter()
                    .chain([
                        Line::from(format!(" {}  roll back the order under the cursor", k.of(KeyAction::Rollback))),
                        Line::from(format!(
                            " {}  roll back its whole transaction group",
                            k.of(KeyAction::RollbackGroup)
                        )),
                        Line::from(format!(
                            " {}  roll back the selection as a batch ({} selects, {} selects all matching)",
                            k.of(KeyAction::RollbackBatch),
                            k.of(KeyAction::ToggleSelect),
                            k.of(KeyAction::SelectAllMatching)
                        )),
                        Line::from(""),
                        Line::from(" Each starts with a pre-check, asks for a reason and a confirmation,"),
                        Line::from(
                            " and ends with a post-check against the baseline. Nothing changes before you confirm.",
                        ),
                    ])
                    .collect::<Vec<_>>(),
            )
            .wrap(Wrap { trim: false })
            .block(block),
            area,
        );
        return;
    };
    let block = pane_block(app, Pane::Rollback, format!("Rollback · {}", flow.target.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // A finished flow closes with cancel; people expect esc to close, so it is named while
    // it does.
    let close = k.prefer(KeyAction::Cancel, "esc");
    let cancel = k.of(KeyAction::Cancel);
    match &flow.stage {
        Stage::Prechecking { .. } => {
            text(frame, inner, vec![Line::from(format!(" Pre-checking… ({cancel} to cancel)"))])
        }
        Stage::Previewing { .. } => {
            text(frame, inner, vec![Line::from(format!(" Working out what the batch covers… ({cancel} to cancel)"))])
        }
        Stage::PrecheckFailed => {
            let mut lines = vec![Line::from(Span::styled(
                format!(" The pre-check did not pass: nothing can be rolled back. {close} closes."),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ))];
            if let Load::Loaded(v) = &app.precheck {
                let failing: Vec<&Check> = v.result.checks.iter().filter(|c| !c.passed).collect();
                lines.extend(check_lines(&failing, inner.width));
            }
            text(frame, inner, lines);
        }
        Stage::Reason | Stage::Confirm => reason_and_confirm(app, flow, frame, inner),
        // Only between two frames: the loop writes the intent before it reads another key.
        Stage::Journaling { .. } => {
            text(frame, inner, vec![Line::from(" Writing the rollback's intent to the journal…")])
        }
        Stage::Running { since, .. } | Stage::Cancelling { since, .. } => {
            let status = if matches!(flow.stage, Stage::Cancelling { .. }) {
                format!(" Cancelling… {} (waiting for the server)", duration_text(app.now - *since))
            } else {
                format!(" Rolling back… {} · {cancel} cancels", duration_text(app.now - *since))
            };
            if flow.is_batch() {
                batch_progress(flow, status, frame, inner);
            } else {
                text(frame, inner, vec![Line::from(status)]);
            }
        }
        Stage::Done { ok, message, elapsed_ms } => {
            text(frame, inner, done_lines(app, flow, *ok, message, *elapsed_ms, &close))
        }
        Stage::Cancelled { message } => text(
            frame,
            inner,
            vec![Line::from(format!(" {}", sanitize::line(message))), Line::from(format!(" {close} closes"))],
        ),
        // The reply was lost and could not be read back: it may have committed.
        Stage::Failed { error } if error.starts_with("outcome unknown") => text(
            frame,
            inner,
            vec![
                Line::from(Span::styled(
                    format!(" UNKNOWN: {}", sanitize::line(error)),
                    Style::new().fg(Color::Magenta).bold(),
                )),
                Line::from(format!(
                    " The rollback may have committed. Look at the order before anything else (its \
                     pre-check says); trying again cannot roll it back twice. {close} closes."
                )),
            ],
        ),
        Stage::Failed { error } => text(
            frame,
            inner,
            vec![
                Line::from(Span::styled(
                    format!(" Failed: {}", sanitize::line(error)),
                    Style::new().fg(Color::Red).bold(),
                )),
                Line::from(format!(
                    " Nothing is half-done: each rollback is one transaction. {close} closes; {} tries again.",
                    k.of(KeyAction::Rollback)
                )),
            ],
        ),
    }
}

/// The last batch, kept after its flow is closed: what it did and whether the ledger audit
/// that followed it found anything.
fn last_batch(app: &App) -> Vec<Line<'static>> {
    let Some(LastBatch { at, summary: s, proof }) = &app.last_batch else { return Vec::new() };
    let audit = match app.dashboard.as_ref().map(|d| (d.audit_violations, d.audit_at)) {
        Some((Some(0), Some(t))) if t >= *at => Span::styled(
            format!("ledger audit after it: clean ({})", t.format("%H:%M:%S")),
            Style::new().fg(Color::Green),
        ),
        Some((Some(n), Some(t))) if t >= *at => Span::styled(
            format!("ledger audit after it: {n} violation(s)"),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        _ => Span::styled("ledger audit after it: pending", Style::new().fg(Color::Gray)),
    };
    vec![
        Line::from(Span::styled(
            format!(" Last batch (operation {}), ended {} UTC:", short(s.batch_id), at.format("%H:%M:%S")),
            Style::new().add_modifier(Modifier::BOLD),
        )),
        Line::from(format!(" {} · refunded {}", s.outcome_sentence(), money(s.refunded))),
    ]
    .into_iter()
    .chain(proof_lines(proof.as_ref()))
    .chain([Line::from(vec![Span::raw(" "), audit]), Line::from("")])
    .collect()
}

/// What the rollback will do: how many orders of whom, and the money.
fn plan(app: &App, flow: &Flow) -> Vec<Line<'static>> {
    let mut plan: Vec<Line> = Vec::new();
    match (&flow.target, &app.precheck, &flow.preview) {
        (FlowTarget::Batch(target), _, Some((p, _))) => {
            plan.push(Line::from(format!(
                " {} order(s) ({} executed) of {} user(s): refund {}, release margin {}",
                p.orders,
                p.executed,
                p.users,
                money(p.total_refund),
                money(p.total_margin_release)
            )));
            // What the count came from, as the filter was read: a term read otherwise
            // than meant shows here, before the money moves.
            plan.push(Line::from(Span::styled(
                match target {
                    BatchTarget::Matching(q) => {
                        let day = [q.from, q.to].iter().flatten().any(|b| matches!(b, TimeBound::TimeOfDay(_)));
                        format!(
                            " from: executed orders of {}{}",
                            q.describe(),
                            if day { " (times on the book's last trading day)" } else { "" }
                        )
                    }
                    BatchTarget::Orders(items) => format!(" from: {} order(s) selected by hand", items.len()),
                },
                Style::new().fg(Color::DarkGray),
            )));
        }
        (FlowTarget::Single(o) | FlowTarget::Group(o), Load::Loaded(v), _) if v.order == o.id => {
            if let Some(f) = v.result.figures() {
                let (n, refund, margin) = if matches!(flow.target, FlowTarget::Group(_)) {
                    (f.group.order_ids.len(), f.group.expected_refund, f.group.expected_margin_release)
                } else {
                    (1, f.expected_refund, f.expected_margin_release)
                };
                plan.push(Line::from(format!(
                    " {n} order(s) of user {}: refund {}, release margin {}",
                    short(o.user_id),
                    money(refund),
                    money(margin)
                )));
            }
        }
        _ => {}
    }
    if app.incident.level == crate::core::workflow::Level::Critical {
        plan.push(Line::from(Span::styled(
            " Level 3 incident: the confirmation asks for a typed word.",
            Style::new().fg(Color::Red),
        )));
    }
    if app.no_journal && app.case.is_none() {
        plan.push(Line::from(Span::styled(
            " No journal (--no-journal): its waiver goes to the audit log first.",
            Style::new().fg(Color::Yellow),
        )));
    }
    plan
}

/// The plan, the reason input (or the reason given) and the confirmation.
fn reason_and_confirm(app: &App, flow: &Flow, frame: &mut Frame, inner: Rect) {
    let k = Keys(&app.keymap);
    let plan = plan(app, flow);
    // Rows the plan takes once wrapped: a line cut off here would hide what the batch is.
    let width = usize::from(inner.width.max(1));
    let rows: usize = plan.iter().map(|l| l.width().div_ceil(width).max(1)).sum();
    let [top, reason_label, reason, confirm_area, hint] = Layout::vertical([
        Constraint::Length(u16::try_from(rows + 1).unwrap_or(u16::MAX)),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(2),
        Constraint::Min(1),
    ])
    .areas(inner);
    text(frame, top, plan);
    frame.render_widget(Paragraph::new(Span::styled(" Reason (required):", Style::new().bold())), reason_label);
    if flow.stage == Stage::Confirm {
        frame.render_widget(Paragraph::new(format!(" {}", sanitize::line(&flow.reason_text()))), reason);
        match &flow.confirm_word {
            Some(word) => {
                let [label, input] =
                    Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(confirm_area);
                frame.render_widget(
                    Paragraph::new(Line::from(vec![
                        Span::raw(" Type "),
                        Span::styled(word.clone(), Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
                        Span::raw(format!(" to roll back, {} abandons:", k.of(KeyAction::Dismiss))),
                    ])),
                    label,
                );
                frame.render_widget(&flow.confirm, indent(input));
            }
            None => frame.render_widget(
                Paragraph::new(Span::styled(
                    format!(
                        " {} rolls back now · {} abandons (nothing is changed)",
                        k.of(KeyAction::Accept),
                        k.of(KeyAction::Dismiss)
                    ),
                    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                )),
                confirm_area,
            ),
        }
    } else {
        frame.render_widget(&flow.reason, indent(reason));
    }
    if let Some(h) = &flow.hint {
        frame.render_widget(
            Paragraph::new(Span::styled(format!(" {}", sanitize::line(h)), Style::new().fg(Color::Red))),
            hint,
        );
    }
}

/// A running batch: a gauge, the counts and the latest outcomes.
fn batch_progress(flow: &Flow, status: String, frame: &mut Frame, inner: Rect) {
    let [head, gauge, counts, list] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Length(1), Constraint::Min(1)])
            .areas(inner);
    text(frame, head, vec![Line::from(status)]);
    let r = &flow.run;
    let ratio = if r.total == 0 { 0.0 } else { (r.done as f64 / r.total as f64).clamp(0.0, 1.0) };
    frame.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(format!("{}/{}", r.done, r.total))
            .gauge_style(Style::new().fg(Color::Cyan)),
        gauge,
    );
    text(frame, counts, vec![Line::from(format!(" rolled back {} · refused or failed {}", r.rolled_back, r.problems))]);
    text(frame, list, outcome_lines(flow.run.recent.iter().map(|(i, o)| (i.order_id, o))));
}

/// The result: the sentence, how long it took, and a batch's totals and problems.
fn done_lines(app: &App, flow: &Flow, ok: bool, message: &str, elapsed_ms: i64, close: &str) -> Vec<Line<'static>> {
    let style = if ok {
        Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
    };
    let mut lines = vec![
        Line::from(Span::styled(format!(" {}", sanitize::line(message)), style)),
        Line::from(format!(" in {} · {close} closes", duration_text(chrono::Duration::milliseconds(elapsed_ms)))),
    ];
    if let Some(s) = &flow.summary {
        lines.push(Line::from(format!(
            " refunded {}, margin released {}, {} retries",
            money(s.refunded),
            money(s.margin_released),
            s.retries
        )));
        for (id, code, msg) in s.refused.iter().take(5) {
            lines.push(Line::from(format!(
                " refused {}: {} {}",
                short(*id),
                sanitize::line(code),
                sanitize::line(msg)
            )));
        }
        for (id, err) in s.failed.iter().take(5) {
            lines.push(Line::from(format!(" failed {}: {}", short(*id), sanitize::line(err))));
        }
        for (id, err) in s.unknown.iter().take(5) {
            lines.push(Line::from(format!(" UNKNOWN {}: may be rolled back ({})", short(*id), sanitize::line(err))));
        }
        if let Some(b) = app.last_batch.as_ref().filter(|b| b.summary.batch_id == s.batch_id) {
            lines.extend(proof_lines(b.proof.as_ref()));
        }
    }
    lines
}

/// A batch's proof for people: pending, passed, what failed (each check with its figures,
/// the first violations), or why it did not run.
fn proof_lines(proof: Option<&Result<Proof, String>>) -> Vec<Line<'static>> {
    let bold = |c: Color| Style::new().fg(c).add_modifier(Modifier::BOLD);
    match proof {
        None => vec![Line::from(Span::styled(
            " proof: post-check and audit of the touched accounts running …",
            Style::new().fg(Color::Gray),
        ))],
        Some(Ok(p)) if p.passed() => {
            vec![Line::from(Span::styled(format!(" Proof: {}", p.sentence()), bold(Color::Green)))]
        }
        Some(Ok(p)) => {
            let mut lines =
                vec![Line::from(Span::styled(format!(" PROOF FAILED: {}", p.sentence()), bold(Color::Red)))];
            for c in p.checks.iter().filter(|c| !c.passed) {
                lines.push(Line::from(vec![
                    Span::styled("   FAIL ", bold(Color::Red)),
                    Span::raw(format!(
                        "{}: expected {}, actual {}",
                        sanitize::line(&c.check),
                        value_text(c.expected.as_ref()),
                        value_text(c.actual.as_ref())
                    )),
                ]));
            }
            for v in p.violations.iter().take(3) {
                lines.push(Line::from(format!(
                    "   {} {}: expected {}, actual {}",
                    v.user_id.map(short).unwrap_or_else(|| "(book)".into()),
                    sanitize::line(&v.check_name),
                    v.expected.map(money).unwrap_or_else(|| "none".into()),
                    v.actual.map(money).unwrap_or_else(|| "none".into())
                )));
            }
            lines
        }
        Some(Err(e)) => vec![Line::from(Span::styled(
            format!(" Proof did not run: {} (`incident-console audit` checks the book)", sanitize::line(e)),
            bold(Color::Yellow),
        ))],
    }
}

fn outcome_lines<'a>(items: impl Iterator<Item = (uuid::Uuid, &'a Outcome)>) -> Vec<Line<'static>> {
    items
        .map(|(id, o)| {
            let (label, style, detail) = match o {
                Outcome::RolledBack { refunded, .. } => {
                    ("rolled back", Style::new().fg(Color::Green), format!("refund {}", money(*refunded)))
                }
                Outcome::AlreadyRolledBack => ("already", Style::new().fg(Color::Gray), String::new()),
                Outcome::Refused { error_code, .. } => {
                    ("refused", Style::new().fg(Color::Yellow), sanitize::line(error_code).into_owned())
                }
                Outcome::Failed { error } => {
                    ("FAILED", Style::new().fg(Color::Red), sanitize::line(error).into_owned())
                }
                Outcome::NotAttempted => ("skipped", Style::new().fg(Color::Gray), String::new()),
                Outcome::Unknown { error } => (
                    "UNKNOWN",
                    Style::new().fg(Color::Magenta),
                    format!("may be rolled back: {}", sanitize::line(error)),
                ),
            };
            Line::from(vec![
                Span::raw(format!(" {} ", short(id))),
                Span::styled(format!("{label:<11} "), style),
                Span::raw(detail),
            ])
        })
        .collect()
}

/// The area one column in, to line inputs up with the text around them.
fn indent(r: Rect) -> Rect {
    Rect::new(r.x.saturating_add(1), r.y, r.width.saturating_sub(1), r.height)
}

fn text(frame: &mut Frame, area: Rect, lines: Vec<Line<'static>>) {
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), area);
}
