//! Shell completions and the man page come from the clap definitions.

mod support;

use std::process::Command;

use support::{flowy, stderr};

#[test]
fn completion_scripts_name_every_command_and_bash_parses_its_own() {
    for shell in ["bash", "zsh", "fish"] {
        let o = flowy(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        for word in [
            "serve",
            "query",
            "check",
            "replay",
            "lateness",
            "check-config",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("flowy.bash");
            std::fs::write(&path, script.as_bytes()).unwrap();
            let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
            assert!(check.status.success(), "{}", stderr(&check));
        }
    }
    let o = flowy(&["completions", "tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_page_is_roff_with_the_commands_and_exit_codes() {
    let o = flowy(&["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(page.contains(".TH flowy 1"), "{page}");
    for word in ["serve", "query", "check", "Exit codes"] {
        assert!(page.contains(word), "man page lacks {word}");
    }
}
