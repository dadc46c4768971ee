//! The console's side of the incident journal: does what the app asks of it (append a
//! step, copy a message, write the report) and says what happened. The only part of the
//! console that writes the journal and the incident's files.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::console::incident::{JournalEvent, JournalRequest};
use crate::core::error::{Error, Result};
use crate::core::workflow::incident::{Observation, Step};
use crate::store::incidents::OpenIncident;
use crate::store::journal::Entry;

pub use crate::console::clipboard::ClipboardSink;

/// The open incident and who is at the keyboard.
pub struct Session {
    incident: OpenIncident,
    operator: String,
    in_tmux: bool,
    clipboard: ClipboardSink,
    /// The last entry handed to the app.
    delivered: u64,
    /// The hash of the last entry handed to the app, when known: what others' entries
    /// must chain on from.
    delivered_hash: Option<String>,
    /// The journal file's length and time when last read for others' entries.
    read_at: Option<(u64, std::time::SystemTime)>,
    /// The same, when last said to be unreadable (said once, not every second).
    said_at: Option<(u64, std::time::SystemTime)>,
}

/// How long a look for others' entries waits for a writer's lock: an append holds it for
/// milliseconds, and the loop must not stall behind a stuck one (the next look retries).
const LOOK_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

impl Session {
    /// A session on an incident whose entries up to `delivered` the app already has.
    pub fn new(incident: OpenIncident, operator: String, delivered: u64, clipboard: ClipboardSink) -> Self {
        // The last line read now is what the app was handed (it read the journal just
        // before): later reads must still hold it.
        let delivered_hash = incident.journal.last().ok().flatten().filter(|e| e.seq == delivered).map(|e| e.hash);
        Session {
            incident,
            operator,
            in_tmux: crate::console::clipboard::in_tmux(),
            clipboard,
            delivered,
            delivered_hash,
            read_at: None,
            said_at: None,
        }
    }

    /// Whether copies go to tmux's paste buffer (the default comes from `$TMUX`): tests
    /// that are not about tmux set it off, whatever terminal they run in.
    pub fn with_tmux(mut self, in_tmux: bool) -> Self {
        self.in_tmux = in_tmux;
        self
    }

    /// Puts `text` where the person pastes from and says where it went.
    fn copy(&mut self, text: &str) -> String {
        crate::console::clipboard::put(text, self.in_tmux, &mut self.clipboard)
    }

    /// The entries another process appended (a CLI rollback, a second console) since the
    /// app was last handed some, as an answer the app folds in; `None` when the file did
    /// not change or its lock is held now (the next look retries). Never a refusal (nothing
    /// was asked): a journal that does not chain on from what the app has (a corrupt, cut
    /// off or forged line, the file truncated or replaced) is folded in not at all and said
    /// once, as [`JournalEvent::Unreadable`].
    pub fn others_appended(&mut self) -> Option<JournalEvent> {
        let stamp = self.incident.journal.stamp();
        if stamp.is_some() && stamp == self.read_at {
            return None;
        }
        let entries = match self.incident.journal.clone().with_lock_wait(LOOK_LOCK_WAIT).checked_entries() {
            Ok(entries) => entries,
            Err(Error::File { action: "lock", .. }) => return None,
            Err(e) => return self.unreadable(stamp, &e.to_string()),
        };
        let ours = self.delivered.checked_sub(1).and_then(|i| usize::try_from(i).ok()).and_then(|i| entries.get(i));
        let follows = match (self.delivered, ours, &self.delivered_hash) {
            (0, _, _) => true,
            (_, Some(e), Some(hash)) => e.seq == self.delivered && &e.hash == hash,
            (_, Some(e), None) => e.seq == self.delivered,
            (_, None, _) => false,
        };
        if !follows {
            let why = format!(
                "the journal on disk no longer holds the {} entries shown here: it was truncated or replaced",
                self.delivered
            );
            return self.unreadable(stamp, &why);
        }
        self.read_at = stamp;
        let entries: Vec<Entry> = entries.into_iter().filter(|e| e.seq > self.delivered).collect();
        self.note_delivered(&entries);
        (!entries.is_empty()).then_some(JournalEvent::Appended { entries, note: None })
    }

    /// Says once per change of the file that it cannot be read as the app has it.
    fn unreadable(&mut self, stamp: Option<(u64, std::time::SystemTime)>, why: &str) -> Option<JournalEvent> {
        if stamp.is_some() && stamp == self.said_at {
            return None;
        }
        self.said_at = stamp;
        let text =
            format!("The journal on disk cannot be read: {why}. Nothing of it was shown; run `incident verify`.");
        Some(JournalEvent::Unreadable(crate::core::sanitize::line(&text).into_owned()))
    }

    /// Remembers the last of `entries` as what the app has.
    fn note_delivered(&mut self, entries: &[Entry]) {
        if let Some(last) = entries.last() {
            self.delivered = last.seq;
            self.delivered_hash = Some(last.hash.clone());
        }
    }

    /// Does one request; never fails, a failure is the event's text.
    pub fn perform(&mut self, request: JournalRequest, now: DateTime<Utc>) -> JournalEvent {
        match self.try_perform(request, now) {
            Ok((entries, note)) => JournalEvent::Appended { entries, note },
            Err(e) => JournalEvent::Refused(crate::core::sanitize::line(&e.to_string()).into_owned()),
        }
    }

    fn try_perform(&mut self, request: JournalRequest, now: DateTime<Utc>) -> Result<(Vec<Entry>, Option<String>)> {
        // Everything past what the app has, including lines another process appended.
        let (entries, note) = match request {
            JournalRequest::Step(step) => (
                self.incident.act_after(step, &self.operator, now, self.delivered, self.delivered_hash.as_deref())?,
                None,
            ),
            JournalRequest::Copy { template, audience, text } => {
                // The file first: it is the record of what went out, even if the terminal
                // ignores OSC 52.
                let path = crate::store::files::export(&self.incident.messages_dir(), &template, &text, now)?;
                let via = self.copy(&text);
                let path = path.display().to_string();
                let seen = Observation::MessageCopied { template: template.clone(), audience, path: path.clone() };
                let entries = self.incident.act_after(
                    Step::Observe(seen),
                    &self.operator,
                    now,
                    self.delivered,
                    self.delivered_hash.as_deref(),
                )?;
                let short = Path::new(&path)
                    .strip_prefix(self.incident.path())
                    .map_or(path.clone(), |p| p.display().to_string());
                (entries, Some(format!("Copied {template}: {via} + {short}")))
            }
            // Nothing journaled: an id or a detail copied is not a message sent.
            JournalRequest::Clipboard { what, text } => {
                let via = self.copy(&text);
                (Vec::new(), Some(format!("Copied {what}: {via}")))
            }
            JournalRequest::Bundle { database, part } => {
                let config = crate::store::config::ConsoleConfig::load().unwrap_or_default();
                let key =
                    config.bundle_signing_key.as_deref().map(crate::store::bundle::signing_key_file).transpose()?;
                let config_text = crate::store::config::config_text();
                let w = crate::ops::bundle::write_files(
                    &mut self.incident,
                    part,
                    &database,
                    config_text,
                    None,
                    key.as_ref(),
                    &self.operator,
                    now,
                )?;
                let entries =
                    self.incident.journal.checked_entries()?.into_iter().filter(|e| e.seq > self.delivered).collect();
                let tail = match (&w.signed_by, &w.database_missing) {
                    (_, Some(why)) => format!(", without the database's part ({why})"),
                    (Some(_), None) => ", signed".to_string(),
                    (None, None) => String::new(),
                };
                (entries, Some(format!("Evidence bundle written to {} ({} files{tail})", w.path.display(), w.files)))
            }
            JournalRequest::Report => {
                let path = crate::ops::incident::write_report(&mut self.incident, None, &self.operator, now)?;
                let entries =
                    self.incident.journal.checked_entries()?.into_iter().filter(|e| e.seq > self.delivered).collect();
                (entries, Some(format!("Report written to {}", path.display())))
            }
        };
        self.note_delivered(&entries);
        Ok((entries, note))
    }
}
