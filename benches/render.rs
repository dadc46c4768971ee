//! Drawing and key handling of the console, measured with criterion on a TestBackend.
//!
//! `cargo bench --bench render`. The figures that matter are ratios against the
//! baseline in the same run (an empty 160x48 frame), because the machine is shared.

use std::hint::black_box;

use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use incident_console::console::app::{Action, App};
use incident_console::console::protocol::{Command, ConnState, DbEvent};
use incident_console::core::contract::OrderRow;
use incident_console::core::keys::KeyMap;
use incident_console::core::workflow::{IncidentHeader, Level};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use rust_decimal::Decimal;
use uuid::Uuid;

fn row(i: u64) -> OrderRow {
    let t = Utc.with_ymd_and_hms(2026, 11, 25, 16, 0, 0).single().unwrap_or_default() - Duration::seconds(i as i64);
    OrderRow {
        id: Uuid::from_u128(0x1000 + u128::from(i)),
        user_id: Uuid::from_u128(0x2000 + u128::from(i % 200)),
        symbol: ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD"][(i % 4) as usize].into(),
        side: if i.is_multiple_of(2) { "buy".into() } else { "sell".into() },
        order_type: "market".into(),
        quantity: Decimal::from(1000 + i),
        price: Some(Decimal::new(12700, 4)),
        status: "executed".into(),
        transaction_id: Some(Uuid::from_u128(0x3000 + u128::from(i / 3))),
        total_cost: Some(Decimal::new(2531_14686, 5)),
        commission: Some(Decimal::new(25_3114, 4)),
        failure_reason: None,
        rolled_back_reason: None,
        created_at: t,
        executed_at: Some(t),
        rolled_back_at: None,
    }
}

/// An app that has loaded pages of orders until `total` rows went through it (it keeps
/// at most its window of them), with `matching` orders counted.
fn loaded_app(total: u64, matching: i64) -> App {
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 16, 5, 0).single().unwrap_or_default();
    let mut app = App::new(
        KeyMap::default(),
        IncidentHeader::new("Duplicate executions".into(), Level::Moderate, now),
        "sandbox".into(),
        now,
        (160, 48),
    );
    let mut cmds = app.update(Action::Db(Box::new(DbEvent::Connection(ConnState::Up { latency_ms: 1 })))).commands;
    let mut next = 0u64;
    while next < total {
        let mut progressed = false;
        for c in std::mem::take(&mut cmds) {
            match c {
                Command::LoadOrders { id, page, limit, .. } => {
                    let n = (limit as u64).min(total - next);
                    let rows: Vec<OrderRow> = (next..next + n).map(row).collect();
                    next += n;
                    let more = next < total;
                    let ev = DbEvent::Orders { id, page, rows, has_more: more };
                    cmds.extend(app.update(Action::Db(Box::new(ev))).commands);
                    progressed = true;
                }
                Command::CountOrders { id, .. } => {
                    let ev = DbEvent::OrderCount { id, count: matching, capped: false };
                    cmds.extend(app.update(Action::Db(Box::new(ev))).commands);
                }
                _ => {}
            }
        }
        if !progressed {
            // Walk the cursor to the end of the window so the next page is asked for.
            cmds.extend(
                app.update(Action::Terminal(Event::Key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE)))).commands,
            );
            if cmds.is_empty() {
                break;
            }
        }
    }
    app
}

fn key(c: char) -> Action {
    Action::Terminal(Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)))
}

fn bench(c: &mut Criterion) {
    let mut terminal = match Terminal::new(TestBackend::new(160, 48)) {
        Ok(t) => t,
        Err(e) => panic!("test backend: {e}"),
    };
    let empty = loaded_app(0, 0);
    c.bench_function("baseline: empty 160x48 frame", |b| {
        b.iter(|| terminal.draw(|f| incident_console::console::render(black_box(&empty), f)).map(|_| ()))
    });
    let app = loaded_app(10_000, 10_000);
    c.bench_function("160x48 frame, 10,000 orders loaded", |b| {
        b.iter(|| terminal.draw(|f| incident_console::console::render(black_box(&app), f)).map(|_| ()))
    });
    let mut app = loaded_app(10_000, 10_000);
    c.bench_function("key j handled and frame redrawn, 10,000 orders loaded", |b| {
        b.iter(|| {
            let e = app.update(key('j'));
            let _ = app.update(key('k'));
            black_box(e);
            terminal.draw(|f| incident_console::console::render(&app, f)).map(|_| ())
        })
    });
}

/// The console on the incident screen, its journal holding `notes` notes after the opening.
fn incident_app(dir: &std::path::Path, notes: usize) -> App {
    use incident_console::console::incident::IncidentPanel;
    use incident_console::core::comms::TemplateStore;
    use incident_console::core::journal;
    use incident_console::core::workflow::checklist::Checklist;
    use incident_console::store::incidents::IncidentStore;
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 16, 5, 0).single().unwrap_or_default();
    let store = IncidentStore::new(dir.to_path_buf());
    let inc = match store.create("Duplicate executions", Level::Critical, "bench", "bench", now, Checklist::shipped()) {
        Ok(i) => i,
        Err(e) => panic!("incident: {e}"),
    };
    for n in 0..notes {
        let text = format!("note {n}: checked the GBPUSD fills of deploy 4711");
        let note = journal::Event::Note(journal::event::Note { text, system: false });
        if let Err(e) = inc.journal.append("bench", &note, now + Duration::seconds(n as i64)) {
            panic!("append: {e}");
        }
    }
    let entries = match inc.entries() {
        Ok(e) => e,
        Err(e) => panic!("entries: {e}"),
    };
    let panel = match IncidentPanel::new(
        entries,
        Checklist::shipped(),
        TemplateStore::shipped(),
        Vec::new(),
        inc.journal.path().to_path_buf(),
        now,
    ) {
        Ok(p) => p,
        Err(e) => panic!("panel: {e}"),
    };
    let mut app = loaded_app(0, 0).with_incident(panel);
    let _ = app.update(key('i'));
    app
}

fn bench_incident(c: &mut Criterion) {
    let mut terminal = match Terminal::new(TestBackend::new(160, 48)) {
        Ok(t) => t,
        Err(e) => panic!("test backend: {e}"),
    };
    let empty = loaded_app(0, 0);
    c.bench_function("baseline (incident): empty 160x48 frame", |b| {
        b.iter(|| terminal.draw(|f| incident_console::console::render(black_box(&empty), f)).map(|_| ()))
    });
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let app = incident_app(dir.path(), 2_000);
    c.bench_function("incident screen 160x48, journal of 2,000 entries", |b| {
        b.iter(|| terminal.draw(|f| incident_console::console::render(black_box(&app), f)).map(|_| ()))
    });
    let mut app = incident_app(&dir.path().join("second"), 2_000);
    let now = app.now;
    c.bench_function("messages re-filled from a journal of 2,000 entries", |b| {
        b.iter(|| {
            if let Some(case) = app.case.as_mut() {
                case.refresh_messages(black_box(now));
            }
        })
    });
}

criterion_group!(benches, bench, bench_incident);
criterion_main!(benches);
