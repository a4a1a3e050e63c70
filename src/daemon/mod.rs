//! The daemon: configuration, pipeline tasks, signals, metrics.
