//! I/O below the domain: every SQL statement (`db`), the journal file, the incidents
//! directory, the user's config files and templates, exported messages, connecting, the
//! sandbox cluster and its demo book, tmux's paste buffer.

pub mod bundle;
pub mod clipboard;
pub mod config;
pub mod connect;
pub mod db;
pub(crate) mod demo;
pub mod demo_service;
pub(crate) mod files;
pub mod incidents;
pub mod journal;
pub mod releases;
pub mod sandbox;
pub(crate) mod target;
