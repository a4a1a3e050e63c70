//! Hand-written lexer for the query language (SPEC §2.1).
//!
//! LALRPOP's built-in lexer cannot express the context rules of the
//! language (`-` inside identifiers unless it starts `->`, durations with a
//! space before the unit, IPv6 literals that start with hex letters), so the
//! whole file is tokenised here first and the token vector is fed to the
//! generated parser. Lexical errors are collected, not fatal: a bad literal
//! becomes a [`Tok::Bad`] token so that parsing (and reporting) continues.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::value::Prefix;

/// A token. Every token is produced with its byte range `(start, end)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Splitter,
    Filter,
    Grouper,
    GroupFilter,
    Merger,
    Ungrouper,
    Module,
    Aggregate,
    As,
    Branches,
    Branch,
    Export,
    Delta,
    RDelta,
    Or,
    And,
    Not,
    In,
    Ident(String),
    /// An identifier directly followed by `(`: a function call.
    Func(String),
    Num(u64),
    Float(f64),
    /// A duration literal in milliseconds.
    Dur(u64),
    /// An RFC 3339 time literal (`2012-04-30T07:51:00Z`), epoch ms.
    Time(u64),
    Addr(IpAddr),
    Prefix(Prefix),
    Str(String),
    /// A literal that failed to lex; the error is already recorded.
    Bad,
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Dot,
    Arrow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A lexical error at a byte range.
#[derive(Clone, Debug, PartialEq)]
pub struct LexError {
    pub start: usize,
    pub end: usize,
    pub message: String,
}

impl std::fmt::Display for LexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// `(start, token, end)`, the triple LALRPOP expects from an external lexer.
pub type Spanned = (usize, Tok, usize);

/// Tokenise a whole source file.
pub fn lex(src: &str) -> (Vec<Spanned>, Vec<LexError>) {
    let mut lx = Lexer {
        src,
        bytes: src.as_bytes(),
        pos: 0,
        toks: Vec::new(),
        errors: Vec::new(),
    };
    lx.run();
    (lx.toks, lx.errors)
}

/// Multipliers of the duration units, in ms.
const UNITS: &[(&str, u64)] = &[
    ("ms", 1),
    ("msec", 1),
    ("s", 1000),
    ("sec", 1000),
    ("secs", 1000),
    ("second", 1000),
    ("seconds", 1000),
    ("min", 60_000),
    ("mins", 60_000),
    ("minute", 60_000),
    ("minutes", 60_000),
    ("h", 3_600_000),
    ("hour", 3_600_000),
    ("hours", 3_600_000),
];

fn keyword(word: &str) -> Option<Tok> {
    Some(match word {
        "splitter" => Tok::Splitter,
        "filter" => Tok::Filter,
        "grouper" => Tok::Grouper,
        "groupfilter" => Tok::GroupFilter,
        "merger" => Tok::Merger,
        "ungrouper" | "ungroup" => Tok::Ungrouper,
        "module" => Tok::Module,
        "aggregate" => Tok::Aggregate,
        "as" => Tok::As,
        "branches" => Tok::Branches,
        "branch" | "br" => Tok::Branch,
        "export" => Tok::Export,
        "delta" => Tok::Delta,
        "rdelta" => Tok::RDelta,
        "OR" => Tok::Or,
        "AND" => Tok::And,
        "NOT" => Tok::Not,
        "in" => Tok::In,
        _ => return None,
    })
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_addr_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    toks: Vec<Spanned>,
    errors: Vec<LexError>,
}

impl Lexer<'_> {
    fn peek(&self, off: usize) -> Option<u8> {
        self.bytes.get(self.pos + off).copied()
    }

    fn push(&mut self, start: usize, tok: Tok) {
        self.toks.push((start, tok, self.pos));
    }

    fn error(&mut self, start: usize, end: usize, message: impl Into<String>) {
        self.errors.push(LexError {
            start,
            end,
            message: message.into(),
        });
    }

    fn run(&mut self) {
        while let Some(b) = self.peek(0) {
            let start = self.pos;
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'#' => self.skip_comment(),
                b'"' => self.string(),
                b'0'..=b'9' => self.number(),
                b':' => self.address_or_bad(),
                _ if is_ident_start(b) => self.word(),
                _ => self.punct(start, b),
            }
        }
    }

    fn skip_comment(&mut self) {
        while let Some(b) = self.peek(0) {
            if b == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    fn punct(&mut self, start: usize, b: u8) {
        let two = self.peek(1);
        let (tok, len) = match (b, two) {
            (b'-', Some(b'>')) => (Tok::Arrow, 2),
            (b'!', Some(b'=')) => (Tok::Ne, 2),
            (b'<', Some(b'=')) => (Tok::Le, 2),
            (b'>', Some(b'=')) => (Tok::Ge, 2),
            (b'=', Some(b'=')) => (Tok::Eq, 2),
            (b'=', _) => (Tok::Eq, 1),
            (b'<', _) => (Tok::Lt, 1),
            (b'>', _) => (Tok::Gt, 1),
            (b'{', _) => (Tok::LBrace, 1),
            (b'}', _) => (Tok::RBrace, 1),
            (b'(', _) => (Tok::LParen, 1),
            (b')', _) => (Tok::RParen, 1),
            (b',', _) => (Tok::Comma, 1),
            (b'.', _) => (Tok::Dot, 1),
            _ => {
                let ch = self.src[start..].chars().next().unwrap_or('?');
                self.pos += ch.len_utf8();
                self.error(start, self.pos, format!("unexpected character '{ch}'"));
                return;
            }
        };
        self.pos += len;
        self.push(start, tok);
    }

    fn string(&mut self) {
        let start = self.pos;
        self.pos += 1;
        let mut text = String::new();
        loop {
            let rest = &self.src[self.pos..];
            let mut chars = rest.chars();
            match chars.next() {
                None | Some('\n') => {
                    self.error(start, self.pos, "unterminated string");
                    self.push(start, Tok::Bad);
                    return;
                }
                Some('"') => {
                    self.pos += 1;
                    self.push(start, Tok::Str(text));
                    return;
                }
                Some('\\') => match chars.next() {
                    Some(esc) if esc != '\n' => {
                        text.push(esc);
                        self.pos += 1 + esc.len_utf8();
                    }
                    // A backslash at the end of the line or file: let the
                    // next turn report the string as unterminated.
                    _ => self.pos += 1,
                },
                Some(c) => {
                    text.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    /// Length of the run of bytes from `pos` satisfying `pred`.
    fn run_len(&self, pred: impl Fn(u8) -> bool) -> usize {
        self.bytes[self.pos..]
            .iter()
            .take_while(|b| pred(**b))
            .count()
    }

    fn word(&mut self) {
        if self.try_ipv6() {
            return;
        }
        let start = self.pos;
        while let Some(b) = self.peek(0) {
            let arrow = b == b'-' && self.peek(1) == Some(b'>');
            if !is_ident_char(b) || arrow {
                break;
            }
            self.pos += 1;
        }
        let word = &self.src[start..self.pos];
        let tok = match keyword(word) {
            Some(k) => k,
            None if self.call_follows() => Tok::Func(word.to_string()),
            None => Tok::Ident(word.to_string()),
        };
        self.push(start, tok);
    }

    /// An identifier followed (on the same line) by `(` names a function:
    /// this keeps `x = y (a = b)` from being ambiguous in the grammar.
    fn call_follows(&self) -> bool {
        self.bytes[self.pos..]
            .iter()
            .find(|b| **b != b' ' && **b != b'\t')
            == Some(&b'(')
    }

    /// IPv6 literals may start with hex letters (`fe80::1`) or `::`.
    fn try_ipv6(&mut self) -> bool {
        let len = self.run_len(is_addr_char);
        let text = &self.src[self.pos..self.pos + len];
        if !text.contains(':') {
            return false;
        }
        let next_is_ident = self
            .bytes
            .get(self.pos + len)
            .is_some_and(|b| is_ident_char(*b) && *b != b'-');
        if next_is_ident {
            return false;
        }
        match text.parse::<Ipv6Addr>() {
            Ok(a) => {
                let start = self.pos;
                self.pos += len;
                self.address_tail(start, IpAddr::V6(a));
                true
            }
            Err(_) => false,
        }
    }

    fn address_or_bad(&mut self) {
        if self.try_ipv6() {
            return;
        }
        let start = self.pos;
        self.pos += self.run_len(is_addr_char).max(1);
        self.error(start, self.pos, "invalid IPv6 address");
        self.push(start, Tok::Bad);
    }

    /// After an address: an optional `/len` makes it a prefix.
    fn address_tail(&mut self, start: usize, addr: IpAddr) {
        if self.peek(0) != Some(b'/') {
            self.push(start, Tok::Addr(addr));
            return;
        }
        self.pos += 1;
        let digits = self.run_len(|b| b.is_ascii_digit());
        let len_text = &self.src[self.pos..self.pos + digits];
        self.pos += digits;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        match len_text.parse::<u8>() {
            Ok(len) if len <= max => {
                self.push(start, Tok::Prefix(Prefix { addr, len }));
            }
            _ => {
                let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
                self.error(
                    start,
                    self.pos,
                    format!(
                        "invalid prefix length '{len_text}' for an {family} prefix (0..={max})"
                    ),
                );
                self.push(start, Tok::Bad);
            }
        }
    }

    fn number(&mut self) {
        let start = self.pos;
        if self.time_follows() {
            self.time(start);
            return;
        }
        if self.peek(0) == Some(b'0') && matches!(self.peek(1), Some(b'x' | b'X')) {
            self.hex(start);
            return;
        }
        if self.try_ipv6() {
            return;
        }
        let len = self.run_len(|b| b.is_ascii_digit() || b == b'.');
        let text = &self.src[start..start + len];
        self.pos += len;
        match text.matches('.').count() {
            0 => self.decimal(start, text),
            1 => match text.parse::<f64>() {
                Ok(f) => self.push(start, Tok::Float(f)),
                Err(_) => self.bad(start, format!("invalid number '{text}'")),
            },
            _ => match text.parse::<Ipv4Addr>() {
                Ok(a) => self.address_tail(start, IpAddr::V4(a)),
                Err(_) => self.bad(start, format!("invalid IPv4 address '{text}'")),
            },
        }
    }

    /// `YYYY-MM-DDT` starts a time literal.
    fn time_follows(&self) -> bool {
        let b = &self.bytes[self.pos..];
        b.len() > 10
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && b[5..7].iter().all(u8::is_ascii_digit)
            && b[7] == b'-'
            && b[8..10].iter().all(u8::is_ascii_digit)
            && matches!(b[10], b'T' | b't')
    }

    fn time(&mut self, start: usize) {
        use time::format_description::well_known::Rfc3339;
        let len = self.run_len(|b| {
            b.is_ascii_digit() || matches!(b, b'-' | b':' | b'.' | b'+' | b'T' | b't' | b'Z' | b'z')
        });
        let text = &self.src[start..start + len];
        self.pos += len;
        let parsed = time::OffsetDateTime::parse(text, &Rfc3339);
        let ms = parsed
            .ok()
            .and_then(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok());
        match ms {
            Some(ms) => self.push(start, Tok::Time(ms)),
            None => self.bad(
                start,
                format!(
                    "invalid time '{text}' (RFC 3339 with an offset, e.g. 2012-04-30T07:51:00Z, not before 1970)"
                ),
            ),
        }
    }

    fn bad(&mut self, start: usize, message: String) {
        self.error(start, self.pos, message);
        self.push(start, Tok::Bad);
    }

    fn hex(&mut self, start: usize) {
        self.pos += 2;
        let len = self.run_len(|b| b.is_ascii_hexdigit());
        let text = &self.src[self.pos..self.pos + len];
        self.pos += len;
        match u64::from_str_radix(text, 16) {
            Ok(n) => self.push(start, Tok::Num(n)),
            Err(_) => self.bad(start, format!("invalid hex number '0x{text}'")),
        }
    }

    fn decimal(&mut self, start: usize, text: &str) {
        let Ok(n) = text.parse::<u64>() else {
            self.bad(start, format!("number '{text}' is too large"));
            return;
        };
        match self.unit() {
            Some(mult) => match n.checked_mul(mult) {
                Some(ms) => self.push(start, Tok::Dur(ms)),
                None => self.bad(start, "duration is too large".to_string()),
            },
            None if self.peek(0).is_some_and(is_ident_start) => {
                let junk = self.run_len(is_ident_char);
                self.pos += junk;
                let word = self.src[start..self.pos].to_string();
                self.bad(
                    start,
                    format!("invalid number '{word}' (duration units: ms, s, sec, min, h)"),
                );
            }
            None => self.push(start, Tok::Num(n)),
        }
    }

    /// A duration unit right after a number, possibly after spaces on the
    /// same line (`1 sec`). Consumes it and returns its multiplier.
    fn unit(&mut self) -> Option<u64> {
        let gap = self.run_len(|b| b == b' ' || b == b'\t');
        let word_start = self.pos + gap;
        let word_len = self.bytes[word_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let word = &self.src[word_start..word_start + word_len];
        let boundary = !self
            .bytes
            .get(word_start + word_len)
            .is_some_and(|b| is_ident_char(*b) && *b != b'-');
        let mult = UNITS.iter().find(|(u, _)| *u == word).map(|(_, m)| *m)?;
        if !boundary {
            return None;
        }
        self.pos = word_start + word_len;
        Some(mult)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        let (t, e) = lex(src);
        assert!(e.is_empty(), "lex errors: {e:?}");
        t.into_iter().map(|(_, t, _)| t).collect()
    }

    #[test]
    fn hyphenated_identifier_stops_before_arrow() {
        assert_eq!(
            toks("f-mDNS->g"),
            vec![
                Tok::Ident("f-mDNS".into()),
                Tok::Arrow,
                Tok::Ident("g".into())
            ]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(toks("1 sec"), vec![Tok::Dur(1000)]);
        assert_eq!(toks("1440min"), vec![Tok::Dur(86_400_000)]);
        assert_eq!(
            toks("500ms 2h 1s"),
            vec![Tok::Dur(500), Tok::Dur(7_200_000), Tok::Dur(1000)]
        );
        assert_eq!(toks("1\nsec"), vec![Tok::Num(1), Tok::Ident("sec".into())]);
    }

    #[test]
    fn addresses_and_prefixes() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(toks("2001:db8::1"), vec![Tok::Addr(v6)]);
        let lo: IpAddr = "::1".parse().unwrap();
        assert_eq!(toks("::1"), vec![Tok::Addr(lo)]);
        let fe: IpAddr = "fe80::".parse().unwrap();
        assert_eq!(
            toks("fe80::/10"),
            vec![Tok::Prefix(Prefix { addr: fe, len: 10 })]
        );
        let net: IpAddr = "10.0.0.0".parse().unwrap();
        assert_eq!(
            toks("10.0.0.0/8"),
            vec![Tok::Prefix(Prefix { addr: net, len: 8 })]
        );
    }

    #[test]
    fn numbers_functions_and_sets() {
        assert_eq!(
            toks("bitAND(x, 0x13) in {80}"),
            vec![
                Tok::Func("bitAND".into()),
                Tok::LParen,
                Tok::Ident("x".into()),
                Tok::Comma,
                Tok::Num(19),
                Tok::RParen,
                Tok::In,
                Tok::LBrace,
                Tok::Num(80),
                Tok::RBrace
            ]
        );
    }

    #[test]
    fn backslash_at_end_of_input_is_an_unterminated_string() {
        let (t, e) = lex("\"abc\\");
        assert_eq!(t, vec![(0, Tok::Bad, 5)]);
        assert_eq!(e[0].message, "unterminated string");
    }

    #[test]
    fn bad_literals_are_reported_not_fatal() {
        let (t, e) = lex("x = 10.0.0 y = 1.2.3.4/40 $");
        assert_eq!(e.len(), 3);
        assert!(t.contains(&(4, Tok::Bad, 10)));
    }
}
