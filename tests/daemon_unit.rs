//! The systemd unit file: required directives, and `systemd-analyze verify`
//! when the tool is installed (CI installs it).

use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../systemd/flowy.service");

fn directive_values(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn unit_has_required_directives() {
    let required = [
        ("Type", "notify"),
        (
            "ExecStart",
            "/usr/local/bin/flowy serve --config /etc/flowy/flowy.toml",
        ),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("LogsDirectory", "flowy"),
        ("StateDirectory", "flowy"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("CapabilityBoundingSet", ""),
    ];
    for (key, value) in required {
        let values = directive_values(key);
        assert!(
            values.contains(&value),
            "{key}={value} missing (found {values:?})"
        );
    }
}

fn analyze_available() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !analyze_available() {
        eprintln!("systemd-analyze not installed; only the directive check ran");
        return;
    }
    // verify insists that ExecStart exists; point it at the freshly built
    // binary so the check does not depend on an installed copy.
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("flowy.service");
    let bin = env!("CARGO_BIN_EXE_flowy");
    assert!(Path::new(bin).exists());
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/flowy", bin)).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // verify also exits 0 on some warnings about our own file; none allowed.
    let own: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("flowy.service"))
        .collect();
    assert!(own.is_empty(), "warnings: {own:?}");
}
