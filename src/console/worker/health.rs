//! The worker's health probe: whether the database answers, asked about once a second on
//! a connection of its own, so that the answer never waits behind the request pool (its
//! acquire wait, a long request) or behind the run loop. Each probe is bounded on both
//! sides: the client gives up on the query after `ANSWER_WITHIN` and on a new connection
//! after `CONNECT_WITHIN`, and the server stops the query itself after a second. A killed
//! server shows at the next probe (its connection is closed, a new one is refused); a
//! server that stops answering (stopped, or a network that drops everything) shows only by
//! the timeout, at most `EVERY + ANSWER_WITHIN` after its last answer.
//!
//! The probe says "down" to the UI itself, at once. It says "up" only while the run loop
//! holds a pool that requests can use: a server that answers again while the pool is not
//! rebuilt yet is told to the run loop (which reconnects now rather than at its backoff),
//! not shown as up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::console::protocol::{ConnState, DbEvent};
use crate::core::error::Error;
use crate::store::connect::ConnectSettings;
use crate::store::db;

/// How often the database is asked.
pub(super) const EVERY: Duration = Duration::from_secs(1);
/// How long the probe's query may take. With `EVERY`, a server that stops answering right
/// after a probe is shown down 1.8 s later; a loaded machine still answers a trivial query
/// on a local connection well within it.
pub(super) const ANSWER_WITHIN: Duration = Duration::from_millis(800);
/// How long a new connection for the probe may take.
pub(super) const CONNECT_WITHIN: Duration = Duration::from_secs(1);
/// The bound on a whole probe: a failed query, a new connection and its query.
const PROBE_WITHIN: Duration = Duration::from_secs(2);
/// A changed round trip is said at most this often (a round trip jittering between two
/// buckets would redraw an idle screen every second); down and up again are said at once.
const LATENCY_EVERY: Duration = Duration::from_secs(10);

/// What the last probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not asked yet.
    Unknown,
    /// The database answered.
    Answers,
    /// It did not: an error, or no answer in time.
    Silent,
}

/// What the probe and the run loop share.
#[derive(Default)]
pub(super) struct Shared {
    /// When the outage under way began (none: no outage).
    outage: Mutex<Option<DateTime<Utc>>>,
    /// The run loop holds a pool requests can use: only then may the header say "up".
    pub(super) pool_ready: AtomicBool,
    /// A probe now (the pool was just rebuilt), not at the next tick.
    pub(super) probe_now: Notify,
}

impl Shared {
    /// The start of the outage under way; `at` begins one when none is.
    pub(super) fn outage_since(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        match self.outage.lock() {
            Ok(mut o) => *o.get_or_insert(at),
            Err(_) => at,
        }
    }

    /// Whether an outage is under way.
    pub(super) fn in_outage(&self) -> bool {
        self.outage.lock().map(|o| o.is_some()).unwrap_or(false)
    }

    /// The outage under way, if any, is over.
    pub(super) fn outage_over(&self) {
        if let Ok(mut o) = self.outage.lock() {
            *o = None;
        }
    }
}

/// Starts the probe on `settings`: it tells the UI (`events`) when the database is down or
/// up again, and the run loop (`verdicts`) whether it answers.
pub(super) fn spawn(
    settings: ConnectSettings,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<DbEvent>,
    verdicts: watch::Sender<Verdict>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut probe = Probe { settings, conn: None };
        // What this task last told the UI, and when: the same state is not sent again
        // every second.
        let mut shown: Option<(ConnState, Instant)> = None;
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shared.probe_now.notified() => tick.reset(),
            }
            let started = Utc::now();
            let answer = match tokio::time::timeout(PROBE_WITHIN, probe.ask()).await {
                Ok(a) => a,
                Err(_) => {
                    probe.conn = None;
                    Err(format!("no answer within {} s", PROBE_WITHIN.as_secs()))
                }
            };
            let state = match answer {
                Ok(round_trip) => {
                    set(&verdicts, Verdict::Answers);
                    if !shared.pool_ready.load(Ordering::Acquire) {
                        // Answers, but requests cannot use it yet: the run loop reconnects.
                        continue;
                    }
                    shared.outage_over();
                    ConnState::Up { latency_ms: latency_bucket(round_trip.as_secs_f64() * 1000.0) }
                }
                Err(error) => {
                    set(&verdicts, Verdict::Silent);
                    let since = shared.outage_since(started);
                    ConnState::Down { error: probe.settings.scrub(&error), retry_in: 0, since }
                }
            };
            let say = match &shown {
                None => true,
                // Up before and now: a changed round trip, at most every LATENCY_EVERY.
                Some((old @ ConnState::Up { .. }, at)) if matches!(state, ConnState::Up { .. }) => {
                    *old != state && at.elapsed() >= LATENCY_EVERY
                }
                Some((old, _)) => *old != state,
            };
            if say {
                shown = Some((state.clone(), Instant::now()));
                if events.send(DbEvent::Connection(state)).is_err() {
                    break;
                }
            }
        }
    })
}

fn set(verdicts: &watch::Sender<Verdict>, v: Verdict) {
    verdicts.send_if_modified(|old| {
        let changed = *old != v;
        *old = v;
        changed
    });
}

/// The round trip rounded up to a bucket, so that a jittering round trip does not redraw
/// an idle screen.
pub(super) fn latency_bucket(ms: f64) -> u32 {
    [1u32, 2, 5, 10, 20, 50, 100, 200, 500, 1000].into_iter().find(|b| ms <= f64::from(*b)).unwrap_or(5000)
}

/// The probe's connection, kept between probes.
struct Probe {
    settings: ConnectSettings,
    conn: Option<PgConnection>,
}

impl Probe {
    /// One probe: the round trip of the query, or what failed.
    async fn ask(&mut self) -> Result<Duration, String> {
        if let Some(conn) = self.conn.as_mut() {
            let started = Instant::now();
            match tokio::time::timeout(ANSWER_WITHIN, db::health_probe(conn)).await {
                Ok(Ok(())) => return Ok(started.elapsed()),
                // Closed under it: by a server that died (a new connection is refused),
                // or restarted, or that closes idle sessions (a new one answers): a new
                // connection tells which.
                Ok(Err(_)) => self.conn = None,
                Err(_) => {
                    self.conn = None;
                    return Err(no_answer());
                }
            }
        }
        let mut conn = self
            .settings
            .probe_connection(CONNECT_WITHIN)
            .await
            .map_err(|e| format!("cannot connect: {}", said(&e)))?;
        let started = Instant::now();
        match tokio::time::timeout(ANSWER_WITHIN, db::health_probe(&mut conn)).await {
            Ok(Ok(())) => {
                self.conn = Some(conn);
                Ok(started.elapsed())
            }
            Ok(Err(e)) => Err(said(&e)),
            Err(_) => Err(no_answer()),
        }
    }
}

fn no_answer() -> String {
    format!("no answer within {} ms", ANSWER_WITHIN.as_millis())
}

/// An error's words without the "database unreachable" the header already says.
fn said(e: &Error) -> String {
    match e {
        Error::Unreachable(m) => m.clone(),
        other => other.to_string(),
    }
}
