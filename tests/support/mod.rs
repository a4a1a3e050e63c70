//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A file of the shared nfql traces. CI checks the repository out with
/// `shared/` beside it (`../shared` from the repository root); a developer's
/// worktree may sit deeper, so the nearest ancestor holding it wins.
pub fn trace(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/data/nfql-traces"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| root.join("../shared/data/nfql-traces"))
        .join(name)
}

/// A file of the repository (queries, fixtures).
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
