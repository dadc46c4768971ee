//! What another process does to the incident's journal while the console runs, attacked:
//! corrupt, cut-off, forged, repeated or replaced lines, a lock held for long, escapes in
//! a note. Whatever is on disk, nothing that does not chain on from what the console has is
//! folded into the incident, the person is told once the journal cannot be read, the look
//! never stalls the loop, and what the console writes itself stays one chain.

use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use incident_console::console::app::Action;
use incident_console::console::incident::JournalEvent;
use incident_console::console::panes::rollback::Stage;
use incident_console::console::protocol::{Command, DbEvent};
use incident_console::core::journal::Event;
use incident_console::core::workflow::Level;
use incident_console::core::workflow::checklist::Checklist;
use incident_console::core::workflow::incident::Step;
use incident_console::store::incidents::IncidentStore;
use incident_console::store::journal::{Journal, Verification};

use crate::support::app::{Driver, Journaling};
use crate::support::fixtures::{INCIDENT_ID, OPERATOR, at, precheck};

/// Level 2, on the incident screen, the journal performed by the test.
fn incident() -> Driver {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut c = Driver::with_incident(dir, Level::Moderate, Vec::new(), (160, 48), Journaling::ByTest);
    c.tick(at(13, 10, 0));
    let e = c.press('i');
    assert!(e.journal.is_empty());
    c
}

fn journal_path(c: &Driver) -> PathBuf {
    c.case().journal_path.clone()
}

/// Appends raw bytes to the journal, as a writer that does not go through `Journal` would.
fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).expect("the journal opens");
    f.write_all(bytes).expect("the bytes are written");
}

/// The journal's lines, each with its newline.
fn lines(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).expect("the journal reads");
    bytes.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// A journal elsewhere with `n` genuine entries (each line valid on its own, chained to
/// its own genesis, not to the console's).
fn stranger(n: u64) -> (tempfile::TempDir, Journal) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let j = Journal::open(dir.path().join("journal.jsonl")).expect("a journal");
    for i in 1..=n {
        j.append("mallory", &Event::from_parts("note", json!({ "text": format!("forged {i}") })), at(13, 9, 0))
            .expect("appended");
    }
    (dir, j)
}

/// Looks, and asserts that nothing was folded and that the footer says the journal on
/// disk cannot be read as it is.
fn look_refuses(c: &mut Driver, why: &str) {
    let before = c.entries();
    let state = format!("{:?}", c.case().state);
    c.look_at_journal();
    assert_eq!(c.entries(), before, "{why}: nothing is folded");
    assert_eq!(format!("{:?}", c.case().state), state, "{why}: the incident's state is as it was");
    let (text, error) = c.message();
    assert!(error && text.contains("journal"), "{why}: the person is told: {text:?}");
    assert!(!text.contains('\u{1b}'), "{why}: the footer is printable: {text:?}");
    assert!(!c.screen().contains("forged"), "{why}: nothing forged is drawn");
}

#[test]
fn a_line_that_does_not_parse_is_not_folded_and_is_said() {
    let mut c = incident();
    append_raw(&journal_path(&c), b"{not json \x1b[2J\n");
    look_refuses(&mut c, "not JSON");
}

#[test]
fn a_line_cut_off_mid_write_is_not_folded_and_is_said() {
    let mut c = incident();
    let (_d, other) = stranger(1);
    let line = &lines(other.path())[0];
    append_raw(&journal_path(&c), &line[..line.len() / 2]);
    look_refuses(&mut c, "cut off");
}

#[test]
fn a_line_whose_hash_does_not_match_is_not_folded() {
    let mut c = incident();
    let path = journal_path(&c);
    // This console's own next line, then altered: its seq and prev follow, its hash not.
    let n = c.entries() as u64;
    let (_d, other) = stranger(0);
    std::fs::copy(&path, other.path()).expect("copied");
    other.append(OPERATOR, &Event::from_parts("note", json!({ "text": "genuine" })), at(13, 9, 0)).expect("appended");
    let line = lines(other.path()).pop().expect("a line");
    let forged = String::from_utf8(line).expect("UTF-8").replace("genuine", "forged!");
    assert!(forged.contains(&format!("\"seq\":{}", n + 1)));
    append_raw(&path, forged.as_bytes());
    look_refuses(&mut c, "hash mismatch");
}

#[test]
fn a_line_that_does_not_chain_on_is_not_folded() {
    let mut c = incident();
    // A genuine line of another journal, with the next seq: its own hash holds, its prev
    // is not this journal's last hash (a fork).
    let n = c.entries() as u64;
    let (_d, other) = stranger(n + 1);
    let line = lines(other.path()).pop().expect("a line");
    append_raw(&journal_path(&c), &line);
    look_refuses(&mut c, "fork");
}

#[test]
fn a_repeated_seq_is_said_not_skipped_silently() {
    let mut c = incident();
    let path = journal_path(&c);
    let last = lines(&path).pop().expect("a line");
    append_raw(&path, &last);
    look_refuses(&mut c, "repeated line");
}

#[test]
fn a_journal_replaced_by_another_is_not_folded() {
    let mut c = incident();
    let path = journal_path(&c);
    // A valid chain of its own, longer than this one, renamed over the file.
    let n = c.entries() as u64;
    let (_d, other) = stranger(n + 2);
    let tmp = path.with_extension("tmp");
    std::fs::copy(other.path(), &tmp).expect("copied");
    std::fs::rename(&tmp, &path).expect("renamed over");
    look_refuses(&mut c, "replaced");
}

#[test]
fn a_truncated_journal_is_said() {
    let mut c = incident();
    let path = journal_path(&c);
    let mut ls = lines(&path);
    ls.pop();
    std::fs::write(&path, ls.concat()).expect("truncated");
    look_refuses(&mut c, "truncated");
}

#[test]
fn a_broken_journal_is_said_once_not_every_second() {
    let mut c = incident();
    append_raw(&journal_path(&c), b"{not json\n");
    c.look_at_journal();
    assert!(c.message().1);
    c.app.message = None;
    assert!(!c.look_at_journal(), "the same broken file is not said again");
    assert!(c.app.message.is_none());
}

#[test]
fn a_lock_held_long_by_another_writer_does_not_stall_the_look() {
    let mut c = incident();
    let path = journal_path(&c);
    let store = IncidentStore::new(Path::new(c.root()).join("incidents"));
    let mut other = store.open(INCIDENT_ID, Checklist::shipped()).expect("the incident opens");
    other.act(Step::Note { text: "CLI: noted".into() }, "bob", at(13, 9, 10)).expect("appended");
    let holder = std::fs::File::open(&path).expect("the journal opens");
    // SAFETY: flock takes a descriptor number; `holder` keeps it open.
    assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    let started = Instant::now();
    assert!(!c.look_at_journal(), "nothing can be read under the other's lock");
    assert!(started.elapsed() < Duration::from_millis(500), "the look gave up at once: {:?}", started.elapsed());
    assert!(c.app.message.as_ref().is_none_or(|m| !m.error), "a lock held is not a broken journal");
    drop(holder);
    assert!(c.look_at_journal(), "the next look, the lock released, folds the entry in");
    assert!(c.screen().contains("CLI: noted"));
}

#[test]
fn escapes_in_another_process_note_are_not_drawn() {
    let mut c = incident();
    let store = IncidentStore::new(Path::new(c.root()).join("incidents"));
    let other = store.open(INCIDENT_ID, Checklist::shipped()).expect("the incident opens");
    let text = "bridge \u{1b}]52;c;ZXZpbA==\u{7}\u{1b}[2J\u{9b}31m\r\u{202e}done";
    other
        .journal
        .append("bob\u{1b}[31m", &Event::from_parts("note", json!({ "text": text })), at(13, 9, 10))
        .expect("appended");
    assert!(c.look_at_journal());
    let screen = c.screen();
    assert!(screen.contains("bridge"), "{screen}");
    for bad in ['\u{1b}', '\u{7}', '\u{9b}', '\r', '\u{202e}'] {
        assert!(!screen.contains(bad), "{bad:?} reached the terminal:\n{screen}");
    }
}

#[test]
fn the_console_chains_after_another_process_one_chain() {
    let mut c = incident();
    let store = IncidentStore::new(Path::new(c.root()).join("incidents"));
    let mut other = store.open(INCIDENT_ID, Checklist::shipped()).expect("the incident opens");
    other.act(Step::Note { text: "CLI: first".into() }, "bob", at(13, 9, 10)).expect("appended");
    assert!(c.look_at_journal());
    other.act(Step::Note { text: "CLI: second, not yet looked at".into() }, "bob", at(13, 9, 20)).expect("appended");
    c.press('n');
    c.typed("console");
    let e = c.enter();
    c.append(e.journal);
    let on_disk = Journal::open(journal_path(&c)).expect("opens").entries().expect("reads");
    let seqs: Vec<u64> = c.case().entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=on_disk.len() as u64).collect::<Vec<_>>(), "every entry once, in order");
    assert_eq!(c.case().entries, on_disk, "the app holds what the file holds");
    let v = Journal::open(journal_path(&c)).expect("opens").verify().expect("verifies");
    assert!(matches!(v, Verification::Intact { .. }), "{v:?}");
}

#[test]
fn the_console_does_not_chain_onto_a_forked_line() {
    let mut c = incident();
    let n = c.entries() as u64;
    let (_d, other) = stranger(n + 1);
    let line = lines(other.path()).pop().expect("a line");
    let path = journal_path(&c);
    append_raw(&path, &line);
    let before = std::fs::read(&path).expect("reads");
    c.press('n');
    c.typed("console");
    let e = c.enter();
    let events = c.perform(e.journal);
    assert!(events.iter().all(|ev| matches!(ev, JournalEvent::Refused(_))), "{events:?}");
    assert_eq!(c.entries() as u64, n, "nothing folded");
    assert!(!c.screen().contains("forged"));
    assert_eq!(std::fs::read(&path).expect("reads"), before, "nothing appended after the fork");
    let (text, error) = c.message();
    assert!(error && text.contains("journal"), "{text}");
}

#[test]
fn a_broken_journal_seen_by_the_look_does_not_disturb_a_rollback_waiting_for_its_intent() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut c = Driver::with_incident(dir, Level::Moderate, Vec::new(), (160, 48), Journaling::ByTest);
    c.db(DbEvent::Target("sandbox".into()));
    c.connect_with_orders(5);
    c.tick(at(13, 10, 0));
    let o = c.current();
    c.press('r');
    let (id, _, _) = c.last_precheck();
    let e = c.db(DbEvent::Precheck { id, order: o.id, user: o.user_id, result: Ok(precheck(&o, true)) });
    c.append(e.journal);
    c.typed("duplicate execution from deploy 4711");
    c.enter();
    let e = c.enter();
    let [intent] = e.journal.as_slice() else { panic!("the intent alone: {:?}", e.journal) };
    assert!(matches!(c.stage(), Stage::Journaling { .. }), "{:?}", c.stage());
    // The look's answer arrives first: it says, and the flow keeps waiting.
    c.act(Action::Journal(JournalEvent::Unreadable("The journal on disk cannot be read: test".into())));
    assert!(matches!(c.stage(), Stage::Journaling { .. }), "not failed by the look: {:?}", c.stage());
    let now = c.app.now;
    let event = c.session().perform(intent.clone(), now);
    let e = c.act(Action::Journal(event));
    assert!(e.commands.iter().any(|cmd| matches!(cmd, Command::Rollback { .. })), "released: {:?}", e.commands);
}
