//! The Pre-check, Rollback and Post-check panes.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Gauge, Paragraph, Row, Table, Wrap};
use serde_json::Value;

use crate::console::app::flow::{FlowTarget, Stage, short};
use crate::console::app::{App, Load};
use crate::console::ui::layout::Pane;
use crate::console::ui::{duration_text, fit, pane_block};
use crate::core::batch::Outcome;
use crate::core::contract::Check;
use crate::core::format::money;
use crate::core::sanitize;

fn pass(passed: bool) -> Span<'static> {
    if passed {
        Span::styled("PASS", Style::new().fg(Color::Green).add_modifier(Modifier::BOLD))
    } else {
        Span::styled("FAIL", Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD))
    }
}

fn value_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => {
            s.parse::<rust_decimal::Decimal>().map(money).unwrap_or_else(|_| sanitize::line(s).into_owned())
        }
        Some(Value::Null) | None => "-".into(),
        Some(other) => sanitize::line(&other.to_string()).into_owned(),
    }
}

/// One line per check. A passing check's detail too long for `room` columns ends in a
/// visible '…' (details carry amounts, and a silently cut amount reads as another amount);
/// a failing check's detail is kept whole, for the paragraph to wrap.
fn check_lines(checks: &[&Check], room: u16) -> Vec<Line<'static>> {
    let width = checks.iter().map(|c| sanitize::line(&c.check).chars().count()).max().unwrap_or(0);
    let detail_room = room.saturating_sub(u16::try_from(width + 7).unwrap_or(u16::MAX)).max(2);
    checks
        .iter()
        .map(|c| {
            let detail = sanitize::line(c.detail.as_deref().unwrap_or("")).into_owned();
            Line::from(vec![
                Span::raw(" "),
                pass(c.passed),
                Span::raw(format!(" {:<width$} ", sanitize::line(&c.check), width = width)),
                Span::styled(if c.passed { fit(&detail, detail_room) } else { detail }, Style::new().fg(Color::Gray)),
            ])
        })
        .collect()
}

/// The Pre-check pane.
pub fn precheck(app: &App, frame: &mut Frame, area: Rect) {
    let (title, lines): (String, Vec<Line>) = match &app.precheck {
        Load::Idle => (
            "Pre-check".into(),
            vec![
                Line::from(" Put the cursor on an order and press p (or enter)."),
                Line::from(" Every check runs in one round trip; its baseline is"),
                Line::from(" what the post-check compares the rollback with."),
            ],
        ),
        Load::Loading { since, .. } => (
            "Pre-check".into(),
            vec![Line::from(format!(" pre-checking… {} (c to cancel)", duration_text(app.now - *since)))],
        ),
        Load::Failed(e) => (
            "Pre-check".into(),
            vec![Line::from(Span::styled(
                format!(" The pre-check could not run: {}", sanitize::line(e)),
                Style::new().fg(Color::Red),
            ))],
        ),
        Load::Cancelled => ("Pre-check".into(), vec![Line::from(" Cancelled.")]),
        Load::Loaded(v) => {
            let mut lines = vec![Line::from(vec![
                Span::raw(" "),
                if v.result.ready {
                    Span::styled(" READY ", Style::new().fg(Color::Black).bg(Color::Green).add_modifier(Modifier::BOLD))
                } else {
                    Span::styled(
                        " NOT READY ",
                        Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
                    )
                },
                Span::raw(format!("  at {}", v.at.format("%H:%M:%S UTC"))),
            ])];
            // The money first, then the failing checks, then the rest: on a small screen
            // what is cut is what passed.
            if let Some(f) = v.result.figures() {
                lines.push(Line::from(format!(
                    " Baseline: balance {}, margin {}, {} open",
                    money(f.balance),
                    money(f.margin_used),
                    f.open_positions
                )));
                let group = if f.transaction_id.is_some() {
                    format!(" · group of {}: {}", f.group.order_ids.len(), money(f.group.expected_refund))
                } else {
                    String::new()
                };
                // Not ready: nothing would be given back now; the figures are the execution's.
                lines.push(Line::from(if v.result.ready {
                    format!(
                        " Refund {}, margin back {}{group}",
                        money(f.expected_refund),
                        money(f.expected_margin_release)
                    )
                } else {
                    format!(
                        " Not ready: no refund now (execution took {}, margin {})",
                        money(f.expected_refund),
                        money(f.expected_margin_release)
                    )
                }));
            }
            if let Some(at) = app.rollback_since(Some(v.at)) {
                lines.push(Line::from(Span::styled(
                    format!(" Stale: a rollback at {} since · p re-runs", at.format("%H:%M:%S")),
                    Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
                )));
            }
            let mut checks: Vec<&Check> = v.result.checks.iter().collect();
            checks.sort_by_key(|c| c.passed);
            lines.extend(check_lines(&checks, area.width.saturating_sub(2)));
            (format!("Pre-check · order {} · user {}", short(v.order), short(v.user)), lines)
        }
    };
    let mut block = pane_block(app, Pane::Precheck, title);
    if app.detail_scroll > 0 {
        block = block.title_bottom(Line::from(format!(" ↑ {} more (k) ", app.detail_scroll)).right_aligned());
    }
    // Wrapped, so the baseline's amounts are never cut; the check lines already fit.
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((app.detail_scroll, 0)).block(block),
        area,
    );
}

/// The Rollback pane.
pub fn rollback(app: &App, frame: &mut Frame, area: Rect) {
    let Some(flow) = &app.flow else {
        let block = pane_block(app, Pane::Rollback, "Rollback".into());
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(" r  roll back the order under the cursor"),
                Line::from(" t  roll back its whole transaction group"),
                Line::from(" b  roll back the selection as a batch (space selects, A selects all matching)"),
                Line::from(""),
                Line::from(" Each starts with a pre-check, asks for a reason and a confirmation,"),
                Line::from(" and ends with a post-check against the baseline. Nothing changes before you confirm."),
            ])
            .wrap(Wrap { trim: false })
            .block(block),
            area,
        );
        return;
    };
    let block = pane_block(app, Pane::Rollback, format!("Rollback · {}", flow.target.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let mut plan: Vec<Line> = Vec::new();
    match (&flow.target, &app.precheck, &flow.preview) {
        (FlowTarget::Batch(_), _, Some((p, _))) => plan.push(Line::from(format!(
            " {} order(s) ({} executed) of {} user(s): refund {}, release margin {}",
            p.orders,
            p.executed,
            p.users,
            money(p.total_refund),
            money(p.total_margin_release)
        ))),
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

    match &flow.stage {
        Stage::Prechecking { .. } => text(frame, inner, vec![Line::from(" Pre-checking… (c to cancel)")]),
        Stage::Previewing { .. } => {
            text(frame, inner, vec![Line::from(" Working out what the batch covers… (c to cancel)")])
        }
        Stage::PrecheckFailed => {
            let mut lines = vec![Line::from(Span::styled(
                " The pre-check did not pass: nothing can be rolled back. esc closes.",
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ))];
            if let Load::Loaded(v) = &app.precheck {
                let failing: Vec<&Check> = v.result.checks.iter().filter(|c| !c.passed).collect();
                lines.extend(check_lines(&failing, inner.width));
            }
            text(frame, inner, lines);
        }
        Stage::Reason | Stage::Confirm => {
            let confirming = flow.stage == Stage::Confirm;
            let [top, reason_label, reason, confirm_area, hint] = Layout::vertical([
                Constraint::Length(plan.len() as u16 + 1),
                Constraint::Length(1),
                Constraint::Length(1),
                Constraint::Length(2),
                Constraint::Min(1),
            ])
            .areas(inner);
            text(frame, top, plan);
            frame.render_widget(Paragraph::new(Span::styled(" Reason (required):", Style::new().bold())), reason_label);
            if confirming {
                frame.render_widget(Paragraph::new(format!(" {}", sanitize::line(&flow.reason_text()))), reason);
                match &flow.confirm_word {
                    Some(word) => {
                        let [label, input] =
                            Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(confirm_area);
                        frame.render_widget(
                            Paragraph::new(Line::from(vec![
                                Span::raw(" Type "),
                                Span::styled(word.clone(), Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
                                Span::raw(" to roll back, esc abandons:"),
                            ])),
                            label,
                        );
                        frame.render_widget(&flow.confirm, indent(input));
                    }
                    None => frame.render_widget(
                        Paragraph::new(Span::styled(
                            " enter rolls back now · esc abandons (nothing is changed)",
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
        Stage::Running { since, .. } | Stage::Cancelling { since, .. } => {
            let cancelling = matches!(flow.stage, Stage::Cancelling { .. });
            let status = if cancelling {
                format!(" Cancelling… {} (waiting for the server)", duration_text(app.now - *since))
            } else {
                format!(" Rolling back… {} · c cancels", duration_text(app.now - *since))
            };
            if flow.is_batch() {
                let [head, gauge, counts, list] = Layout::vertical([
                    Constraint::Length(1),
                    Constraint::Length(1),
                    Constraint::Length(1),
                    Constraint::Min(1),
                ])
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
                text(
                    frame,
                    counts,
                    vec![Line::from(format!(" rolled back {} · refused or failed {}", r.rolled_back, r.problems))],
                );
                text(frame, list, outcome_lines(flow.run.recent.iter().map(|(i, o)| (i.order_id, o))));
            } else {
                text(frame, inner, vec![Line::from(status)]);
            }
        }
        Stage::Done { ok, message, elapsed_ms } => {
            let style = if *ok {
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            };
            let mut lines = vec![
                Line::from(Span::styled(format!(" {}", sanitize::line(message)), style)),
                Line::from(format!(" in {} · esc closes", duration_text(chrono::Duration::milliseconds(*elapsed_ms)))),
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
            }
            text(frame, inner, lines);
        }
        Stage::Cancelled { message } => {
            text(frame, inner, vec![Line::from(format!(" {}", sanitize::line(message))), Line::from(" esc closes")])
        }
        Stage::Failed { error } => text(
            frame,
            inner,
            vec![
                Line::from(Span::styled(
                    format!(" Failed: {}", sanitize::line(error)),
                    Style::new().fg(Color::Red).bold(),
                )),
                Line::from(" Nothing is half-done: each rollback is one transaction. esc closes; r tries again."),
            ],
        ),
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

/// The Post-check pane.
pub fn postcheck(app: &App, frame: &mut Frame, area: Rect) {
    let Load::Loaded(v) = &app.postcheck else {
        let block = pane_block(app, Pane::Postcheck, "Post-check".into());
        frame.render_widget(
            Paragraph::new(vec![
                Line::from(" After a rollback, every check of rollback_postcheck shows here:"),
                Line::from(" expected (from the pre-check's baseline) against actual, exactly."),
            ])
            .wrap(Wrap { trim: false })
            .block(block),
            area,
        );
        return;
    };
    let verdict = match &v.postcheck {
        Some(p) if p.successful => Span::styled(" PASSED ", Style::new().fg(Color::Black).bg(Color::Green).bold()),
        Some(_) => Span::styled(" FAILED ", Style::new().fg(Color::White).bg(Color::Red).bold()),
        None => Span::styled(" NOT RUN ", Style::new().fg(Color::Black).bg(Color::Yellow)),
    };
    let mut block = pane_block(app, Pane::Postcheck, format!("Post-check · {}", v.at.format("%H:%M:%S UTC")));
    let inner = block.inner(area);
    let r = &v.rollback;
    // The count beside the verdict; the amounts on their own line, given the rows they need
    // so that no amount is cut.
    let (what, amounts) = if r.success {
        (
            format!(" {} order(s) rolled back", r.order_ids.as_ref().map_or(0, Vec::len)),
            format!(
                " refunded {} · margin released {}",
                money(r.refunded.unwrap_or_default()),
                money(r.margin_released.unwrap_or_default())
            ),
        )
    } else {
        (String::new(), format!(" refused: {}", sanitize::line(r.error_code.as_deref().unwrap_or("unknown"))))
    };
    let width = usize::from(inner.width.max(1));
    let amount_rows = amounts.chars().count().div_ceil(width).clamp(1, 3) as u16;
    let [head, table] = Layout::vertical([Constraint::Length(1 + amount_rows), Constraint::Min(1)]).areas(inner);
    // Checks past the pane's edge (failing ones come first): j / k scroll them.
    let shown = usize::from(table.height.saturating_sub(1));
    let total = v.postcheck.as_ref().map_or(0, |p| p.checks.len());
    let below = total.saturating_sub(usize::from(app.detail_scroll) + shown);
    if below > 0 || app.detail_scroll > 0 {
        block = block
            .title_bottom(Line::from(format!(" {} above · {below} below (j/k) ", app.detail_scroll)).right_aligned());
    }
    frame.render_widget(block, area);
    text(frame, head, vec![Line::from(vec![Span::raw(" "), verdict, Span::raw(what)]), Line::from(amounts)]);
    let Some(p) = &v.postcheck else { return };
    // Failing checks first: on a small screen what is cut is what passed.
    let mut checks: Vec<&Check> = p.checks.iter().collect();
    checks.sort_by_key(|c| c.passed);
    // Expected and actual side by side, whole when they fit: the check names give way first,
    // and whatever is cut ends in a visible '…', so two cut amounts never look alike or apart.
    // [check, expected, actual] of each row, as shown.
    let cells: Vec<[String; 3]> = checks
        .iter()
        .map(|c| {
            [sanitize::line(&c.check).into_owned(), value_text(c.expected.as_ref()), value_text(c.actual.as_ref())]
        })
        .collect();
    let widest = |k: usize, least: usize| cells.iter().map(|r| r[k].chars().count()).fold(least, usize::max) as u16;
    let (check_need, expected_need, actual_need) = (widest(0, 5), widest(1, 16), widest(2, 6));
    let avail = table.width.saturating_sub(4 + 3);
    let check_w = check_need.min(avail.saturating_sub(expected_need + actual_need).max(12));
    let rest = avail.saturating_sub(check_w);
    let expected_w = expected_need.min(rest.saturating_sub(actual_need.min(rest / 2)));
    let actual_w = rest.saturating_sub(expected_w).max(1);
    let rows: Vec<Row> = checks
        .into_iter()
        .zip(&cells)
        .skip(usize::from(app.detail_scroll))
        .map(|(c, [name, expected, actual])| {
            let style = if c.passed { Style::new() } else { Style::new().fg(Color::Red).add_modifier(Modifier::BOLD) };
            Row::new(vec![
                Cell::from(pass(c.passed)),
                Cell::from(fit(name, check_w)),
                Cell::from(fit(expected, expected_w)),
                Cell::from(fit(actual, actual_w)),
            ])
            .style(style)
        })
        .collect();
    let header = Row::new(vec!["", "check", "expected", "actual"]).style(Style::new().fg(Color::Gray).bold());
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(4),
                Constraint::Length(check_w),
                Constraint::Length(expected_w),
                Constraint::Min(actual_w),
            ],
        )
        .header(header),
        table,
    );
}
