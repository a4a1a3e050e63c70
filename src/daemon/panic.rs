//! A panic anywhere ends the daemon (SPEC §4.5 "Liveness"): a dead decode
//! thread or query task would otherwise leave a process that looks ready
//! and does nothing. systemd's `Restart=on-failure` brings it back.

/// The exit status after a panic (Rust's usual one).
pub const EXIT_PANIC: i32 = 101;

/// Log the panic, print it the usual way, and exit — whatever thread or
/// task it happened in (tokio would otherwise catch a task's panic and go on).
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        tracing::error!("panic in thread {name}: {info}; exiting with status {EXIT_PANIC}");
        default(info);
        std::process::exit(EXIT_PANIC);
    }));
}

/// Test-only trigger: `FLOWY_DEBUG_PANIC=<stage>` makes that stage panic on
/// its first item, so the tests can show that a pipeline panic ends the
/// process. No real input can panic a stage; this is the only way.
#[doc(hidden)]
pub fn requested(stage: &str) -> bool {
    std::env::var("FLOWY_DEBUG_PANIC").is_ok_and(|v| v == stage)
}
