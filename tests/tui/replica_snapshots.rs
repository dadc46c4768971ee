//! The header with a hot standby (`--replica-url`): the standby's lag while the reads that
//! decide nothing go to it; and, when it is unreachable or too far behind, that those reads
//! went back to the primary, said early in the line (at 80 columns too), with the error's
//! words but never the standby's password.
//!
//! Regenerate with `INSTA_UPDATE=always cargo test --test tui replica_snapshots::`.

use incident_console::console::protocol::{ConnState, DbEvent};
use incident_console::core::replica::{Fallback, ReplicaStatus};
use incident_console::core::workflow::Level;

use crate::support::app::{Driver, SIZES, assert_has, assert_lacks, screen_text};
use crate::support::fixtures::{TITLE, maintenance_off, t0};

fn connected(size: (u16, u16), replica: ReplicaStatus) -> Driver {
    let mut s = Driver::new(TITLE, Level::Moderate, t0(), size);
    s.db(DbEvent::Target("dana@db.internal:5432/trading".into()));
    s.db(DbEvent::Connection(ConnState::Up { latency_ms: 2 }));
    s.db(DbEvent::Maintenance(maintenance_off()));
    s.db(DbEvent::Replica(replica));
    s.tick(t0() + chrono::Duration::seconds(2));
    s
}

#[test]
fn the_header_shows_the_standbys_lag() {
    for size in SIZES {
        let s = connected(size, ReplicaStatus::InUse { lag_ms: 300, paused: false });
        let terminal = s.draw();
        insta::assert_snapshot!(format!("standby_lag_{}x{}", size.0, size.1), terminal.backend());
        let text = screen_text(&terminal);
        if size.0 >= 120 {
            assert_has(&text, &["standby lag 0.3 s"]);
        }
        assert_lacks(&text, &["reads on primary"]);
    }
}

#[test]
fn the_header_says_when_reads_went_back_to_the_primary() {
    let lagging = ReplicaStatus::Fallback(Fallback::Lagging { lag_ms: Some(7200), max_ms: 5000 });
    for size in SIZES {
        let terminal = connected(size, lagging.clone()).draw();
        insta::assert_snapshot!(format!("standby_lagging_{}x{}", size.0, size.1), terminal.backend());
        // Early in the line: seen at 80 columns too.
        assert_has(&screen_text(&terminal), &["STANDBY LAG 7.2 s > 5.0 s: reads on primary"]);
    }
    let unreachable = ReplicaStatus::Fallback(Fallback::Unreachable(
        "error communicating with database: No such file or directory (os error 2)".into(),
    ));
    let text = screen_text(&connected((160, 48), unreachable).draw());
    assert_has(&text, &["STANDBY UNREACHABLE: reads on primary", "standby: error communicating"]);
}

#[test]
fn a_standby_status_that_did_not_change_does_not_redraw() {
    let mut s = connected((160, 48), ReplicaStatus::InUse { lag_ms: 0, paused: false });
    assert_has(&screen_text(&s.draw()), &["standby lag 0.0 s"]);
    assert!(!s.db(DbEvent::Replica(ReplicaStatus::InUse { lag_ms: 0, paused: false })).redraw);
    assert!(s.db(DbEvent::Replica(ReplicaStatus::InUse { lag_ms: 1200, paused: true })).redraw);
    assert_has(&screen_text(&s.draw()), &["standby lag 1.2 s (replay paused)"]);
}
