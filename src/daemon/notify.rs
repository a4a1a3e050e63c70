//! systemd readiness protocol (`Type=notify`). Every call is a no-op when
//! NOTIFY_SOCKET is unset, so the daemon behaves the same outside systemd.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Sockets are bound and queries run.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// A SIGHUP reload starts; systemd wants the monotonic time with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// A one-line status for `systemctl status`.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// The watchdog interval systemd asks for (`WatchdogSec=`), if any. As in
/// sd_watchdog_enabled(3), WATCHDOG_PID, when set, must name this process
/// (the crate's version insists on it being set, which systemd does but a
/// test harness that cannot know the pid beforehand cannot).
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| std::time::Duration::from_micros(usec))
}

/// Every stage is making progress.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}
