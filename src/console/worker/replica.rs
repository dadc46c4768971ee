//! The worker's standby (`--replica-url` / `replica_url`): a task measures its lag once a
//! second (`core::replica`, on connections of its own to both servers, each bounded by a
//! short timeout) and says in [`Replica`] whether the reads that decide nothing (the orders
//! list, its count and per-minute strip, the dashboard, the blast radius) may go to it;
//! the header is told what it found (`DbEvent::Replica`). Everything else (pre-checks,
//! rollbacks and their own reads, post-checks, batch previews, writes) never asks.
//!
//! A read that fails on the standby is run again on the primary at once and the standby
//! is set aside until the next measurement says it answers, so a standby that dies costs
//! the console one failed attempt, not a failed pane.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgConnection;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use crate::console::protocol::DbEvent;
use crate::core::replica::{Fallback, LagTracker, ReplicaStatus, decide};
use crate::ops::replica as ops;
use crate::store::connect::ConnectSettings;
use crate::store::db::Db;

/// How often the lag is measured.
const EVERY: Duration = Duration::from_secs(1);
/// How long a new probe connection may take.
const PROBE_CONNECT_WITHIN: Duration = Duration::from_secs(1);
/// How long acquiring a connection of the standby's pool may take before the read goes to
/// the primary instead (the pool would retry a dead server until its own, longer, timeout).
pub(super) const ACQUIRE_WITHIN: Duration = Duration::from_secs(1);

/// What the lag task and the requests share.
#[derive(Default)]
pub(super) struct Replica {
    /// The standby's pool while reads may use it; None: they go to the primary.
    usable: Mutex<Option<Db>>,
    /// A read failed on the standby: measure again now.
    look_now: Notify,
}

impl Replica {
    /// The pool reads go to now, when it is the standby's.
    pub(super) fn reads(&self) -> Option<Db> {
        self.usable.lock().ok().and_then(|u| u.clone())
    }

    /// A read failed on the standby: no read goes there until it is measured again.
    pub(super) fn failed(&self) {
        if let Ok(mut u) = self.usable.lock() {
            *u = None;
        }
        self.look_now.notify_one();
    }

    fn set(&self, pool: Option<Db>) {
        if let Ok(mut u) = self.usable.lock() {
            *u = pool;
        }
    }
}

/// Starts measuring the standby at `url` against the primary of `primary`.
pub(super) fn spawn(
    primary: ConnectSettings,
    url: String,
    max_lag: Duration,
    shared: Arc<Replica>,
    events: mpsc::UnboundedSender<DbEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let standby = ops::standby_settings(&primary, &url);
        let mut m = Measure { primary, standby, pool: None, primary_conn: None, standby_conn: None };
        let mut tracker = LagTracker::new();
        let mut shown: Option<ReplicaStatus> = None;
        let _ = events.send(DbEvent::Replica(ReplicaStatus::Checking));
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shared.look_now.notified() => tick.reset(),
            }
            let status = m.status(&mut tracker, max_lag).await;
            if status.in_use() {
                // The pool is made before the status can say "in use".
                shared.set(m.pool.clone());
            } else {
                shared.set(None);
                if matches!(status, ReplicaStatus::Fallback(Fallback::Unreachable(_)))
                    && let Some(pool) = m.pool.take()
                {
                    // A standby that comes back gets fresh connections.
                    tokio::spawn(async move { pool.close().await });
                }
            }
            if shown.as_ref() != Some(&status) {
                if let ReplicaStatus::Fallback(f) = &status {
                    tracing::warn!("standby not used: {}", ops::describe(f));
                }
                shown = Some(status.clone());
                if events.send(DbEvent::Replica(status)).is_err() {
                    break;
                }
            }
        }
    })
}

/// The connections the measurement keeps between readings.
struct Measure {
    primary: ConnectSettings,
    standby: ConnectSettings,
    /// The standby's pool for reads (made once the standby answers).
    pool: Option<Db>,
    primary_conn: Option<PgConnection>,
    standby_conn: Option<PgConnection>,
}

impl Measure {
    /// One reading, what it means, and the standby's pool made when it may be used.
    async fn status(&mut self, tracker: &mut LagTracker, max_lag: Duration) -> ReplicaStatus {
        let (at, p, s) = match self.read().await {
            Ok(r) => r,
            Err(f) => {
                // A connection that failed is made afresh next time.
                self.primary_conn = None;
                self.standby_conn = None;
                return ReplicaStatus::Fallback(f);
            }
        };
        let lag = tracker.observe(at, &p, &s);
        let status = decide(&p, &s, lag, max_lag);
        if status.in_use() && self.pool.is_none() {
            match ops::connect(&self.standby, 4).await {
                Ok(pool) => self.pool = Some(pool),
                Err(f) => return ReplicaStatus::Fallback(f),
            }
        }
        status
    }

    async fn read(
        &mut self,
    ) -> std::result::Result<
        (std::time::Instant, crate::core::replica::PrimaryPosition, crate::core::replica::StandbyPosition),
        Fallback,
    > {
        if self.primary_conn.is_none() {
            let c =
                self.primary.probe_connection(PROBE_CONNECT_WITHIN).await.map_err(|e| {
                    Fallback::Unreachable(format!("the primary: {}", self.primary.scrub(&e.to_string())))
                })?;
            self.primary_conn = Some(c);
        }
        if self.standby_conn.is_none() {
            let c = self
                .standby
                .probe_connection(PROBE_CONNECT_WITHIN)
                .await
                .map_err(|e| Fallback::Unreachable(self.standby.scrub(&e.to_string())))?;
            self.standby_conn = Some(c);
        }
        match (self.primary_conn.as_mut(), self.standby_conn.as_mut()) {
            (Some(p), Some(s)) => ops::read(&mut *p, &mut *s, &self.standby).await,
            _ => Err(Fallback::Unreachable("no connection".into())),
        }
    }
}
