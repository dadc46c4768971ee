//! incident-console: contain and undo bad order executions on a trading platform's
//! PostgreSQL, prove every rollback, and keep people informed.
//!
//! The folders are the architecture (see ARCHITECTURE.md). Each layer depends only on the
//! ones below it, and `tests/integration/layers.rs` fails when an import points upward:
//!
//! ```text
//! console/   cli/      two thin front ends: the terminal UI and the headless commands
//!     └─► ops/ ◄─┘     the use cases both share: rollback, batch, incident, maintenance
//!          │
//!        store/        I/O: SQL (one place, split by concern), journal file, config files,
//!          │           incident directories, sandbox, demo book
//!        core/         the pure domain: workflow, journal format, contract types, rules
//! ```

pub mod cli;
pub mod console;
pub mod core;
pub mod ops;
pub mod store;
