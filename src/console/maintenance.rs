//! The maintenance switch: its key (a reason is asked when there is a journal), the
//! command to the worker, and the answer, which says whether a probe order proved it. The
//! header shows the state.

use crate::console::app::{App, Effects, Message};
use crate::console::dialogs::text::{Purpose, TextDialog};
use crate::console::protocol::{Command, ConnState, RequestId};
use crate::core::contract::MaintenanceProbe;
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
    let Some(case) = app.case.as_mut() else {
        // Without a journal the switch still works; it is just not recorded.
        let id = app.id();
        app.maintenance_request = Some(id);
        return Effects::with(vec![Command::SetMaintenance { id, on, reason: "console".into() }]);
    };
    let placeholder = if on { "e.g. stop new orders during the rollback" } else { "e.g. rollback verified" };
    case.dialog = Some(TextDialog::open(Purpose::Maintenance(on), "", placeholder));
    Effects::redraw()
}

/// Switches, for the reason given.
pub(crate) fn switch(app: &mut App, on: bool, reason: String) -> Effects {
    let id = app.id();
    app.maintenance_request = Some(id);
    app.message = Some(Message {
        text: format!(
            "Switching maintenance mode {} and probing that new orders are {} …",
            if on { "ON" } else { "off" },
            if on { "refused" } else { "accepted" }
        ),
        error: false,
    });
    Effects::with(vec![Command::SetMaintenance { id, on, reason }])
}

/// The worker's answer: switched or not, and whether the probe order proved it.
pub(crate) fn on_switched(
    app: &mut App,
    id: RequestId,
    on: bool,
    reason: String,
    result: Result<MaintenanceProbe, String>,
) -> Effects {
    if app.maintenance_request == Some(id) {
        app.maintenance_request = None;
    }
    match result {
        Ok(p) => {
            let verified = p.new_orders_refused == on;
            let text = match (on, verified) {
                (true, true) => {
                    "Maintenance mode ON, verified: a probe order was refused (and rolled back).".to_string()
                }
                (true, false) => format!(
                    "Maintenance mode ON but NOT verified: the probe order got {}.",
                    p.probe_code.as_deref().unwrap_or("through")
                ),
                (false, true) => "Maintenance mode off: new orders are accepted again (probe rolled back).".into(),
                (false, false) => "Maintenance mode off, but a probe order is still refused.".into(),
            };
            app.message = Some(Message { text, error: !verified });
            app.maintenance = Some(p.state);
            let mut e = Effects::redraw();
            e.journal = app.observe(vec![Observation::Maintenance { on, reason, verified }]);
            e
        }
        Err(e) => app.say(format!("Maintenance mode not switched: {e}"), true),
    }
}
