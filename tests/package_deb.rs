//! The Debian package `cargo deb` builds from the metadata in Cargo.toml:
//! its file list and conffiles, and an installed tree that works. Run as
//! root with CI=true (`.ci/run` on a CI machine) the package is really
//! installed with dpkg and purged afterwards; otherwise it is extracted with
//! `dpkg-deb -x` into a temporary directory and the same checks run there.
//! The man page and completions it ships (dist/) must be what the binary
//! generates.
//!
//! The package is built with `cargo deb --no-build` from the binary this
//! test runs against, so no nested build competes for the outer `cargo
//! test`'s build lock.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_flowy");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Files generated from the clap definitions, with the flowy arguments that
/// print them (`dist/generate` rewrites them all).
const GENERATED: [(&str, &[&str]); 4] = [
    ("dist/man/flowy.1", &["man"]),
    ("dist/completions/flowy.bash", &["completions", "bash"]),
    ("dist/completions/_flowy", &["completions", "zsh"]),
    ("dist/completions/flowy.fish", &["completions", "fish"]),
];

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Run a command that must succeed; its stdout.
fn ok(cmd: &mut Command) -> String {
    let o = output(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The example queries the package must carry: every config/queries/*.flowy.
fn query_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(REPO).join("config/queries"))
        .expect("config/queries")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".flowy"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no example queries in config/queries");
    names
}

fn stem(file: &str) -> &str {
    file.strip_suffix(".flowy").unwrap_or(file)
}

/// `cargo deb --no-build` once for all tests of this file.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(build_deb)
}

fn build_deb() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let installed = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        installed,
        "cargo-deb is not installed: `cargo install cargo-deb --locked` (.ci/run does this)"
    );
    // target/<profile>/flowy: package exactly the binary under test.
    let profile_dir = Path::new(BIN).parent().expect("binary directory");
    let target_dir = profile_dir.parent().expect("target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => "release",
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package_deb");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("create the output directory");
    ok(Command::new(&cargo)
        .args([
            "deb",
            "--no-build",
            "--fast",
            "--profile",
            profile,
            "--output",
        ])
        .arg(&out)
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(REPO));
    let debs: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("output directory")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "expected one .deb in {}", out.display());
    debs.into_iter().next().expect("one .deb")
}

#[test]
fn man_page_and_completions_in_dist_are_generated_from_the_binary() {
    for (file, args) in GENERATED {
        let expected = output(Command::new(BIN).args(args)).stdout;
        let found = std::fs::read(Path::new(REPO).join(file))
            .unwrap_or_else(|e| panic!("{file}: {e} (run dist/generate)"));
        assert!(
            found == expected,
            "{file} differs from `flowy {}`: run dist/generate and commit the result",
            args.join(" ")
        );
    }
}

#[test]
fn deb_lists_every_asset_and_the_conffiles() {
    let deb = deb();
    let listing = ok(Command::new("dpkg-deb").arg("-c").arg(deb));
    // "-rwxr-xr-x 0/0 83489560 2026-12-06 00:00 ./usr/bin/flowy"
    let entries: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|l| {
            let mode = l.split_whitespace().next()?;
            let path = l.split_whitespace().last()?;
            Some((mode, path.trim_start_matches('.')))
        })
        .collect();
    let paths: BTreeSet<&str> = entries.iter().map(|(_, p)| *p).collect();
    let mut expected: Vec<String> = [
        "/usr/bin/flowy",
        "/etc/flowy/flowy.toml",
        "/usr/lib/systemd/system/flowy.service",
        "/usr/lib/systemd/system/flowy@.service",
        "/usr/share/man/man1/flowy.1.gz",
        "/usr/share/bash-completion/completions/flowy",
        "/usr/share/zsh/vendor-completions/_flowy",
        "/usr/share/fish/vendor_completions.d/flowy.fish",
        "/usr/share/doc/flowy/copyright",
        "/usr/share/doc/flowy/LICENSE-MIT",
        "/usr/share/doc/flowy/LICENSE-APACHE",
        "/usr/share/doc/flowy/README.md",
        "/usr/share/doc/flowy/examples/flowy.toml",
        "/usr/share/doc/flowy/examples/cluster/collector.toml",
        "/usr/share/doc/flowy/examples/cluster/worker.toml",
        "/usr/share/doc/flowy/examples/grafana/flowy.json",
    ]
    .map(String::from)
    .to_vec();
    let queries: Vec<String> = query_files()
        .iter()
        .map(|q| format!("/etc/flowy/queries/{q}"))
        .collect();
    expected.extend(queries.iter().cloned());
    for path in &expected {
        assert!(
            paths.contains(path.as_str()),
            "{path} not in the .deb:\n{listing}"
        );
    }
    let bin_mode = entries.iter().find(|(_, p)| *p == "/usr/bin/flowy");
    assert_eq!(bin_mode.map(|(m, _)| *m), Some("-rwxr-xr-x"));

    // Everything under /etc is a conffile: an edited configuration or query
    // survives upgrades.
    let conffiles = ok(Command::new("dpkg-deb").arg("-I").arg(deb).arg("conffiles"));
    let conffiles: BTreeSet<&str> = conffiles.lines().map(str::trim).collect();
    let mut etc: BTreeSet<&str> = queries.iter().map(String::as_str).collect();
    etc.insert("/etc/flowy/flowy.toml");
    assert_eq!(conffiles, etc);

    let fields = ok(Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .args(["Package", "Version", "Depends"]));
    assert!(fields.contains("Package: flowy\n"), "{fields}");
    assert!(
        fields.contains(&format!("Version: {VERSION}-1\n")),
        "{fields}"
    );
    assert!(fields.contains("libc6"), "{fields}");

    // Installing neither enables nor starts the daemon; an upgrade restarts
    // it if it runs.
    let postinst = ok(Command::new("dpkg-deb").arg("-I").arg(deb).arg("postinst"));
    assert!(postinst.contains("try-restart flowy.service"), "{postinst}");
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");
}

/// The package's files, below `root`: "/" once installed with dpkg, a
/// temporary directory when only extracted.
struct Installed {
    root: PathBuf,
    dpkg: bool,
    _extracted: Option<tempfile::TempDir>,
}

impl Installed {
    fn new(deb: &Path) -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if root && std::env::var("CI").is_ok_and(|v| v == "true") {
            ok(Command::new("dpkg")
                .arg("-i")
                .arg(deb)
                .env("DEBIAN_FRONTEND", "noninteractive"));
            return Installed {
                root: PathBuf::from("/"),
                dpkg: true,
                _extracted: None,
            };
        }
        let dir = tempfile::tempdir().expect("tempdir");
        ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()));
        Installed {
            root: dir.path().to_path_buf(),
            dpkg: false,
            _extracted: Some(dir),
        }
    }

    fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    fn flowy(&self) -> Command {
        let mut cmd = Command::new(self.path("/usr/bin/flowy"));
        // The configured values, not the environment's, are under test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("FLOWY__") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    fn purge(&mut self) {
        if std::mem::take(&mut self.dpkg) {
            ok(Command::new("dpkg").args(["--purge", "flowy"]));
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        // A failed assertion still leaves the machine as it was.
        if self.dpkg {
            let _ = Command::new("dpkg").args(["--purge", "flowy"]).status();
        }
    }
}

#[test]
fn installed_package_checks_its_queries_configuration_and_units() {
    let mut pkg = Installed::new(deb());
    let version = ok(pkg.flowy().arg("--version"));
    assert!(version.contains(VERSION), "{version}");

    // flowy check /etc/flowy/queries/*.flowy
    let queries = query_files();
    let checked = ok(pkg.flowy().arg("check").args(
        queries
            .iter()
            .map(|q| pkg.path(&format!("/etc/flowy/queries/{q}"))),
    ));
    for q in &queries {
        assert!(
            checked.contains(&format!("query {}\n", stem(q))),
            "{q}:\n{checked}"
        );
    }

    // The packaged configuration runs the installed queries and writes to
    // /var/log/flowy.
    let config = pkg.path("/etc/flowy/flowy.toml");
    let text = std::fs::read_to_string(&config).expect("packaged configuration");
    assert!(
        text.lines()
            .any(|l| l.trim() == r#"paths = ["/etc/flowy/queries/*.flowy"]"#),
        "{text}"
    );
    let mut serve = pkg.flowy();
    serve
        .args(["serve", "--check-config", "--config"])
        .arg(&config);
    if !pkg.dpkg {
        let pattern = pkg.path("/etc/flowy/queries/*.flowy");
        serve.env("FLOWY__QUERIES__PATHS", pattern);
    }
    let summary = ok(&mut serve);
    assert!(summary.starts_with("configuration ok"), "{summary}");
    assert!(
        summary.contains("output /var/log/flowy/matches.jsonl"),
        "{summary}"
    );
    for q in &queries {
        assert!(summary.contains(stem(q)), "{q}: {summary}");
    }

    verify_units(&pkg);

    let mut man = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(pkg.path("/usr/share/man/man1/flowy.1.gz")).expect("man page"),
    )
    .read_to_string(&mut man)
    .expect("gzip man page");
    assert_eq!(man, ok(pkg.flowy().arg("man")));
    let bash = std::fs::read_to_string(pkg.path("/usr/share/bash-completion/completions/flowy"))
        .expect("bash completion");
    assert_eq!(bash, ok(pkg.flowy().args(["completions", "bash"])));

    if pkg.dpkg {
        pkg.purge();
        for gone in ["/usr/bin/flowy", "/etc/flowy/flowy.toml"] {
            assert!(!Path::new(gone).exists(), "{gone} left after dpkg --purge");
        }
    }
}

/// The installed units name the installed binary and configuration, and
/// `systemd-analyze verify` accepts them.
fn verify_units(pkg: &Installed) {
    assert!(
        Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "systemd-analyze is not installed: `apt-get install -y systemd` (.ci/run does this)"
    );
    let unit_dir = pkg.path("/usr/lib/systemd/system");
    let tmp = tempfile::tempdir().expect("tempdir");
    for (file, instance, config) in [
        ("flowy.service", "flowy.service", "/etc/flowy/flowy.toml"),
        (
            "flowy@.service",
            "flowy@worker-a.service",
            "/etc/flowy/%i.toml",
        ),
    ] {
        let text = std::fs::read_to_string(unit_dir.join(file)).expect("installed unit");
        let exec = format!("ExecStart=/usr/bin/flowy serve --config {config}");
        assert!(text.lines().any(|l| l == exec), "{file} lacks {exec}");
        // verify insists that the binary exists; an extracted tree has it
        // below its root.
        let bin = pkg.path("/usr/bin/flowy");
        let unit = if pkg.dpkg && file == instance {
            unit_dir.join(file)
        } else {
            let copy = tmp.path().join(instance);
            let text = text.replace("/usr/bin/flowy", &bin.to_string_lossy());
            std::fs::write(&copy, text).expect("write unit");
            copy
        };
        let o = output(Command::new("systemd-analyze").arg("verify").arg(&unit));
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "verify {instance}:\n{stderr}");
        let own: Vec<&str> = stderr.lines().filter(|l| l.contains(instance)).collect();
        assert!(own.is_empty(), "verify {instance} warns: {own:?}");
    }
}
