//! The query language: lexer/parser (LALRPOP), AST, compiler to [`plan::Plan`],
//! and located diagnostics.
//!
//! ```text
//! source --lexer--> tokens --grammar--> ast --compile--> Plan
//!                                  \____________\_____> Diagnostics
//! ```
//!
//! Choices where SPEC §2 is silent (for the user documentation):
//! - `==` is read as `=`; keywords are case-sensitive (`OR`, not `or`).
//! - A duration unit may follow its number after spaces on the same line
//!   (`1 sec`); units are `ms`, `s`/`sec`, `min`, `h` (and long forms).
//! - A name directly followed by `(` on the same line is a function call.
//! - Without a `splitter` statement the first name used as the splitter
//!   declares it; every line must then use that name.
//! - A merger that no branch line reaches is an error, and so is a
//!   difference module that shares no branch with the exported module.
//! - A merger with a single module may omit `export`.
//! - `stime`, `etime` and `duration` are never implicit keys (they are
//!   group fields already); a plain aggregate of a key field adds no slot.
//! - An aggregate without `as` is named after its field's canonical name.
//! - Group filters not used by any branch are still checked, as far as is
//!   possible without knowing their grouper.
//! - Nesting (brackets and `NOT`) is limited to 256 levels.

pub mod ast;
mod compile;
mod consts;
pub use consts::protocol_number;
pub mod diag;
mod explain;
pub mod lexer;
mod merger;
mod parse;
pub mod partition;
pub mod plan;
mod rules;
mod schema;
pub mod suggest;
mod typeck;
mod wiring;

#[allow(clippy::all, clippy::pedantic, unused_parens, dead_code)]
mod grammar {
    include!(concat!(env!("OUT_DIR"), "/flowy.rs"));
}

use std::path::Path;

pub use compile::compile_source;
pub use diag::{CompileError, Diagnostic, Diagnostics};
pub use explain::explain;
pub use partition::{partition_key, KeyPart, KeySpec, PartitionKey};
pub use plan::Plan;

/// Compile a query file; the plan is named after the file stem and errors
/// are labelled with the path as given.
pub fn compile_file(path: &Path) -> Result<Plan, CompileError> {
    let source = std::fs::read_to_string(path).map_err(|source| CompileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path
        .file_stem()
        .map_or_else(|| "query".to_string(), |s| s.to_string_lossy().into_owned());
    compile_source(&name, &path.display().to_string(), &source).map_err(CompileError::Invalid)
}
