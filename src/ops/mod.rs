//! The use cases, shared by the CLI and the console's worker: a rollback with its checks, a
//! batch, maintenance mode switched and proved, the incident's records, write-ahead
//! journaling of what moves money, the drill and the benchmark.

pub mod approval;
pub mod batch;
pub(crate) mod bench;
pub mod bundle;
pub mod drill;
pub mod drill_level3;
pub mod incident;
pub mod journaling;
pub mod maintenance;
pub mod release;
pub mod replica;
pub mod rollback;
pub mod service;
