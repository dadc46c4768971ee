//! The harness every test binary shares: a throwaway PostgreSQL per binary with one
//! database per test (`db`), the real binary run as a command (`cli`).
#![allow(dead_code)]

pub mod cli;
pub mod db;
