//! Unix signals as lifecycle events: SIGHUP reloads, SIGTERM/SIGINT stop.

use tokio::signal::unix::{signal, Signal, SignalKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Reload,
    Shutdown,
}

pub struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Install the handlers; done before READY so no signal is missed.
    pub fn install() -> std::io::Result<Self> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    pub async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.hup.recv() => Event::Reload,
            _ = self.term.recv() => Event::Shutdown,
            _ = self.int.recv() => Event::Shutdown,
        }
    }
}
