//! The harness every test binary shares: a throwaway PostgreSQL per binary with one
//! database per test (`db`), the real binary run as a command (`cli`) or in a private tmux
//! server (`tmux`), the console's `App` driven in process and drawn on a test terminal
//! (`app`), and the fixed data the in-process console tests build on (`fixtures`).
#![allow(dead_code)]

pub mod app;
pub mod cli;
pub mod db;
pub mod fixtures;
pub mod tmux;
