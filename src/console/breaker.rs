//! The circuit breaker's key: a person opens or closes it with a reason (journaled); the
//! header says when it is open (read with maintenance mode's state).

use crate::console::app::{App, Effects};
use crate::console::dialogs::text::{Purpose, TextDialog};
use crate::console::protocol::{Command, ConnState, RequestId};
use crate::core::journal::event;
use crate::core::workflow::incident::Observation;

/// The key: asks why, to close it when it is open, else to open it.
pub(crate) fn key(app: &mut App) -> Effects {
    if !matches!(app.conn, ConnState::Up { .. }) {
        return app.say("The circuit breaker needs the database: it is not connected.", true);
    }
    let open = app.maintenance.as_ref().is_none_or(|m| m.breaker.is_none());
    let placeholder =
        if open { "e.g. the ledger audit shows a violation" } else { "e.g. the cause is found and fixed" };
    let Some(case) = app.case.as_mut() else {
        return app
            .say("The circuit breaker is switched with a reason in the incident's journal: there is none.", true);
    };
    case.dialog = Some(TextDialog::open(Purpose::Breaker(open), "", placeholder));
    Effects::redraw()
}

/// Switches it, for the reason given.
pub(crate) fn switch(app: &mut App, open: bool, reason: String) -> Effects {
    let id = app.id();
    let mut e = Effects::with(vec![Command::SwitchBreaker { id, open, reason }]);
    e.redraw |=
        app.say(if open { "Opening the circuit breaker …" } else { "Closing the circuit breaker …" }, false).redraw;
    e
}

/// The worker's answer: said, and journaled when it changed.
pub(crate) fn on_switched(
    app: &mut App,
    _id: RequestId,
    open: bool,
    reason: String,
    result: Result<bool, String>,
) -> Effects {
    match result {
        Ok(changed) => {
            let text = match (open, changed) {
                (true, true) => "Circuit breaker OPEN: every rollback is refused until it is closed.",
                (false, true) => "Circuit breaker closed: rollbacks are accepted again.",
                (true, false) => "The circuit breaker was already open.",
                (false, false) => "The circuit breaker was already closed.",
            };
            let mut e = app.say(text, open);
            if changed {
                e.journal =
                    app.observe(vec![Observation::Breaker(event::Breaker { open, reason, source: "person".into() })]);
            }
            e
        }
        Err(why) => app.say(format!("The circuit breaker was not switched: {why}"), true),
    }
}
