//! The harness every test binary shares: a throwaway PostgreSQL per binary with one
//! database per test (`db`), the real binary run as a command (`cli`) or in a private tmux
//! server (`tmux`), the console's `App` driven in process and drawn on a test terminal
//! (`app`), the fixed data the in-process console tests build on (`fixtures`), and faults
//! on a server of a test's own (`faults`: kill -9, restart, a proxy that loses replies).
#![allow(dead_code)]

pub mod app;
pub mod cli;
pub mod db;
pub mod faults;
pub mod fixtures;
pub mod tmux;
