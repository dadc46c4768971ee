//! incident-console: contain and undo bad order executions on a trading platform's
//! PostgreSQL, prove every rollback, and keep people informed.

pub mod app;
pub mod batch;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod comms;
pub mod config;
pub mod connect;
pub mod db;
pub mod demo;
pub mod drill;
pub mod error;
pub mod incident_cmd;
pub mod incidents;
pub mod journal;
pub mod keymap;
pub mod metrics;
pub mod observed;
pub mod output;
pub mod protocol;
pub mod report;
pub mod sandbox;
pub mod sanitize;
pub mod session;
pub mod target;
pub mod tui;
pub mod ui;
pub mod worker;
pub mod workflow;
