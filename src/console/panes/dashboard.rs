//! The Dashboard: rollback metrics, a sparkline of rollbacks per minute, and alerts.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline, Wrap};

use crate::console::app::{App, Effects};
use crate::console::panes::Pane;
use crate::console::protocol::DashboardData;
use crate::console::widgets::{duration_text, pane_block};
use crate::core::keys::KeyAction;

/// The keys the footer names.
pub(crate) const HINTS: &[(KeyAction, &str)] = &[(KeyAction::Refresh, "refresh"), (KeyAction::Cancel, "cancel")];

/// New figures from the worker (redrawn only when they changed).
pub(crate) fn on_figures(app: &mut App, d: DashboardData) -> Effects {
    if app.dashboard.as_ref() == Some(&d) {
        return Effects::none();
    }
    app.dashboard = Some(d);
    Effects::redraw()
}

/// Draws the pane.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let block = pane_block(app, Pane::Dashboard, "Dashboard · live".into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(d) = &app.dashboard else {
        frame.render_widget(Paragraph::new(" waiting for the first figures…"), inner);
        return;
    };
    let m = &d.metrics;
    let opt = |v: Option<rust_decimal::Decimal>, unit: &str| v.map_or("none".to_string(), |v| format!("{v}{unit}"));
    // A clock time first: "48 ms ago" read as a duration.
    let last = m
        .last_rollback
        .map_or("never".to_string(), |t| format!("at {} ({} ago)", t.format("%H:%M:%S"), duration_text(app.now - t)));
    let audit = match (d.audit_violations, d.audit_at) {
        (Some(0), Some(t)) => {
            Span::styled(format!("ledger audit clean at {}", t.format("%H:%M:%S")), Style::new().fg(Color::Green))
        }
        (Some(n), _) => Span::styled(
            format!("ledger audit: {n} violation(s)"),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        _ => Span::styled("ledger audit pending", Style::new().fg(Color::Gray)),
    };
    let mut lines = vec![
        // Orders, calls and operations apart: a group call reverses several orders, and a
        // batch is one operation of many calls.
        Line::from(format!(
            " orders rolled back {} · operations {} · in flight {}",
            m.orders_rolled_back, m.operations, d.in_flight
        )),
        Line::from(format!(
            " calls {} ok, {} failed ({}) · last {}",
            m.succeeded,
            m.failed,
            opt(m.success_rate_percent, "%"),
            last
        )),
        Line::from(format!(
            " mean {} · p95 {} · {} call(s) in last 10 min",
            opt(m.mean_ms, " ms"),
            opt(m.p95_ms, " ms"),
            m.recent
        )),
        Line::from(vec![Span::raw(" "), audit]),
    ];
    let planned: Vec<uuid::Uuid> = app.planned_batches.iter().map(|(o, _)| *o).collect();
    let (alerts, expected) = m.alerts_expecting(&planned);
    for a in &alerts {
        lines.push(Line::from(vec![
            Span::styled(" ALERT ", Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD)),
            Span::styled(format!(" {}", a.describe()), Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
        ]));
    }
    if let Some(e) = &expected {
        // Named by when it was confirmed: the commander knows their batch by its time.
        let batches: Vec<String> = app
            .planned_batches
            .iter()
            .filter(|(o, _)| e.operations.contains(o))
            .map(|(_, at)| at.format("%H:%M").to_string())
            .collect();
        lines.push(Line::from(Span::styled(
            format!(
                " expected: your batch{} of {} · {} of the {} rollbacks in the last {} minutes",
                if batches.len() > 1 { "es" } else { "" },
                batches.join(", "),
                e.expected,
                e.count,
                e.window_minutes
            ),
            Style::new().fg(Color::Yellow),
        )));
    }
    if alerts.is_empty() && expected.is_none() {
        lines.push(Line::from(Span::styled(" no alerts", Style::new().fg(Color::Green))));
    }
    // Rows the lines take once wrapped, so the sparkline never covers an alert.
    let width = usize::from(inner.width.max(1));
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(width)).sum();
    let text_height = (rows as u16).min(inner.height.saturating_sub(2));
    let [text, label, spark] =
        Layout::vertical([Constraint::Length(text_height), Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text);
    let peak = d.per_minute.iter().max().copied().unwrap_or(0);
    frame.render_widget(
        Paragraph::new(Span::styled(
            format!(" rollbacks per minute, last hour (peak {peak})"),
            Style::new().fg(Color::Gray),
        )),
        label,
    );
    // The newest minutes on the right, as many as fit.
    let width = spark.width as usize;
    let data = &d.per_minute[d.per_minute.len().saturating_sub(width)..];
    frame.render_widget(Sparkline::default().data(data).style(Style::new().fg(Color::Cyan)), spark);
}
