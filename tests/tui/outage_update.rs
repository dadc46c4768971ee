//! A database outage as `App::update` sees it (issue 9, item 5): the worker says the
//! database is down (what failed, since when) and up again; the journal's database copy
//! is called copied only when a copy confirmed the database holds every entry. A real
//! journal, no database, a fixed clock.

use incident_console::console::app::Screen;
use incident_console::console::protocol::{Command, ConnState, DbEvent};
use incident_console::core::workflow::Level;
use incident_console::ops::incident::Copied;

use crate::support::app::{Driver, Journaling, assert_has, assert_lacks};
use crate::support::fixtures::at;

/// An incident opened at 13:08, the console connected (2 ms) and showing the incident
/// screen at 13:09; the journal performed as the loop performs it.
fn connected() -> Driver {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut c = Driver::with_incident(dir, Level::Moderate, Vec::new(), (160, 48), Journaling::Auto);
    c.db(DbEvent::Target("postgres@socket run/trading".into()));
    c.db(DbEvent::Connection(ConnState::Up { latency_ms: 2 }));
    c.tick(at(13, 9, 0));
    c.press('i');
    assert_eq!(c.app.screen, Screen::Incident);
    c
}

fn down(since: chrono::DateTime<chrono::Utc>) -> DbEvent {
    DbEvent::Connection(ConnState::Down {
        error: "cannot connect: Connection refused (os error 111)".into(),
        retry_in: 0,
        since,
    })
}

fn synced(through: u64) -> DbEvent {
    DbEvent::JournalSynced(Ok(Copied { inserted: 1, through: through as i64 }))
}

/// The highest `seq` in the journal as the console holds it.
fn last_seq(c: &Driver) -> u64 {
    c.case().entries.last().map_or(0, |e| e.seq)
}

/// A note typed into the console (`n`, the text, Enter): the loop appends it and asks the
/// worker to copy the journal.
fn note(c: &mut Driver, text: &str) -> Vec<Command> {
    c.press('n');
    c.typed(text);
    c.enter().commands
}

#[test]
fn down_up_and_the_journal_copy_follow_the_worker() {
    let mut c = connected();
    let opened = last_seq(&c);
    c.db(synced(opened));
    assert_eq!(c.case().not_copied(), 0);
    assert_has(&c.screen(), &["copied to db", "DB postgres@socket run/trading · ≤2 ms"]);

    // The probe finds the server gone: the header says so, with what failed and since when.
    let e = c.db(down(at(13, 9, 41)));
    assert!(e.redraw && e.commands.is_empty(), "{e:?}");
    assert!(matches!(c.app.conn, ConnState::Down { since, .. } if since == at(13, 9, 41)));
    let s = c.screen();
    assert_has(&s, &["DB UNREACHABLE since 13:09:41 · retrying", "Connection refused"]);
    assert_lacks(&s, &["≤2 ms"]);
    // Nothing new yet: the entries the database holds are still copied.
    assert_has(&s, &["copied to db"]);

    // A note while the database is down: journalled, asked to be copied, not called copied.
    let sent = note(&mut c, "working from the journal");
    assert!(sent.iter().any(|cmd| matches!(cmd, Command::SyncJournal { .. })), "{sent:?}");
    assert_eq!(c.case().not_copied(), 1);
    let s = c.screen();
    assert_has(&s, &["1 not copied (db down)", "working from the journal"]);
    assert_lacks(&s, &["copied to db"]);

    // The same outage said again (the next probe) changes nothing.
    assert!(!c.db(down(at(13, 9, 41))).redraw);
    // A copy that failed during the outage: still down, still not copied.
    c.db(DbEvent::JournalSynced(Err("the database is not reachable".into())));
    assert_has(&c.screen(), &["1 not copied (db down)"]);

    // Up again: latency in the header; the entry is not copied until the re-sync says so.
    let e = c.db(DbEvent::Connection(ConnState::Up { latency_ms: 1 }));
    assert!(e.redraw, "{e:?}");
    let s = c.screen();
    assert_has(&s, &["DB postgres@socket run/trading · <1 ms", "1 not copied (copy failed)"]);
    assert_lacks(&s, &["UNREACHABLE"]);
    // An older copy's answer arriving late does not count the new entry.
    c.db(synced(opened));
    assert_eq!(c.case().not_copied(), 1);
    assert_has(&c.screen(), &["1 not copied yet"]);
    // The re-sync after the reconnect holds it.
    let e = c.db(synced(last_seq(&c)));
    assert!(e.redraw);
    assert_eq!(c.case().not_copied(), 0);
    assert_eq!(c.case().db_copy.failed, None);
    assert_has(&c.screen(), &["copied to db"]);
    // And a stale answer afterwards takes nothing back.
    assert!(!c.db(synced(opened)).redraw);
    assert_has(&c.screen(), &["copied to db"]);
}

#[test]
fn a_new_outage_starts_a_new_since() {
    let mut c = connected();
    c.db(down(at(13, 9, 41)));
    c.db(DbEvent::Connection(ConnState::Up { latency_ms: 1 }));
    c.db(down(at(13, 20, 5)));
    assert_has(&c.screen(), &["DB UNREACHABLE since 13:20:05"]);
    // The worker's own attempt says when it tries again.
    c.db(DbEvent::Connection(ConnState::Down {
        error: "database unreachable: Connection refused (os error 111)".into(),
        retry_in: 4,
        since: at(13, 20, 5),
    }));
    assert_has(&c.screen(), &["DB UNREACHABLE since 13:20:05 · retry 4s"]);
}

#[test]
fn entries_never_copied_are_not_called_copied() {
    let mut c = connected();
    // Connected, the first copy not answered yet.
    let n = c.case().entries.len();
    assert_has(&c.screen(), &[&format!("{n} not copied yet")]);
    // The copy refused (the journal disagrees with its copy): said as such, not "db down".
    c.db(DbEvent::JournalSynced(Err("the journal of X disagrees with its database copy".into())));
    assert_has(&c.screen(), &[&format!("{n} not copied (copy failed)")]);
    assert_lacks(&c.screen(), &["copied to db"]);
}
