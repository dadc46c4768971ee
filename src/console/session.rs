//! The console's side of the incident journal: does what the app asks of it (append a
//! step, copy a message, write the report) and says what happened. The only part of the
//! console that writes the journal and the incident's files.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::console::incident::{JournalEvent, JournalRequest};
use crate::core::comms;
use crate::core::error::Result;
use crate::core::workflow::incident::{Observation, Step};
use crate::store::incidents::OpenIncident;
use crate::store::journal::Entry;

/// Where a copied message's terminal sequence goes (the terminal, or a test's buffer).
pub type ClipboardSink = Box<dyn FnMut(&str) + Send>;

/// The open incident and who is at the keyboard.
pub struct Session {
    incident: OpenIncident,
    operator: String,
    in_tmux: bool,
    clipboard: ClipboardSink,
    /// The last entry handed to the app.
    delivered: u64,
}

impl Session {
    /// A session on an incident whose entries up to `delivered` the app already has.
    pub fn new(incident: OpenIncident, operator: String, delivered: u64, clipboard: ClipboardSink) -> Self {
        Session {
            incident,
            operator,
            in_tmux: std::env::var_os("TMUX").is_some_and(|v| !v.is_empty()),
            clipboard,
            delivered,
        }
    }

    /// Whether copies go to tmux's paste buffer (the default comes from `$TMUX`): tests
    /// that are not about tmux set it off, whatever terminal they run in.
    pub fn with_tmux(mut self, in_tmux: bool) -> Self {
        self.in_tmux = in_tmux;
        self
    }

    /// Puts `text` where the person pastes from and says where it went. Inside tmux,
    /// tmux's paste buffer (and from it the outer terminal's clipboard), which tmux confirms;
    /// when that fails, OSC 52 plain and wrapped for tmux's passthrough, which may or may
    /// not arrive. Outside tmux, OSC 52, which the terminal may or may not honour.
    fn copy(&mut self, text: &str) -> String {
        if !self.in_tmux {
            (self.clipboard)(&comms::osc52(text));
            return "clipboard (OSC 52)".into();
        }
        match crate::store::clipboard::tmux_load_buffer(text) {
            Ok(()) => "tmux paste buffer (prefix ] pastes it)".into(),
            Err(why) => {
                (self.clipboard)(&comms::osc52(text));
                (self.clipboard)(&comms::osc52_tmux(text));
                format!("OSC 52 only, tmux's buffer refused it ({why})")
            }
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
            JournalRequest::Step(step) => (self.incident.act_after(step, &self.operator, now, self.delivered)?, None),
            JournalRequest::Copy { template, audience, text } => {
                // The file first: it is the record of what went out, even if the terminal
                // ignores OSC 52.
                let path = crate::store::files::export(&self.incident.messages_dir(), &template, &text, now)?;
                let via = self.copy(&text);
                let path = path.display().to_string();
                let seen = Observation::MessageCopied { template: template.clone(), audience, path: path.clone() };
                let entries = self.incident.act_after(Step::Observe(seen), &self.operator, now, self.delivered)?;
                let short = Path::new(&path)
                    .strip_prefix(self.incident.path())
                    .map_or(path.clone(), |p| p.display().to_string());
                (entries, Some(format!("Copied {template}: {via} + {short}")))
            }
            JournalRequest::Report => {
                let path = crate::ops::incident::write_report(&mut self.incident, None, &self.operator, now)?;
                let entries = self.incident.entries()?.into_iter().filter(|e| e.seq > self.delivered).collect();
                (entries, Some(format!("Report written to {}", path.display())))
            }
        };
        if let Some(last) = entries.last() {
            self.delivered = last.seq;
        }
        Ok((entries, note))
    }
}
