//! The Messages pane: one slot per message template, filled from the incident, with the
//! selected one's text below; fill or waive its fields, edit it, copy it out.

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Paragraph, Wrap};

use crate::console::app::{App, Effects};
use crate::console::dialogs::editor::Editor;
use crate::console::dialogs::text::{Purpose, TextDialog};
use crate::console::hints::Keys;
use crate::console::incident::{IncidentPanel, JournalRequest};
use crate::console::panes::{Pane, is_movement, step};
use crate::console::widgets::pane_block;
use crate::core::comms::{Audience, Draft, Rendered};
use crate::core::journal::event;
use crate::core::keys::KeyAction;
use crate::core::sanitize;
use crate::core::workflow::incident::Step;

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
    /// What it said when it was last copied, to tell whether the incident changed it since.
    pub basis: Option<CopyBasis>,
    /// The incident changed since the last copy in a way that changes this message's text
    /// (a level, a figure, a time): an update is due.
    pub changed_since_copy: bool,
}

/// A copied message as the incident stood when it was copied: the template filled from
/// the journal up to the copy, at the copy's time. Filled again at that same time from the
/// incident as it stands now, another text means the incident changed what the message
/// says; the clock alone never does ("Posted: …" is the copy's time both ways).
#[derive(Debug, Clone, PartialEq)]
pub struct CopyBasis {
    /// The copy's journal entry.
    pub seq: u64,
    /// When it was copied.
    pub at: DateTime<Utc>,
    /// The template's text as filled then (without the person's edits).
    pub text: String,
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

impl IncidentPanel {
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
            let basis = self.copy_basis(&name, old.and_then(|s| s.basis.as_ref()));
            let changed_since_copy =
                basis.as_ref().is_some_and(|b| self.filled_at(&name, b.at).is_some_and(|now_text| now_text != b.text));
            slots.push(MessageSlot { name, rendered, draft, copied, basis, changed_since_copy });
        }
        self.messages = slots;
        self.message_cursor = self.message_cursor.min(self.messages.len().saturating_sub(1));
    }

    /// The basis of the template's last copy: the one known if it is still the last, else
    /// filled from the journal up to it. None when never copied, or for a template that
    /// lists the timeline (a report is written, not sent).
    fn copy_basis(&self, name: &str, known: Option<&CopyBasis>) -> Option<CopyBasis> {
        let i = self.entries.iter().rposition(
            |e| matches!(&e.event, crate::core::journal::event::Event::MessageCopied(m) if m.template == name),
        )?;
        let copy = &self.entries[i];
        if let Some(b) = known.filter(|b| b.seq == copy.seq) {
            return Some(b.clone());
        }
        if self.uses_timeline(name) {
            return None;
        }
        let upto = &self.entries[..=i];
        let then = crate::store::incidents::fold(upto).ok()?;
        let ctx = crate::core::report::context_without_timeline(&then, &self.checklist, upto, None, copy.at);
        let text = self.templates.render(name, &ctx.to_value()).ok()?.text;
        Some(CopyBasis { seq: copy.seq, at: copy.at, text })
    }

    /// The template filled from the incident as it stands, at the time `at`.
    fn filled_at(&self, name: &str, at: DateTime<Utc>) -> Option<String> {
        let ctx = crate::core::report::context_without_timeline(&self.state, &self.checklist, &self.entries, None, at);
        self.templates.render(name, &ctx.to_value()).ok().map(|r| r.text)
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
    pub(crate) fn refresh_selected(&mut self, now: DateTime<Utc>) {
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

    /// Lines in the selected message's text (for the preview's scrolling).
    pub fn preview_lines(&self) -> u16 {
        let n = self.current_message().and_then(|m| m.text()).map_or(0, |t| t.lines().count());
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    /// The message under the cursor.
    pub fn current_message(&self) -> Option<&MessageSlot> {
        self.messages.get(self.message_cursor)
    }

    /// What copying the message under the cursor would do: the request, or why not (and
    /// which keys help).
    pub(crate) fn copy_request(&self, k: Keys) -> Result<JournalRequest, String> {
        let slot = self.current_message().ok_or("no template")?;
        let r = slot.rendered.as_ref().map_err(|e| format!("{} cannot be filled: {e}", slot.name))?;
        let text = slot.text().unwrap_or("").to_string();
        let blockers = self.templates.blockers(r, &text, &self.internal);
        if !blockers.unfilled.is_empty() {
            return Err(format!(
                "Not copied: {} still empty: {} ({} fill, {} waive)",
                slot.name,
                blockers.unfilled.join(", "),
                k.of(KeyAction::Fill),
                k.of(KeyAction::Waive)
            ));
        }
        if let Some(l) = blockers.leaks.first() {
            return Err(format!(
                "Not copied: internal detail in a customer message: {l} ({} to edit)",
                k.of(KeyAction::Edit)
            ));
        }
        Ok(JournalRequest::Copy { template: slot.name.clone(), audience: r.audience.as_str().to_string(), text })
    }

    /// The next required field of the message under the cursor still to fill.
    pub(crate) fn next_unfilled(&self) -> Option<String> {
        self.current_message().and_then(|s| s.unfilled().into_iter().next())
    }
}

/// The keys the footer names.
pub(crate) const HINTS: &[(KeyAction, &str)] = &[
    (KeyAction::Copy, "copy"),
    (KeyAction::Fill, "fill"),
    (KeyAction::Edit, "edit"),
    (KeyAction::Waive, "waive"),
    (KeyAction::Report, "report"),
];

/// Keys: movement (the page keys scroll the text) and enter (edit) while focused; edit,
/// fill, waive and copy say where they work when it is not.
pub(crate) fn key(app: &mut App, action: KeyAction, focused: bool) -> Option<Effects> {
    let effects = match action {
        a if is_movement(a) && focused => movement(app, a),
        KeyAction::Precheck if focused => edit(app),
        KeyAction::Edit if focused => edit(app),
        KeyAction::Edit => app.say("Editing works in the Messages pane.", true),
        KeyAction::Fill | KeyAction::Waive if focused => fill(app, action),
        KeyAction::Fill | KeyAction::Waive => app.say("Fields are filled in the Messages pane.", true),
        KeyAction::Copy if focused => copy(app),
        KeyAction::Copy => app.say("Copying works in the Messages pane.", true),
        _ => return None,
    };
    Some(effects)
}

/// Up and down pick the message; the page keys scroll its text (a message is longer than the
/// pane at 80x24).
fn movement(app: &mut App, action: KeyAction) -> Effects {
    let now = app.now;
    let Some(case) = app.case.as_mut() else { return Effects::none() };
    if matches!(action, KeyAction::PageUp | KeyAction::PageDown) {
        let before = case.preview_scroll;
        case.preview_scroll = match action {
            KeyAction::PageUp => before.saturating_sub(5),
            _ => before.saturating_add(5).min(case.preview_lines().saturating_sub(1)),
        };
        return if case.preview_scroll == before { Effects::none() } else { Effects::redraw() };
    }
    let next = step(action, case.message_cursor, case.messages.len());
    if next == case.message_cursor {
        return Effects::none();
    }
    case.message_cursor = next;
    case.preview_scroll = 0;
    case.refresh_selected(now);
    Effects::redraw()
}

fn edit(app: &mut App) -> Effects {
    let Some(case) = app.case.as_mut() else { return Effects::none() };
    // Times in the text ("Posted: …") are as of now, not of the last change.
    case.refresh_messages(app.now);
    let Some(slot) = case.current_message() else { return Effects::none() };
    if let Err(e) = &slot.rendered {
        let msg = format!("{} cannot be filled: {e}", slot.name);
        return app.say(msg, true);
    }
    let (name, text) = (slot.name.clone(), slot.text().unwrap_or("").to_string());
    case.dialog = Some(Editor::open(name, &text));
    Effects::redraw()
}

fn fill(app: &mut App, action: KeyAction) -> Effects {
    let Some(case) = app.case.as_mut() else { return Effects::none() };
    let Some(name) = case.next_unfilled() else {
        return app.say("Every required field of this message is filled or waived.", false);
    };
    if action == KeyAction::Waive {
        // Said, since a waiver holds for every message that uses the field.
        let text = format!(
            "Waived {} in every message that uses it (recorded in the timeline).",
            case.templates.field_title(&name)
        );
        let mut e = app.say(text, false);
        e.journal = vec![JournalRequest::Step(Step::Waive { name })];
        return e;
    }
    let current = case.state.fields.get(&name).cloned().unwrap_or_default();
    let context = field_context(case, &name);
    let label = case.templates.field_title(&name);
    let purpose = Purpose::Field { name, label };
    case.dialog = Some(TextDialog::open_with_context(purpose, &current, "the text for the message", context));
    Effects::redraw()
}

/// What a person needs to fill a field well: the sentence of this message it goes into,
/// and the other messages it will change too (a field is the incident's, not a message's).
fn field_context(case: &crate::console::incident::IncidentPanel, name: &str) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(slot) = case.current_message()
        && let Ok(r) = &slot.rendered
    {
        if let Some(sentence) = slot.text().and_then(|t| crate::core::comms::sentence_of(t, name)) {
            lines.push(format!("In {}: \"{sentence}\"", r.title));
        }
        let others: Vec<&str> = case
            .messages
            .iter()
            .filter(|s| s.name != slot.name)
            .filter_map(|s| s.rendered.as_ref().ok())
            .filter(|o| o.missing.iter().any(|m| m == name))
            .map(|o| o.title.as_str())
            .collect();
        if !others.is_empty() {
            lines.push(format!("Also goes into: {}", others.join(", ")));
        }
    }
    lines
}

fn copy(app: &mut App) -> Effects {
    let Some(case) = app.case.as_mut() else { return Effects::none() };
    case.refresh_messages(app.now);
    match case.copy_request(Keys(&app.keymap)) {
        Ok(r) => Effects::journal(vec![r]),
        Err(e) => app.say(e, true),
    }
}

/// Draws the pane.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(case) = &app.case else { return };
    let block = pane_block(app, Pane::Messages, "Messages · fill, edit, copy".into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let list_rows = (case.messages.len() as u16).min(inner.height.saturating_sub(3));
    let [list, rule, preview] =
        Layout::vertical([Constraint::Length(list_rows), Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let mut lines = Vec::new();
    for (n, slot) in case.messages.iter().enumerate() {
        let selected = n == case.message_cursor;
        let (audience, title) = match &slot.rendered {
            Ok(r) => (if r.audience == Audience::Customer { "customer" } else { "internal" }, r.title.clone()),
            Err(_) => match case.templates.info(&slot.name) {
                Ok(t) => (if t.audience == Audience::Customer { "customer" } else { "internal" }, t.title.clone()),
                Err(_) => ("?", slot.name.clone()),
            },
        };
        let unfilled = slot.unfilled();
        let status = match (&slot.rendered, unfilled.is_empty()) {
            (Err(e), _) if e.contains("audit") => {
                Span::styled("needs a ledger audit first", Style::new().fg(Color::Yellow))
            }
            (Err(_), _) => Span::styled("cannot be filled", Style::new().fg(Color::Red)),
            (Ok(_), false) => Span::styled(format!("needs {}", unfilled.join(", ")), Style::new().fg(Color::Yellow)),
            (Ok(_), true) => Span::styled("ready", Style::new().fg(Color::Green)),
        };
        let copied = match &slot.copied {
            Some((at, _)) if slot.changed_since_copy => Span::styled(
                format!(" · changed since you copied it at {}", at.format("%H:%M")),
                Style::new().fg(Color::Yellow),
            ),
            Some((at, _)) => Span::styled(format!(" · copied {}", at.format("%H:%M")), Style::new().fg(Color::Cyan)),
            None => Span::raw(""),
        };
        let edited = if slot.draft.is_some() { " · edited" } else { "" };
        let line = Line::from(vec![
            Span::raw(if selected && app.focus == Pane::Messages { "▶" } else { " " }),
            Span::raw(format!("{:<22.22} ", sanitize::line(&title))),
            Span::styled(format!("{audience:<9}"), Style::new().fg(Color::Gray)),
            status,
            Span::styled(edited, Style::new().fg(Color::Cyan)),
            copied,
        ]);
        lines.push(if selected { line.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { line });
    }
    frame.render_widget(Paragraph::new(lines), list);
    let mut rule_text = match case.current_message().and_then(|s| s.copied.as_ref()) {
        Some((at, path)) => {
            format!(
                "─ last copy {} → {} ",
                at.format("%H:%M:%S"),
                sanitize::line(&crate::core::report::file_name(path))
            )
        }
        None => String::new(),
    };
    // Longer than the preview (wrapping aside): say how to see the rest, first.
    let lines_total = case.preview_lines();
    if lines_total > preview.height || case.preview_scroll > 0 {
        rule_text = format!(
            "─ {}-{}/{lines_total} {} ─{rule_text}",
            case.preview_scroll + 1,
            (case.preview_scroll + preview.height).min(lines_total),
            Keys(&app.keymap).of(KeyAction::PageDown)
        );
    }
    let fill = (rule.width as usize).saturating_sub(rule_text.chars().count());
    frame.render_widget(
        Paragraph::new(Span::styled(format!("{rule_text}{}", "─".repeat(fill)), Style::new().fg(Color::DarkGray))),
        rule,
    );
    let text = match case.current_message() {
        Some(slot) => match (&slot.rendered, slot.text()) {
            (Err(e), _) => Text::from(Line::styled(sanitize::line(e).into_owned(), Style::new().fg(Color::Red))),
            (_, Some(t)) => preview_text(t),
            _ => Text::default(),
        },
        None => Text::from(" no templates"),
    };
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).scroll((case.preview_scroll, 0)), preview);
}

/// The message's text with the placeholders of empty fields in yellow.
fn preview_text(text: &str) -> Text<'static> {
    let lines: Vec<Line> = sanitize::multiline(text)
        .split('\n')
        .map(|l| {
            if l.contains(crate::core::comms::TO_FILL_PREFIX) {
                Line::styled(l.to_string(), Style::new().fg(Color::Black).bg(Color::Yellow))
            } else {
                Line::from(l.to_string())
            }
        })
        .collect();
    Text::from(lines)
}
