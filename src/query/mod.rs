//! The query language: lexer/parser (LALRPOP), AST, compiler to [`plan::Plan`],
//! and located diagnostics.

pub mod plan;
