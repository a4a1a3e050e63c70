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
    if let Some(at) = too_complex(&toks) {
        sink.error_help(
            Span::new(at.0, at.1),
            format!(
                "the query nests too deeply: more than {MAX_NESTING} levels of brackets and NOT"
            ),
            Some("split it into several queries".into()),
        );
        return Parsed {
            stmts: Vec::new(),
            complete: false,
        };
    }
    let eof = source.len();
    let starts: Vec<usize> = toks.iter().map(|t| t.0).collect();
    let mut recovered = Vec::new();
    let result = FileParser::new().parse(&mut recovered, toks.into_iter().map(Ok));
    let mut resumed_at: Option<usize> = None;
    for r in recovered {
        let at = token_index(&starts, error_start(&r.error, eof));
        // An error a token or two after the previous recovery point is
        // usually the same mistake seen again: report it once.
        let echo = resumed_at.is_some_and(|p| at <= p + 2);
        if !echo {
            report(&r.error, eof, sink);
        }
        let last_dropped = r.dropped_tokens.last().map(|t| token_index(&starts, t.0));
        resumed_at = Some(last_dropped.unwrap_or(at).max(at));
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

/// Rule trees are built and compiled recursively, one level per `NOT` and
/// per bracket; bounding those bounds the recursion depth, so a hostile
/// file cannot overflow the stack. (OR/AND chains are flat.)
const MAX_NESTING: usize = 256;

fn too_complex(toks: &[(usize, Tok, usize)]) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut nots = 0usize;
    for (l, t, r) in toks {
        match t {
            Tok::LParen | Tok::LBrace => depth += 1,
            Tok::RParen | Tok::RBrace => depth = depth.saturating_sub(1),
            Tok::Not => nots += 1,
            // A run of NOTs ends at the comparison it negates.
            Tok::Eq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge | Tok::In => nots = 0,
            _ => {}
        }
        if depth + nots > MAX_NESTING {
            return Some((*l, *r));
        }
    }
    None
}

fn token_index(starts: &[usize], offset: usize) -> usize {
    starts.partition_point(|s| *s < offset)
}

fn error_start(e: &ParseError<usize, Tok, LexError>, eof: usize) -> usize {
    match e {
        ParseError::InvalidToken { location } => *location,
        ParseError::UnrecognizedEof { .. } => eof,
        ParseError::UnrecognizedToken { token, .. } | ParseError::ExtraToken { token } => token.0,
        ParseError::User { error } => error.start,
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
        // The lexer already reported the bad literal.
        ParseError::UnrecognizedToken {
            token: (_, Tok::Bad, _),
            ..
        } => {}
        ParseError::UnrecognizedToken {
            token: (l, t, r),
            expected,
        } => {
            let statement = matches!(
                t,
                Tok::Splitter
                    | Tok::Filter
                    | Tok::Grouper
                    | Tok::GroupFilter
                    | Tok::Merger
                    | Tok::Ungrouper
            );
            let help = if statement && expected.iter().any(|e| e == "\"}\"") {
                Some("a new statement starts here: is a '}' missing before it?".to_string())
            } else {
                expected_help(expected)
            };
            sink.error_help(
                Span::new(*l, *r),
                format!("unexpected {}", describe(t)),
                help,
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

/// Terminals that all mean "some literal value" to a user.
const VALUE_TERMINALS: &[&str] = &[
    "Num", "Float", "Dur", "Addr", "Prefix", "Str", "Bad", "Func",
];

fn expected_help(expected: &[String]) -> Option<String> {
    let values = expected
        .iter()
        .filter(|t| VALUE_TERMINALS.contains(&t.as_str()))
        .count();
    // Every syntax error lists what was expected: words are borrowed, not
    // built, and joined once.
    let mut words: Vec<Word<'_>> = Vec::new();
    for t in expected {
        let word = if values > 2 && VALUE_TERMINALS.contains(&t.as_str()) {
            Word::Plain("a value")
        } else {
            terminal_words(t)
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    let mut out = String::from("expected ");
    match words.as_slice() {
        [] => return None,
        [one] => one.write(&mut out),
        [init @ .., last] if words.len() <= 8 => {
            join(&mut out, init);
            out.push_str(" or ");
            last.write(&mut out);
        }
        all => {
            out.push_str("one of ");
            join(&mut out, all);
        }
    }
    Some(out)
}

/// A terminal in plain words: a phrase, or a symbol to quote.
#[derive(Clone, Copy, PartialEq)]
enum Word<'a> {
    Plain(&'static str),
    Quoted(&'a str),
}

impl Word<'_> {
    fn write(self, out: &mut String) {
        match self {
            Word::Plain(p) => out.push_str(p),
            Word::Quoted(q) => {
                out.push('\'');
                out.push_str(q);
                out.push('\'');
            }
        }
    }
}

fn join(out: &mut String, words: &[Word<'_>]) {
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        w.write(out);
    }
}

/// A grammar terminal as LALRPOP names it (`"->"`, `Ident`) in plain words.
fn terminal_words(t: &str) -> Word<'_> {
    Word::Plain(match t {
        "Ident" => "a name",
        "Func" => "a function call",
        "Num" => "a number",
        "Float" => "a decimal number",
        "Dur" => "a duration",
        "Time" => "a time",
        "Addr" => "an address",
        "Prefix" => "a prefix",
        "Str" => "a string",
        "Bad" => "a literal",
        quoted => return Word::Quoted(quoted.trim_matches('"')),
    })
}

/// A token as the user wrote it, for "unexpected …" messages.
pub fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("name '{s}'"),
        Tok::Func(s) => format!("function call '{s}('"),
        Tok::Num(n) => format!("number {n}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::Dur(d) => format!("duration {d}ms"),
        Tok::Time(t) => format!("time {}", crate::output::format_time(*t as i64)),
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
