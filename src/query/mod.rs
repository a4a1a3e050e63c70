//! The query language: lexer/parser (LALRPOP), AST, compiler to [`plan::Plan`],
//! and located diagnostics.
//!
//! ```text
//! source --lexer--> tokens --grammar--> ast --compile--> Plan
//!                                  \____________\_____> Diagnostics
//! ```

pub mod ast;
mod compile;
mod consts;
pub mod diag;
mod explain;
pub mod lexer;
mod merger;
mod parse;
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
