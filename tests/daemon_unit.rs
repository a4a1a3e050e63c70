//! The systemd unit file: required directives, and `systemd-analyze verify`
//! when the tool is installed (CI installs it).

use std::path::Path;
use std::process::Command;

const UNIT: &str = include_str!("../systemd/flowy.service");
/// The cluster members' template unit (one instance per configuration).
const TEMPLATE: &str = include_str!("../systemd/flowy@.service");

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
            "/usr/bin/flowy serve --config /etc/flowy/flowy.toml",
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
    verify("flowy.service", UNIT);
}

#[test]
fn cluster_template_passes_systemd_analyze_verify() {
    verify("flowy@worker-a.service", TEMPLATE);
    // The template differs from the standalone unit only in what names the
    // configuration.
    assert_eq!(
        TEMPLATE
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.replace("%i", "flowy").replace(" nats-server.service", ""))
            .filter(|l| !l.starts_with("Description="))
            .collect::<Vec<_>>(),
        UNIT.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| !l.starts_with("Description="))
            .map(String::from)
            .collect::<Vec<_>>()
    );
}

/// The example cluster configurations load, with their queries.
#[test]
fn cluster_example_configurations_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, expect) in [
        ("collector.toml", "cluster collector 1"),
        (
            "worker.toml",
            "cluster worker on nats://127.0.0.1:4222, partitions 0-7 of 16",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_flowy"))
            .args(["serve", "--check-config", "--config"])
            .arg(root.join("config/cluster").join(file))
            .env("FLOWY__QUERIES__PATHS", root.join("config/queries/*.flowy"))
            .output()
            .expect("run flowy");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(expect), "{file}: {stdout}");
        assert!(stdout.contains("key {srcip, dstip}"), "{file}: {stdout}");
    }
}

fn verify(name: &str, text: &str) {
    assert!(
        analyze_available(),
        "systemd-analyze is not installed: `apt-get install -y systemd` (.ci/run does this)"
    );
    // verify insists that ExecStart exists; point it at the freshly built
    // binary so the check does not depend on an installed copy.
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join(name);
    let bin = env!("CARGO_BIN_EXE_flowy");
    assert!(Path::new(bin).exists());
    std::fs::write(&unit, text.replace("/usr/bin/flowy", bin)).expect("write unit");
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
    let own: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
    assert!(own.is_empty(), "warnings: {own:?}");
}
