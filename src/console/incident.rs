//! The incident behind the incident screen: its journal folded into state, the checklist,
//! team, timeline and messages it shows, and the dialog open over it. Changes to the
//! incident are never made here: they are asked of the loop as journal requests, and the
//! entries it appends come back and are folded in. What each pane draws and answers is in
//! its module under `panes`; the dialogs are under `dialogs`.

use chrono::{DateTime, Utc};

use crate::console::dialogs::Dialog;
use crate::console::panes::messages::MessageSlot;
use crate::core::comms::TemplateStore;
use crate::core::contacts::Contact;
use crate::core::journal::event::{self, Event};
use crate::core::workflow::checklist::Checklist;
use crate::core::workflow::incident::{Incident, Observation, Step};
use crate::store::journal::Entry;

/// What the loop must do to the incident's journal.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalRequest {
    /// Decide and append a step.
    Step(Step),
    /// Write the message to the incident's messages directory, put it on the clipboard
    /// (OSC 52) and record that it was copied.
    Copy {
        /// The template's name.
        template: String,
        /// internal or customer.
        audience: String,
        /// The text as copied.
        text: String,
    },
    /// Write the post-incident report and record it.
    Report,
    /// Write the evidence bundle (with the database's part, or why it is missing) and
    /// record it; `database` is where the console is connected, as shown.
    Bundle { database: String, part: Result<crate::ops::bundle::DatabasePart, String> },
    /// Put text on the clipboard (an id, a detail), journaling nothing; `what` names it.
    Clipboard {
        /// What it is, for the footer: "order id 0b5e001c…".
        what: String,
        /// The text.
        text: String,
    },
}

/// What the loop did with a journal request.
#[derive(Debug, Clone, PartialEq)]
pub enum JournalEvent {
    /// Entries were appended; `note` is said in the footer.
    Appended {
        /// The new entries, in order.
        entries: Vec<Entry>,
        /// What to tell the person.
        note: Option<String>,
    },
    /// Nothing was appended: the workflow refused the step or the file could not be written.
    Refused(String),
    /// Nothing asked, nothing folded: the journal on disk, looked at for others' entries,
    /// does not chain on from what the app has (said in the footer; never a rollback's
    /// refusal).
    Unreadable(String),
}

/// What the database's copy of the journal is known to hold: only what a copy confirmed,
/// so that an entry journalled while the database is away is never called copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbCopy {
    /// The database holds every entry up to this `seq` (0: none confirmed).
    pub through: u64,
    /// Why the last copy failed, until one succeeds.
    pub failed: Option<String>,
}

impl DbCopy {
    /// Takes a copy's answer in. Answers may arrive out of order (a copy started before an
    /// outage can end after the next one): what was confirmed stays confirmed.
    pub(crate) fn take(&mut self, answer: Result<crate::ops::incident::Copied, String>) {
        match answer {
            Ok(c) => {
                self.through = self.through.max(u64::try_from(c.through).unwrap_or(0));
                self.failed = None;
            }
            Err(e) => self.failed = Some(e),
        }
    }
}

/// The incident, what its panes show and the dialog open over it.
#[derive(Debug, Clone)]
pub struct IncidentPanel {
    /// The incident as the journal says.
    pub state: Incident,
    /// The checklist in effect.
    pub checklist: Checklist,
    /// The journal's entries, oldest first.
    pub entries: Vec<Entry>,
    /// Names, phones and e-mails from the configuration.
    pub contacts: Vec<Contact>,
    /// The journal file.
    pub journal_path: std::path::PathBuf,
    /// What the database's copy of the journal is known to hold.
    pub db_copy: DbCopy,
    /// Checklist cursor (index into `checklist_rows`).
    pub checklist_cursor: usize,
    /// Team cursor (index into the roles, then the escalation contacts).
    pub team_cursor: usize,
    /// Timeline: entries skipped from the newest.
    pub timeline_offset: usize,
    /// Timeline filter (lowercase).
    pub timeline_filter: String,
    /// Templates.
    pub templates: TemplateStore,
    /// The Messages pane, one slot per template.
    pub messages: Vec<MessageSlot>,
    /// Messages cursor.
    pub message_cursor: usize,
    /// Lines of the selected message's preview scrolled off the top (page keys).
    pub preview_scroll: u16,
    /// Internal identifiers the customer messages must not contain.
    pub internal: Vec<String>,
    /// The open dialog.
    pub dialog: Option<Dialog>,
    /// A rollback ended at this time: record the first audit that ran after it.
    pub audit_wanted: Option<DateTime<Utc>>,
    /// The audit result last recorded.
    pub audit_recorded: Option<(usize, DateTime<Utc>)>,
    /// The rollback whose intent is in the journal and whose outcome is not yet: it runs.
    pub awaiting_outcome: Option<uuid::Uuid>,
    /// The rollback whose outcome could not be written after it ran: the journal shows its
    /// intent alone, and the footer keeps saying so.
    pub outcome_lost: Option<uuid::Uuid>,
}

impl IncidentPanel {
    /// The panel of an incident read from its journal.
    pub fn new(
        entries: Vec<Entry>,
        checklist: Checklist,
        templates: TemplateStore,
        contacts: Vec<Contact>,
        journal_path: std::path::PathBuf,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        let state = crate::store::incidents::fold(&entries).map_err(|e| e.to_string())?;
        let mut p = IncidentPanel {
            state,
            checklist,
            entries,
            contacts,
            journal_path,
            db_copy: DbCopy::default(),
            checklist_cursor: 0,
            team_cursor: 0,
            timeline_offset: 0,
            timeline_filter: String::new(),
            templates,
            messages: Vec::new(),
            message_cursor: 0,
            preview_scroll: 0,
            internal: Vec::new(),
            dialog: None,
            audit_wanted: None,
            audit_recorded: None,
            awaiting_outcome: None,
            outcome_lost: None,
        };
        p.audit_recorded = p.state.records_of::<event::Audit>().last().map(|(r, a)| (a.violations as usize, r.at));
        p.refresh_messages(now);
        Ok(p)
    }

    /// Folds newly appended entries in.
    pub(crate) fn append(&mut self, entries: Vec<Entry>, now: DateTime<Utc>) {
        for e in entries {
            self.state.apply(&e.event, e.at, &e.operator);
            if let Event::MessageCopied(m) = &e.event
                && let Some(slot) = self.messages.iter_mut().find(|s| s.name == m.template)
            {
                slot.copied = Some((e.at, m.path.clone()));
            }
            self.entries.push(e);
        }
        self.refresh_messages(now);
        let rows = self.checklist_rows().len();
        self.checklist_cursor = self.checklist_cursor.min(rows.saturating_sub(1));
    }

    /// Entries of the journal the database is not confirmed to hold.
    pub fn not_copied(&self) -> usize {
        self.entries.iter().filter(|e| e.seq > self.db_copy.through).count()
    }

    /// When the next internal update is due (none at Level 1: on change).
    pub(crate) fn next_update_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.state.next_update_due(now)
    }

    /// When the next customer notice is due.
    pub(crate) fn customer_notice_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.state.customer_notice_due(now)
    }
}

/// Whether an observation is worth recording for the dashboard's audit result.
pub(crate) fn audit_observation(
    panel: &mut IncidentPanel,
    violations: usize,
    at: DateTime<Utc>,
) -> Option<Observation> {
    let changed = panel.audit_recorded.is_none_or(|(v, _)| v != violations);
    let fresh = panel.audit_recorded.is_none_or(|(_, t)| at > t);
    // Only an audit that started after the rollback proves it.
    let proves = panel.audit_wanted.is_some_and(|t| at >= t);
    if fresh && (proves || changed) {
        if proves {
            panel.audit_wanted = None;
        }
        panel.audit_recorded = Some((violations, at));
        return Some(Observation::Audit { violations: violations as u64 });
    }
    None
}
