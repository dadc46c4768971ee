//! The header and the timeline through a database outage (issue 9, item 5), at 80x24 and
//! 160x48: the server gone (what failed and since when, in the header; the entry
//! journalled meanwhile not copied), back (the round trip again; the entry still not
//! copied until the re-sync answers), and re-synced ("copied to db").
//!
//! Regenerate with `INSTA_UPDATE=always cargo test --test tui outage_snapshots::`.

use ratatui::style::Color;

use incident_console::console::panes::Pane;
use incident_console::console::protocol::{ConnState, DbEvent};
use incident_console::core::workflow::Level;
use incident_console::ops::incident::Copied;

use crate::support::app::{Driver, Journaling, SIZES, assert_has, assert_lacks, screen_text};
use crate::support::fixtures::{at, maintenance_off};

const NOTE: &str = "primary down, failing over to the replica";

/// Connected at 13:08 (copy confirmed), the server killed at 13:09:41, a note journalled
/// at 13:10 while it is down; the Timeline focused.
fn down(size: (u16, u16)) -> Driver {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut c = Driver::with_incident(dir, Level::Moderate, Vec::new(), size, Journaling::Auto);
    c.db(DbEvent::Target("postgres@socket run/trading".into()));
    c.db(DbEvent::Connection(ConnState::Up { latency_ms: 1 }));
    c.db(DbEvent::Maintenance(maintenance_off()));
    let opened = c.case().entries.last().map_or(0, |e| e.seq);
    c.db(DbEvent::JournalSynced(Ok(Copied { inserted: 1, through: opened as i64 })));
    c.tick(at(13, 9, 41));
    c.db(DbEvent::Connection(ConnState::Down {
        error: "cannot connect: Connection refused (os error 111)".into(),
        retry_in: 0,
        since: at(13, 9, 41),
    }));
    c.tick(at(13, 10, 0));
    c.press('i');
    c.press('n');
    c.typed(NOTE);
    c.enter();
    c.focus(Pane::Timeline);
    c
}

/// The server answers again at 13:10:30; the re-sync has not answered yet.
fn back(size: (u16, u16)) -> Driver {
    let mut c = down(size);
    c.tick(at(13, 10, 30));
    c.db(DbEvent::Connection(ConnState::Up { latency_ms: 2 }));
    c
}

/// The re-sync confirmed the database holds every entry.
fn resynced(size: (u16, u16)) -> Driver {
    let mut c = back(size);
    let last = c.case().entries.last().map_or(0, |e| e.seq);
    c.db(DbEvent::JournalSynced(Ok(Copied { inserted: 1, through: last as i64 })));
    c
}

/// Draws, snapshots as `{name}_{w}x{h}`, and returns the text.
fn snap(c: &Driver, name: &str) -> String {
    let size = c.app.size;
    let terminal = c.draw();
    insta::assert_snapshot!(format!("{name}_{}x{}", size.0, size.1), terminal.backend());
    screen_text(&terminal)
}

/// The background of the first cell showing `needle` on the header's second row.
fn background_of(c: &Driver, needle: &str) -> Option<Color> {
    let terminal = c.draw();
    let buf = terminal.backend().buffer();
    let row: Vec<&str> = (0..buf.area.width).map(|x| buf[(x, 1)].symbol()).collect();
    let x = (0..row.len()).find(|&x| row[x..].concat().starts_with(needle))?;
    Some(buf[(x as u16, 1)].bg)
}

#[test]
fn the_server_down_and_an_entry_not_copied() {
    for size in SIZES {
        let c = down(size);
        let text = snap(&c, "outage_down");
        assert_has(&text, &["DB UNREACHABLE since 13:09", "1 not copied (db down)", NOTE]);
        assert_lacks(&text, &["copied to db", " ms "]);
        if size.0 >= 120 {
            assert_has(
                &text,
                &[
                    "DB UNREACHABLE since 13:09:41 · retrying",
                    "postgres@socket run/trading: cannot connect: Connection refused",
                ],
            );
        }
        assert_eq!(background_of(&c, "DB UNREACHABLE"), Some(Color::Red));
    }
}

#[test]
fn the_server_back_and_the_entry_not_copied_yet() {
    for size in SIZES {
        let c = back(size);
        let text = snap(&c, "outage_back_not_copied");
        assert_has(&text, &["DB postgres@socket run/trading · ≤2 ms", "1 not copied yet", NOTE]);
        assert_lacks(&text, &["UNREACHABLE", "copied to db"]);
    }
}

#[test]
fn the_server_back_and_the_journal_copied() {
    for size in SIZES {
        let c = resynced(size);
        let text = snap(&c, "outage_copied");
        assert_has(&text, &["DB postgres@socket run/trading · ≤2 ms", "copied to db", NOTE]);
        assert_lacks(&text, &["UNREACHABLE", "not copied"]);
    }
}
