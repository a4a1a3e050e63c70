//! Source text → statements, with every lexical and syntax error reported.

use lalrpop_util::ParseError;

use crate::query::ast::{Span, Stmt};
use crate::query::diag::Sink;
use crate::query::grammar::FileParser;
use crate::query::lexer::{lex, LexError, Tok};

/// The parsed statements; `complete` is false when a whole statement was
/// lost to a syntax error (then name checks would only produce noise).
pub struct Parsed {
    pub stmts: Vec<Stmt>,
    pub complete: bool,
}

pub fn parse(source: &str, sink: &mut Sink<'_>) -> Parsed {
    let (toks, lex_errors) = lex(source);
    for e in &lex_errors {
        sink.error(Span::new(e.start, e.end), e.message.clone());
    }
    let eof = source.len();
    let mut recovered = Vec::new();
    let result = FileParser::new().parse(&mut recovered, toks.into_iter().map(Ok));
    for r in recovered {
        report(&r.error, eof, sink);
    }
    match result {
        Ok(stmts) => {
            let complete = !stmts.iter().any(|s| matches!(s, Stmt::Error));
            Parsed { stmts, complete }
        }
        Err(e) => {
            report(&e, eof, sink);
            Parsed {
                stmts: Vec::new(),
                complete: false,
            }
        }
    }
}

fn report(e: &ParseError<usize, Tok, LexError>, eof: usize, sink: &mut Sink<'_>) {
    match e {
        ParseError::InvalidToken { location } => {
            sink.error(Span::new(*location, *location + 1), "invalid token");
        }
        ParseError::UnrecognizedEof { expected, .. } => {
            sink.error_help(
                Span::new(eof, eof),
                "unexpected end of file",
                expected_help(expected),
            );
        }
        ParseError::UnrecognizedToken {
            token: (l, t, r),
            expected,
        } => {
            sink.error_help(
                Span::new(*l, *r),
                format!("unexpected {}", describe(t)),
                expected_help(expected),
            );
        }
        ParseError::ExtraToken { token: (l, t, r) } => {
            sink.error(Span::new(*l, *r), format!("unexpected {}", describe(t)));
        }
        ParseError::User { error } => {
            sink.error(Span::new(error.start, error.end), error.message.clone());
        }
    }
}

fn expected_help(expected: &[String]) -> Option<String> {
    let mut words: Vec<String> = expected.iter().map(|t| terminal_words(t)).collect();
    words.dedup();
    match words.as_slice() {
        [] => None,
        [one] => Some(format!("expected {one}")),
        [init @ .., last] if words.len() <= 8 => {
            Some(format!("expected {} or {last}", init.join(", ")))
        }
        _ => Some(format!("expected one of {}", words.join(", "))),
    }
}

/// A grammar terminal as LALRPOP names it (`"->"`, `Ident`) in plain words.
fn terminal_words(t: &str) -> String {
    match t {
        "Ident" => "a name".into(),
        "Func" => "a function call".into(),
        "Num" => "a number".into(),
        "Float" => "a decimal number".into(),
        "Dur" => "a duration".into(),
        "Addr" => "an address".into(),
        "Prefix" => "a prefix".into(),
        "Str" => "a string".into(),
        "Bad" => "a literal".into(),
        quoted => format!("'{}'", quoted.trim_matches('"')),
    }
}

/// A token as the user wrote it, for "unexpected …" messages.
pub fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("name '{s}'"),
        Tok::Func(s) => format!("function call '{s}('"),
        Tok::Num(n) => format!("number {n}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::Dur(d) => format!("duration {d}ms"),
        Tok::Addr(a) => format!("address {a}"),
        Tok::Prefix(p) => format!("prefix {p}"),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Bad => "invalid literal".into(),
        other => format!("'{}'", symbol(other)),
    }
}

fn symbol(t: &Tok) -> &'static str {
    match t {
        Tok::Splitter => "splitter",
        Tok::Filter => "filter",
        Tok::Grouper => "grouper",
        Tok::GroupFilter => "groupfilter",
        Tok::Merger => "merger",
        Tok::Ungrouper => "ungrouper",
        Tok::Module => "module",
        Tok::Aggregate => "aggregate",
        Tok::As => "as",
        Tok::Branches => "branches",
        Tok::Branch => "branch",
        Tok::Export => "export",
        Tok::Delta => "delta",
        Tok::RDelta => "rdelta",
        Tok::Or => "OR",
        Tok::And => "AND",
        Tok::Not => "NOT",
        Tok::In => "in",
        Tok::LBrace => "{",
        Tok::RBrace => "}",
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::Comma => ",",
        Tok::Dot => ".",
        Tok::Arrow => "->",
        Tok::Eq => "=",
        Tok::Ne => "!=",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
        _ => "token",
    }
}
