//! Helpers of the daemon load bench: traffic, capture, paced sender,
//! collector processes, kernel socket counters.

pub mod capture;
pub mod exporter_capture;
pub mod flows;
pub mod flowy_proc;
pub mod kernel;
pub mod nfcapd;
pub mod sender;
