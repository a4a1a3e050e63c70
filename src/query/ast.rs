//! The syntax tree the parser builds. Every node keeps byte offsets so that
//! the compiler can locate each error.

use std::net::IpAddr;

use crate::query::plan::CmpOp;
use crate::value::Prefix;

/// A byte range in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    pub fn to(self, other: Span) -> Span {
        Span::new(self.start, other.end.max(self.start))
    }
}

/// An identifier with its location.
#[derive(Clone, Debug, PartialEq)]
pub struct Name {
    pub text: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Splitter(Name),
    Filter(Name, Vec<Rule>),
    Grouper(Name, Vec<GItem>),
    GroupFilter(Name, Vec<Rule>),
    Merger(Name, Vec<MItem>),
    Ungrouper(Name),
    Wire(Wire),
    /// A statement lost to a syntax error (already reported).
    Error,
}

/// An item of a grouper body.
#[derive(Clone, Debug, PartialEq)]
pub enum GItem {
    Module(Name, Vec<Rule>),
    Aggregate(Vec<Agg>),
}

/// One aggregate: `sum(bytes) as bytes`, `srcip`, `union(g1.srcport) as p`.
#[derive(Clone, Debug, PartialEq)]
pub struct Agg {
    pub arg: Arg,
    pub alias: Option<Name>,
    pub span: Span,
}

/// An item of a merger body (also of a merger module body).
#[derive(Clone, Debug, PartialEq)]
pub enum MItem {
    Module(Name, Vec<MItem>),
    Export(Name),
    Branches(Vec<Name>, Span),
    Rule(Rule),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    Cmp(Box<CmpAst>),
    /// `X op Y [delta D]` with a named Allen operator (`B oi A`).
    Allen {
        x: Name,
        op: Name,
        y: Name,
        delta: Option<DeltaAst>,
        span: Span,
    },
    /// Two or more alternatives.
    Or(Vec<Rule>),
    /// Two or more rules joined by `AND`.
    And(Vec<Rule>),
    Not(Box<Rule>, Span),
    /// A rule lost to a syntax error (already reported).
    Error,
}

impl Rule {
    pub fn span(&self) -> Span {
        match self {
            Rule::Cmp(c) => c.span,
            Rule::Allen { span, .. } | Rule::Not(_, span) => *span,
            Rule::Or(v) | Rule::And(v) => match (v.first(), v.last()) {
                (Some(a), Some(b)) => a.span().to(b.span()),
                _ => Span::default(),
            },
            Rule::Error => Span::default(),
        }
    }
}

/// `lhs op rhs [delta D | rdelta D]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CmpAst {
    pub lhs: Arg,
    pub op: CmpOp,
    pub op_span: Span,
    pub rhs: Arg,
    pub delta: Option<DeltaAst>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeltaAst {
    /// Milliseconds for durations, the bare number otherwise.
    pub amount: u64,
    /// `rdelta` (reference = last-added member) rather than `delta`.
    pub relative: bool,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Name(Name),
    /// `BRANCH.field` or `module.field`.
    Qualified(Name, Name),
    Call(Name, Vec<Arg>, Span),
    Lit(Lit, Span),
    Set(Vec<Arg>, Span),
}

impl Arg {
    pub fn span(&self) -> Span {
        match self {
            Arg::Name(n) => n.span,
            Arg::Qualified(a, b) => a.span.to(b.span),
            Arg::Call(_, _, s) | Arg::Lit(_, s) | Arg::Set(_, s) => *s,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Num(u64),
    Float(f64),
    Dur(u64),
    /// An RFC 3339 time literal, in epoch ms.
    Time(u64),
    Addr(IpAddr),
    Prefix(Prefix),
    Str(String),
    /// A literal that failed to lex (already reported).
    Bad,
}

/// One wiring line: `S branch A -> f -> g -> M`, `"input" -> S`, `M -> U -> "output"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Wire {
    pub head: WireHead,
    pub rest: Vec<WireElem>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum WireHead {
    Elem(WireElem),
    Branch { splitter: Name, branch: Name },
}

#[derive(Clone, Debug, PartialEq)]
pub enum WireElem {
    Stage(Name),
    Quoted(String, Span),
}
