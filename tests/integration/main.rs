//! The integration tests, one binary: the ledger on a real PostgreSQL (rollbacks,
//! concurrency, audit, migrations, roles), the headless CLI run as a real process, the
//! journal, the message templates, and the layering of the source tree. One throwaway
//! cluster serves them all (`support::db`), with a database per test.

#[path = "../support/mod.rs"]
mod support;

mod adversary;
mod adversary2;
mod adversary_approval;
mod adversary_bundle;
mod adversary_light;
mod adversary_release;
mod adversary_symbol;
mod approvals;
mod approvals_cli;
mod attribution;
mod audit;
mod audit_locks;
mod batch_chunks;
mod batch_faults;
mod batch_proof;
mod bench_cli;
mod bench_scale;
mod blast;
mod breaker;
mod bundle;
mod cli;
mod concurrency;
mod execution;
mod faults;
mod impact_figures;
mod incident_cli;
mod journal;
mod journal_wal;
mod layers;
mod light_rollback;
mod lock_squatting;
mod lost_ack;
mod migration_safety;
mod migrations;
mod notify_flood;
mod orders_filter;
mod orders_sort;
mod releases;
mod replica;
mod roles;
mod rollback;
mod rollback_failures;
mod security;
mod service;
mod signals;
mod templates;
mod worker_faults;
