//! The daemon: configuration, pipeline tasks, signals, metrics.

pub mod config;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod signals;
