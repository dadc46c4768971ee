//! The console's tests, one binary: `App::update` driven by actions (`update`,
//! `incident_update`, `outage_update`), whole-screen `insta` snapshots of a `TestBackend` at
//! 80x24 and 160x48 (`snapshots`, `incident_snapshots`, `outage_snapshots`), and the real
//! binary driven in a private tmux server against a real PostgreSQL (`e2e`, `incident_e2e`;
//! `outage_e2e` on clusters of its own, which it kills and stops). Apart from the
//! database-heavy integration binary, so the timing-sensitive terminal tests do not share
//! the machine with it. One throwaway cluster serves the other e2e modules (`support::db`).

#[path = "../support/mod.rs"]
mod support;

mod e2e;
mod incident_e2e;
mod incident_snapshots;
mod incident_update;
mod journal_others_update;
mod outage_e2e;
mod outage_snapshots;
mod outage_update;
mod pooler_snapshots;
mod replica_e2e;
mod replica_snapshots;
mod signals_e2e;
mod snapshots;
mod update;
