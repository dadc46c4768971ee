//! The header behind PgBouncer in transaction pooling mode (`--pooling transaction`): it
//! names the database and says that changes made elsewhere are polled for, not listened
//! to; and a console reached directly says nothing of the kind.
//!
//! Regenerate with `INSTA_UPDATE=always cargo test --test tui pooler_snapshots::`.

use std::time::Duration;

use incident_console::console::protocol::{ConnState, DbEvent};
use incident_console::core::workflow::Level;
use incident_console::store::connect::{ConnectSettings, Pooling};

use crate::support::app::{Driver, SIZES, assert_has, assert_lacks, screen_text};
use crate::support::fixtures::{TITLE, maintenance_off, t0};

/// The label the worker sends for a production URL reached with `pooling`.
fn label(pooling: Pooling) -> String {
    ConnectSettings {
        url: "postgres://dana:s3cret@pgbouncer.internal:6432/trading".into(),
        is_sandbox: false,
        operator: "dana".into(),
        application_name: "incident-console".into(),
        statement_timeout: Duration::from_secs(30),
        lock_timeout: Duration::from_secs(10),
        pooling,
    }
    .label()
}

fn connected(size: (u16, u16), pooling: Pooling) -> Driver {
    let mut s = Driver::new(TITLE, Level::Moderate, t0(), size);
    s.db(DbEvent::Target(label(pooling)));
    s.db(DbEvent::Connection(ConnState::Up { latency_ms: 2 }));
    s.db(DbEvent::Maintenance(maintenance_off()));
    s.tick(t0() + chrono::Duration::seconds(2));
    s
}

#[test]
fn the_header_says_the_console_polls_behind_a_transaction_pooler() {
    for size in SIZES {
        let s = connected(size, Pooling::Transaction);
        let terminal = s.draw();
        insta::assert_snapshot!(format!("transaction_pooler_{}x{}", size.0, size.1), terminal.backend());
        let text = screen_text(&terminal);
        // How it learns of changes comes first: at 80 columns the host may be cut, not that.
        assert_has(&text, &["DB tx pooler, polling · dana@pgbouncer"]);
        assert_lacks(&text, &["s3cret"]);
    }
}

#[test]
fn reached_directly_the_header_says_nothing_of_polling() {
    let text = screen_text(&connected((160, 48), Pooling::Session).draw());
    assert_has(&text, &["DB dana@pgbouncer.internal:6432/trading"]);
    assert_lacks(&text, &["polling"]);
}
