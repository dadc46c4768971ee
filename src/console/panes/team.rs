//! The Team pane: who holds each response role (with their contact), the escalation
//! contacts from the configuration, and the hand-overs.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::console::app::{App, Effects};
use crate::console::dialogs::text::{Purpose, TextDialog};
use crate::console::incident::IncidentPanel;
use crate::console::panes::{Pane, is_movement, step};
use crate::console::widgets::{fit, pane_block};
use crate::core::contacts::{Contact, ESCALATIONS};
use crate::core::keys::KeyAction;
use crate::core::sanitize;
use crate::core::workflow::incident::Role;

impl IncidentPanel {
    /// Team rows: the six roles, then the escalation contacts.
    pub(crate) fn team_rows() -> usize {
        Role::ALL.len() + crate::core::contacts::ESCALATIONS.len()
    }

    /// The contact configured for a role key.
    pub(crate) fn contact(&self, role_key: &str) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.role == role_key)
    }
}

/// The keys the footer names.
pub(crate) const HINTS: &[(KeyAction, &str)] =
    &[(KeyAction::Assign, "assign person"), (KeyAction::Note, "note"), (KeyAction::Level, "level")];

/// Keys, while focused: movement, and assign (or enter) a person to the role under the
/// cursor.
pub(crate) fn key(app: &mut App, action: KeyAction, focused: bool) -> Option<Effects> {
    if !focused {
        return None;
    }
    match action {
        a if is_movement(a) => {
            let case = app.case.as_mut()?;
            let next = step(a, case.team_cursor, IncidentPanel::team_rows());
            if next == case.team_cursor {
                return Some(Effects::none());
            }
            case.team_cursor = next;
            Some(Effects::redraw())
        }
        KeyAction::Assign | KeyAction::Precheck => Some(assign(app)),
        _ => None,
    }
}

fn assign(app: &mut App) -> Effects {
    let Some(case) = app.case.as_mut() else { return Effects::none() };
    match Role::ALL.get(case.team_cursor) {
        Some(role) => {
            let name = case.contact(role.key()).map(|c| c.name.clone()).unwrap_or_default();
            case.dialog = Some(TextDialog::open(Purpose::Person(*role), &name, "name of the person taking the role"));
            Effects::redraw()
        }
        None => app.say("Escalation contacts come from the config file.", true),
    }
}

/// Draws the pane.
pub(crate) fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(case) = &app.case else { return };
    let block = pane_block(app, Pane::Team, "Team · escalation".into());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = Vec::new();
    let contact_parts = |role_key: &str, person: Option<&str>| -> Vec<String> {
        let c = case
            .contacts
            .iter()
            .find(|c| c.role == role_key && person.is_none_or(|p| p == c.name))
            .or_else(|| case.contacts.iter().find(|c| person.is_some_and(|p| p == c.name)));
        match c {
            Some(c) => {
                let mut parts = Vec::new();
                if person.is_none() {
                    parts.push(format!("on call: {}", sanitize::line(&c.name)));
                }
                parts.extend(c.phone.as_deref().map(|p| sanitize::line(p).into_owned()));
                parts.extend(c.email.as_deref().map(|e| sanitize::line(e).into_owned()));
                parts
            }
            None => Vec::new(),
        }
    };
    for (n, role) in Role::ALL.iter().enumerate() {
        let selected = app.focus == Pane::Team && case.team_cursor == n;
        let held = case.state.roles.get(role);
        let person = held.map(|a| a.person.as_str());
        let name = match person {
            Some(p) => Span::styled(format!("{:<16}", sanitize::line(p)), Style::new().add_modifier(Modifier::BOLD)),
            None => Span::styled(format!("{:<16}", "unassigned"), Style::new().fg(Color::Yellow)),
        };
        let room = usize::from(inner.width).saturating_sub(1 + 20 + name.content.chars().count() + 1);
        let contact = fit_parts(&contact_parts(role.key(), person), room);
        let line = Line::from(vec![
            Span::raw(if selected { "▶" } else { " " }),
            Span::raw(format!("{:<20}", role.label())),
            name,
            Span::styled(format!(" {contact}"), Style::new().fg(Color::Gray)),
        ]);
        lines.push(if selected { line.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { line });
    }
    for (n, (key, label)) in ESCALATIONS.iter().enumerate() {
        let selected = app.focus == Pane::Team && case.team_cursor == Role::ALL.len() + n;
        let room = usize::from(inner.width).saturating_sub(1 + 20);
        let text = match case.contact(key) {
            Some(c) => {
                let mut parts = vec![sanitize::line(&c.name).into_owned()];
                parts.extend(c.phone.as_deref().map(|p| sanitize::line(p).into_owned()));
                parts.extend(c.email.as_deref().map(|e| sanitize::line(e).into_owned()));
                fit_parts(&parts, room)
            }
            None => fit("not configured ([[contact]] in the config file)", u16::try_from(room).unwrap_or(u16::MAX)),
        };
        let line = Line::from(vec![
            Span::raw(if selected { "▶" } else { " " }),
            Span::styled(format!("{label:<20}"), Style::new().fg(Color::Magenta)),
            Span::styled(text, Style::new().fg(Color::Gray)),
        ]);
        lines.push(if selected { line.patch_style(Style::new().add_modifier(Modifier::REVERSED)) } else { line });
    }
    if !case.state.handovers.is_empty() {
        lines.push(Line::from(Span::styled(" hand-overs:", Style::new().fg(Color::Gray))));
        for (role, from, to, at, _) in case.state.handovers.iter().rev() {
            lines.push(Line::from(Span::styled(
                format!("  {} {}: {} → {}", at.format("%H:%M"), role.label(), sanitize::line(from), sanitize::line(to)),
                Style::new().fg(Color::Gray),
            )));
        }
    }
    let height = inner.height as usize;
    let offset = if case.team_cursor >= height { case.team_cursor + 1 - height } else { 0 };
    frame.render_widget(Paragraph::new(lines).scroll((offset as u16, 0)), inner);
}

/// A contact's parts (name, phone, e-mail) joined by " · " within `room` columns. A phone
/// number cut short is another number, so only the e-mail is ever cut (with '…'); a part
/// that does not fit whole is left out, and '…' says something was.
fn fit_parts(parts: &[String], room: usize) -> String {
    let mut shown = String::new();
    for part in parts {
        let sep = if shown.is_empty() { "" } else { " · " };
        let whole = format!("{shown}{sep}{part}");
        if whole.chars().count() <= room {
            shown = whole;
            continue;
        }
        let left = room.saturating_sub(shown.chars().count() + sep.chars().count());
        if part.contains('@') && left >= 8 {
            shown = format!("{shown}{sep}{}", fit(part, u16::try_from(left).unwrap_or(u16::MAX)));
        } else if shown.chars().count() + 2 <= room {
            shown.push_str(" …");
        } else {
            shown = fit(&shown, u16::try_from(room).unwrap_or(u16::MAX));
        }
        break;
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::fit_parts;

    fn parts(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_contact_that_fits_is_shown_whole() {
        let p = parts(&["Alice Martin", "+44 20 7946 0101", "alice@x.example"]);
        assert_eq!(fit_parts(&p, 60), "Alice Martin · +44 20 7946 0101 · alice@x.example");
    }

    #[test]
    fn only_the_email_is_ever_cut() {
        let p = parts(&["Alice Martin", "+44 20 7946 0101", "alice.martin@tradex.example"]);
        assert_eq!(fit_parts(&p, 42), "Alice Martin · +44 20 7946 0101 · alice.m…");
        // Too little room for a useful piece of the e-mail: left out, and said so.
        assert_eq!(fit_parts(&p, 36), "Alice Martin · +44 20 7946 0101 …");
        // The phone never loses digits: it goes whole or not at all.
        assert_eq!(fit_parts(&p, 25), "Alice Martin …");
        for room in 0..60 {
            let shown = fit_parts(&p, room);
            assert!(shown.chars().count() <= room, "{room}: {shown}");
            assert!(!shown.contains("+44") || shown.contains("+44 20 7946 0101"), "{room}: {shown}");
        }
    }
}
