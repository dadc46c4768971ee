//! The signals that end a headless command early: Ctrl-C (SIGINT), SIGTERM and SIGHUP.
//! Listening to them replaces their default (dying on the spot), so a command that moves
//! money can cancel on the server, settle what was in flight, and still print and journal
//! what happened.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The three signals, listened to from creation on.
pub(super) struct Interrupts {
    int: Option<Signal>,
    term: Option<Signal>,
    hup: Option<Signal>,
}

impl Interrupts {
    /// Starts listening (a signal that cannot be listened to keeps its default).
    pub(super) fn listen() -> Self {
        Interrupts {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    /// The next one to arrive, by name.
    pub(super) async fn next(&mut self) -> &'static str {
        async fn recv(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.int) => "Ctrl-C",
            _ = recv(&mut self.term) => "SIGTERM",
            _ = recv(&mut self.hup) => "SIGHUP",
        }
    }
}
