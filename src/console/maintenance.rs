//! The maintenance switch: its key (a reason is asked when there is a journal; tab in that
//! dialog chooses every symbol or only the symbol of the order under the cursor), the
//! command to the worker, and the answer, which says whether a probe order proved it. The
//! header shows the state.

use crate::console::app::{App, Effects, Message};
use crate::console::dialogs::text::{Purpose, TextDialog};
use crate::console::protocol::{Command, ConnState, RequestId};
use crate::core::contract::{MaintenanceProbe, MaintenanceState};
use crate::core::workflow::incident::Observation;

/// The key: asks why (with a journal), or switches at once (without one, unrecorded).
pub(crate) fn key(app: &mut App) -> Effects {
    if !matches!(app.conn, ConnState::Up { .. }) {
        return app.say("Maintenance mode needs the database: it is not connected.", true);
    }
    if app.maintenance_request.is_some() {
        return app.say("Maintenance mode is being switched; wait for the probe.", true);
    }
    let on = !app.maintenance.as_ref().is_some_and(|m| m.maintenance_mode);
    if app.case.is_none() {
        // Without a journal the switch still works; it is just not recorded.
        let id = app.id();
        app.maintenance_request = Some(id);
        return Effects::with(vec![Command::SetMaintenance { id, on, reason: "console".into(), symbol: None }]);
    }
    let purpose = Purpose::Maintenance(on);
    let context = scope_context(&purpose, &scopes(app.maintenance.as_ref(), cursor_symbol(app)));
    let Some(case) = app.case.as_mut() else { return Effects::none() };
    case.dialog = Some(TextDialog::open_with_context(purpose, "", placeholder(on), context));
    Effects::redraw()
}

fn placeholder(on: bool) -> &'static str {
    if on { "e.g. stop new orders during the rollback" } else { "e.g. rollback verified" }
}

/// The symbol of the order under the cursor: the one a commander means by "only this".
fn cursor_symbol(app: &App) -> Option<String> {
    app.current_order().map(|o| o.symbol.clone())
}

/// What the switch can do now, in the order tab goes through them: every symbol (on or off,
/// the opposite of now), the cursor's symbol alone, each other symbol stopped alone (off).
pub(crate) fn scopes(m: Option<&MaintenanceState>, cursor: Option<String>) -> Vec<Purpose> {
    let whole_on = m.is_some_and(|m| m.maintenance_mode);
    let stopped: &[String] = m.map_or(&[], |m| m.symbols.as_slice());
    let mut out = vec![Purpose::Maintenance(!whole_on)];
    if let Some(s) = cursor.filter(|_| !whole_on) {
        out.push(Purpose::SymbolMaintenance { on: !stopped.contains(&s), symbol: s });
    }
    for s in stopped {
        if !out.iter().any(|p| matches!(p, Purpose::SymbolMaintenance { symbol, .. } if symbol == s)) {
            out.push(Purpose::SymbolMaintenance { symbol: s.clone(), on: false });
        }
    }
    out
}

/// The dialog's lines about its scope: what it switches, and what tab switches instead.
pub(crate) fn scope_context(purpose: &Purpose, scopes: &[Purpose]) -> Vec<String> {
    let here = match purpose {
        Purpose::SymbolMaintenance { symbol, .. } => format!("Scope: {symbol} only; other symbols trade on."),
        _ => "Scope: every symbol.".to_string(),
    };
    let next = scopes.iter().position(|p| p == purpose).map(|i| &scopes[(i + 1) % scopes.len()]);
    match next.filter(|n| *n != purpose) {
        Some(n) => vec![format!("{here} tab: {}", n.title())],
        None => vec![here],
    }
}

/// Tab in the maintenance dialog: the next scope, keeping what was typed.
pub(crate) fn next_scope(app: &App, purpose: &Purpose) -> Option<(Purpose, Vec<String>)> {
    let all = scopes(app.maintenance.as_ref(), cursor_symbol(app));
    let i = all.iter().position(|p| p == purpose).map_or(0, |i| (i + 1) % all.len());
    let next = all.get(i)?.clone();
    let context = scope_context(&next, &all);
    Some((next, context))
}

/// Switches, for the reason given: every symbol, or `symbol` alone.
pub(crate) fn switch(app: &mut App, on: bool, symbol: Option<String>, reason: String) -> Effects {
    let id = app.id();
    app.maintenance_request = Some(id);
    let which = symbol.as_ref().map(|s| format!(" for {s}")).unwrap_or_default();
    app.message = Some(Message {
        text: format!(
            "Switching maintenance mode {}{which} and probing that new orders are {} …",
            if on { "ON" } else { "off" },
            if on { "refused" } else { "accepted" }
        ),
        error: false,
    });
    Effects::with(vec![Command::SetMaintenance { id, on, reason, symbol }])
}

/// The worker's answer: switched or not, and whether the probe order proved it.
pub(crate) fn on_switched(
    app: &mut App,
    id: RequestId,
    (on, symbol): (bool, Option<String>),
    reason: String,
    result: Result<MaintenanceProbe, String>,
) -> Effects {
    if app.maintenance_request == Some(id) {
        app.maintenance_request = None;
    }
    match result {
        Ok(p) => {
            let verified = p.new_orders_refused == on;
            let got = p.probe_code.as_deref().unwrap_or("through");
            let (text, seen) = match symbol {
                Some(s) => (
                    match (on, verified) {
                        (true, true) => {
                            format!("Maintenance mode ON for {s} only, verified: a probe order of {s} was refused.")
                        }
                        (true, false) => format!("Maintenance mode for {s} NOT verified: the probe order got {got}."),
                        (false, true) => format!("Maintenance mode off for {s}: its new orders are accepted again."),
                        (false, false) => {
                            format!("Maintenance mode off for {s}, but a probe order of it is still refused.")
                        }
                    },
                    Observation::SymbolMaintenance { symbol: s, on, reason, verified },
                ),
                None => (
                    match (on, verified) {
                        (true, true) => {
                            "Maintenance mode ON, verified: a probe order was refused (and rolled back).".to_string()
                        }
                        (true, false) => format!("Maintenance mode ON but NOT verified: the probe order got {got}."),
                        (false, true) => {
                            "Maintenance mode off: new orders are accepted again (probe rolled back).".into()
                        }
                        (false, false) => "Maintenance mode off, but a probe order is still refused.".into(),
                    },
                    Observation::Maintenance { on, reason, verified },
                ),
            };
            app.message = Some(Message { text, error: !verified });
            app.maintenance = Some(p.state);
            let mut e = Effects::redraw();
            e.journal = app.observe(vec![seen]);
            e
        }
        Err(e) => app.say(format!("Maintenance mode not switched: {e}"), true),
    }
}
