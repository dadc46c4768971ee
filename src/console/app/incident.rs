//! The incident screen's state: the incident as its journal says, the checklist, team,
//! timeline and messages panes, and the dialogs that ask for a reason, a name, a level or
//! an answer. Changes to the incident are never made here: they are asked of the loop as
//! journal requests, and the entries it appends come back and are folded in.

use chrono::{DateTime, Utc};
use ratatui_textarea::TextArea;

use crate::core::comms::{self, Draft, Rendered, TemplateStore};
use crate::core::contacts::Contact;
use crate::core::journal::event::{self, Event};
use crate::core::workflow::checklist::{AutoSignal, Checklist, Item};
use crate::core::workflow::classify::Answer;
use crate::core::workflow::incident::{Incident, ItemState, Observation, Role, Step};
use crate::core::workflow::{Level, Phase};
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
}

/// What a text dialog is asking for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A note for the timeline.
    Note,
    /// Why an item is skipped.
    SkipReason(String),
    /// Why the level changes to this one.
    LevelReason(Level),
    /// Who takes a role.
    Person(Role),
    /// The value of a message field.
    Field(String),
    /// Why maintenance mode is switched on (true) or off.
    Maintenance(bool),
    /// The timeline filter.
    TimelineFilter,
}

impl Purpose {
    /// The dialog's title.
    pub fn title(&self) -> String {
        match self {
            Purpose::Note => "Note for the timeline".into(),
            Purpose::SkipReason(item) => format!("Why is \"{item}\" skipped?"),
            Purpose::LevelReason(l) => format!("Why Level {} {}?", l.number(), l.label()),
            Purpose::Person(r) => format!("Who is {}?", r.label()),
            Purpose::Field(name) => format!("Fill \"{name}\""),
            Purpose::Maintenance(true) => "Maintenance mode ON: why?".into(),
            Purpose::Maintenance(false) => "Maintenance mode OFF: why?".into(),
            Purpose::TimelineFilter => "Filter the timeline (kind, operator or text)".into(),
        }
    }

    fn required(&self) -> bool {
        !matches!(self, Purpose::TimelineFilter)
    }
}

/// A dialog over the screen; it takes every key until it closes.
#[derive(Debug, Clone)]
pub enum Dialog {
    /// One line of text.
    Text {
        /// What it is for.
        purpose: Purpose,
        /// The input.
        input: TextArea<'static>,
        /// Why Enter did not accept it.
        hint: Option<String>,
    },
    /// Which role gets the item.
    PickRole {
        /// The item.
        item: String,
        /// The role under the cursor.
        cursor: usize,
    },
    /// Which level.
    PickLevel {
        /// The level under the cursor.
        cursor: Level,
    },
    /// The classification questions, one at a time; at the end, the proposal.
    Classify {
        /// The question being asked (`QUESTIONS.len()`: the proposal is shown).
        index: usize,
        /// The answers so far.
        answers: Vec<(&'static str, Answer)>,
    },
    /// Move to the next phase?
    ConfirmPhase {
        /// The phase.
        to: Phase,
        /// Items of the current phase still open.
        open: usize,
    },
    /// The message editor.
    Editor {
        /// The template.
        template: String,
        /// The text being edited.
        input: TextArea<'static>,
    },
}

/// One template as the Messages pane shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageSlot {
    /// The template's name.
    pub name: String,
    /// Filled from the incident, or why it could not be.
    pub rendered: Result<Rendered, String>,
    /// The person's edits, when they edited it.
    pub draft: Option<Draft>,
    /// When it was last copied, and where the file went.
    pub copied: Option<(DateTime<Utc>, String)>,
}

impl MessageSlot {
    /// The text that would be copied: the edited draft, else the filled template.
    pub fn text(&self) -> Option<&str> {
        match (&self.draft, &self.rendered) {
            (Some(d), _) => Some(d.edited.as_str()),
            (None, Ok(r)) => Some(r.text.as_str()),
            (None, Err(_)) => None,
        }
    }

    /// Required fields whose placeholder is still in the text.
    pub fn unfilled(&self) -> Vec<String> {
        let Ok(r) = &self.rendered else { return Vec::new() };
        r.unfilled_in(self.text().unwrap_or(""))
    }
}

/// The incident, its panes and dialogs.
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
    /// The last copy to the database: entries copied, or why not.
    pub db_copy: Option<Result<u64, String>>,
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
            db_copy: None,
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
        };
        p.audit_recorded = p.state.records_of::<event::Audit>().last().map(|(r, a)| (a.violations as usize, r.at));
        p.refresh_messages(now);
        Ok(p)
    }

    /// Folds newly appended entries in.
    pub fn append(&mut self, entries: Vec<Entry>, now: DateTime<Utc>) {
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

    /// Fills the templates again from the incident. The selected one is filled from the
    /// whole incident and its edits are carried over; the others only for their status
    /// (title, missing fields), without the timeline, which is the costly part of a long
    /// journal. They are filled in full when selected.
    pub fn refresh_messages(&mut self, now: DateTime<Utc>) {
        let ctx = crate::core::report::context_without_timeline(&self.state, &self.checklist, &self.entries, None, now);
        self.internal = ctx.internal_values();
        let light = ctx.to_value();
        let names: Vec<String> = self.templates.list().into_iter().map(|t| t.name).collect();
        let selected =
            self.messages.get(self.message_cursor).map(|s| s.name.clone()).or_else(|| names.first().cloned());
        let full = match &selected {
            Some(name) if self.uses_timeline(name) => self.full_context(now),
            _ => light.clone(),
        };
        let mut slots = Vec::with_capacity(names.len());
        for name in names {
            let is_selected = selected.as_deref() == Some(name.as_str());
            let value = if is_selected { &full } else { &light };
            let rendered = self.templates.render(&name, value).map_err(|e| e.to_string());
            let old = self.messages.iter().find(|s| s.name == name);
            let draft = old.and_then(|s| s.draft.as_ref()).map(|d| match &rendered {
                Ok(r) if is_selected => d.refilled(&r.text),
                _ => d.clone(),
            });
            let copied = old.and_then(|s| s.copied.clone()).or_else(|| {
                self.state
                    .records_of::<event::MessageCopied>()
                    .filter(|(_, m)| m.template == name)
                    .last()
                    .map(|(r, m)| (r.at, m.path.clone()))
            });
            slots.push(MessageSlot { name, rendered, draft, copied });
        }
        self.messages = slots;
        self.message_cursor = self.message_cursor.min(self.messages.len().saturating_sub(1));
    }

    /// Whether a template lists the timeline (the post-incident report does): only then is
    /// the timeline built for it.
    fn uses_timeline(&self, name: &str) -> bool {
        self.templates.source(name).is_ok_and(|s| s.contains("timeline"))
    }

    fn full_context(&self, now: DateTime<Utc>) -> serde_json::Value {
        crate::core::report::context_of(&self.state, &self.checklist, &self.entries, None, now).to_value()
    }

    /// Fills the selected message from the whole incident (after the cursor moved to it).
    pub fn refresh_selected(&mut self, now: DateTime<Utc>) {
        let Some(name) = self.messages.get(self.message_cursor).map(|s| s.name.clone()) else { return };
        let value = if self.uses_timeline(&name) {
            self.full_context(now)
        } else {
            crate::core::report::context_without_timeline(&self.state, &self.checklist, &self.entries, None, now)
                .to_value()
        };
        let Some(slot) = self.messages.get_mut(self.message_cursor) else { return };
        slot.rendered = self.templates.render(&slot.name, &value).map_err(|e| e.to_string());
        if let (Some(d), Ok(r)) = (&slot.draft, &slot.rendered) {
            slot.draft = Some(d.refilled(&r.text));
        }
    }

    /// The checklist rows: the current phase's items, then items still open from earlier phases.
    pub fn checklist_rows(&self) -> Vec<&Item> {
        let i = &self.state;
        let mut rows: Vec<&Item> = self.checklist.for_phase(i.phase, i.level).collect();
        rows.extend(
            self.checklist
                .items()
                .iter()
                .filter(|it| it.phase < i.phase && it.applies(i.level) && i.item_state(&it.id) == &ItemState::Open),
        );
        rows
    }

    /// The item under the checklist cursor.
    pub fn current_item(&self) -> Option<&Item> {
        self.checklist_rows().get(self.checklist_cursor).copied()
    }

    /// One screenful of the timeline: `rows` entries from `offset`, newest first, filtered,
    /// and how many entries pass the filter. Only the entries shown are described when
    /// nothing is filtered.
    pub fn timeline_page(&self, offset: usize, rows: usize) -> (Vec<(&Entry, String)>, usize) {
        if self.timeline_filter.is_empty() {
            let page = self.entries.iter().rev().skip(offset).take(rows).map(|e| (e, crate::core::report::describe(e)));
            return (page.collect(), self.entries.len());
        }
        let all = self.timeline();
        let n = all.len();
        (all.into_iter().skip(offset).take(rows).collect(), n)
    }

    /// Timeline entries, newest first, filtered.
    pub fn timeline(&self) -> Vec<(&Entry, String)> {
        self.entries
            .iter()
            .rev()
            .map(|e| (e, crate::core::report::describe(e)))
            .filter(|(e, text)| crate::core::report::matches(e, text, &self.timeline_filter))
            .collect()
    }

    /// Team rows: the six roles, then the escalation contacts.
    pub fn team_rows() -> usize {
        Role::ALL.len() + crate::core::contacts::ESCALATIONS.len()
    }

    /// The contact configured for a role key.
    pub fn contact(&self, role_key: &str) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.role == role_key)
    }

    /// Whether the console saw what an item's `auto` signal stands for (shown as a hint at
    /// Levels 2 and 3, where a person ticks the item).
    pub fn observed(&self, signal: AutoSignal) -> bool {
        let i = &self.state;
        match signal {
            AutoSignal::PostcheckPassed => i.records_of::<event::Postcheck>().any(|(_, p)| p.successful),
            AutoSignal::MaintenanceVerified => i.maintenance.iter().any(|p| p.verified),
            AutoSignal::AuditClean => i.records_of::<event::Audit>().last().is_some_and(|(_, a)| a.violations == 0),
            AutoSignal::CustomerNoticeSent => i.last_message("customer").is_some(),
            AutoSignal::InternalAlertSent => {
                i.records_of::<event::MessageCopied>().any(|(_, m)| m.template == "internal_alert")
            }
            AutoSignal::ReportWritten => i.records_of::<event::ReportWritten>().next().is_some(),
        }
    }

    /// Lines in the selected message's text (for the preview's scrolling).
    pub fn preview_lines(&self) -> u16 {
        let n = self.current_message().and_then(|m| m.text()).map_or(0, |t| t.lines().count());
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    /// The message under the cursor.
    pub fn current_message(&self) -> Option<&MessageSlot> {
        self.messages.get(self.message_cursor)
    }

    /// When the next internal update is due (none at Level 1: on change).
    pub fn next_update_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        comms::next_update_due(self.state.level, self.state.last_message("internal"), self.state.opened_at, now)
    }

    /// When the next customer notice is due.
    pub fn customer_notice_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        comms::customer_notice_due(self.state.level, self.state.last_message("customer"), self.state.opened_at, now)
    }

    /// What copying the message under the cursor would do: the request, or why not.
    pub fn copy_request(&self) -> Result<JournalRequest, String> {
        let slot = self.current_message().ok_or("no template")?;
        let r = slot.rendered.as_ref().map_err(|e| format!("{} cannot be filled: {e}", slot.name))?;
        let text = slot.text().unwrap_or("").to_string();
        let blockers = self.templates.blockers(r, &text, &self.internal);
        if !blockers.unfilled.is_empty() {
            return Err(format!(
                "Not copied: {} still empty: {} (f fill, w waive)",
                slot.name,
                blockers.unfilled.join(", ")
            ));
        }
        if let Some(l) = blockers.leaks.first() {
            return Err(format!("Not copied: internal detail in a customer message: {l} (e to edit)"));
        }
        Ok(JournalRequest::Copy { template: slot.name.clone(), audience: r.audience.as_str().to_string(), text })
    }

    /// The next required field of the message under the cursor still to fill.
    pub fn next_unfilled(&self) -> Option<String> {
        self.current_message().and_then(|s| s.unfilled().into_iter().next())
    }
}

/// A one-line input, empty or with text, cursor at the end.
pub fn text_input(text: &str, placeholder: &str) -> TextArea<'static> {
    let mut t = TextArea::new(vec![text.to_string()]);
    t.set_cursor_line_style(ratatui::style::Style::default());
    t.set_placeholder_text(placeholder.to_string());
    t.move_cursor(ratatui_textarea::CursorMove::End);
    t
}

/// The message editor's text area.
pub fn editor_input(text: &str) -> TextArea<'static> {
    let mut t = TextArea::new(text.split('\n').map(str::to_string).collect());
    t.set_cursor_line_style(ratatui::style::Style::default());
    // Messages are prose: wrap at words, so a long line is read whole at 80 columns.
    t.set_wrap_mode(ratatui_textarea::WrapMode::WordOrGlyph);
    t
}

/// The step a finished text dialog asks for (none for the timeline filter).
pub fn step_of(purpose: &Purpose, text: &str) -> Result<Option<Step>, String> {
    let text = text.trim().to_string();
    if purpose.required() && text.is_empty() {
        return Err("Type something first (esc to abandon).".into());
    }
    Ok(match purpose {
        Purpose::Note => Some(Step::Note { text }),
        Purpose::SkipReason(item) => Some(Step::Skip { item: item.clone(), reason: text }),
        Purpose::LevelReason(to) => Some(Step::SetLevel { to: *to, reason: text }),
        Purpose::Person(role) => Some(Step::AssignRole { role: *role, person: text }),
        Purpose::Field(name) => Some(Step::SetField { name: name.clone(), value: text }),
        Purpose::Maintenance(_) | Purpose::TimelineFilter => None,
    })
}

/// Whether an observation is worth recording for the dashboard's audit result.
pub fn audit_observation(panel: &mut IncidentPanel, violations: usize, at: DateTime<Utc>) -> Option<Observation> {
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
