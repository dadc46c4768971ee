//! The pure domain: no database, terminal, async runtime or file system here. The incident
//! workflow, the journal's line format, the SQL contract's values, the rules every front
//! end applies (reasons, filters, money formatting), observations and the message context.

pub mod approval;
pub mod batch;
pub mod blast;
pub mod bundle;
pub mod comms;
pub mod contacts;
pub mod contract;
pub mod error;
pub(crate) mod format;
pub mod journal;
pub mod keys;
pub mod metrics;
pub(crate) mod observed;
pub mod orders;
pub mod release;
pub mod replica;
pub mod report;
pub mod sanitize;
pub mod service;
pub mod workflow;
