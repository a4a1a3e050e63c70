//! Filter and group-filter rules → [`Rule`] trees. The two differ only in
//! how a name resolves (record field vs group-record field), so the
//! compiler is generic over a [`Resolve`]r.

use crate::query::ast::{self, Arg, Name};
use crate::query::consts::{fold, Const, Folded, RULE_FUNCTIONS};
use crate::query::diag::Sink;
use crate::query::plan::{Cmp, GroupSchema, Operand, Rule};
use crate::query::suggest::{did_you_mean, field_names};
use crate::query::typeck::{check_cmp, Kind};
use crate::record::{Field, FieldType};

/// Aggregate function names, to explain their misuse in rules.
pub const AGG_FUNCTIONS: &[&str] = &[
    "sum", "count", "min", "max", "avg", "union", "bitOR", "bitAND", "first", "last",
];

/// Resolves field names of one kind of stage.
pub trait Resolve {
    type F: Clone;
    /// Resolve a bare name, reporting an error when unknown.
    fn name(&self, n: &Name, sink: &mut Sink<'_>) -> Option<(Self::F, FieldType)>;
    /// Where the stage is, for "X is only allowed in Y" messages.
    fn stage(&self) -> &'static str;
}

/// Record fields (filters).
pub struct RecordFields;

impl Resolve for RecordFields {
    type F = Field;

    fn name(&self, n: &Name, sink: &mut Sink<'_>) -> Option<(Field, FieldType)> {
        match Field::from_name(&n.text) {
            Some(f) => Some((f, f.field_type())),
            None => {
                sink.error_help(
                    n.span,
                    format!("unknown field '{}'", n.text),
                    did_you_mean(&n.text, field_names()),
                );
                None
            }
        }
    }

    fn stage(&self) -> &'static str {
        "filter"
    }
}

/// Group-record fields of one branch's schema (group filters).
pub struct GroupFields<'a> {
    pub schema: &'a GroupSchema,
    /// The grouper that made the schema (for messages), if any.
    pub grouper: Option<&'a str>,
    /// What the grouper's errors hide: those names are not reported again.
    pub taint: &'a Taint,
}

/// Names a stage with errors may have meant to produce. They are missing
/// from its schema because of an error already reported, so a later use of
/// them is not reported again; any other missing name still is (SPEC §2.8:
/// every error of a file).
#[derive(Clone, Debug, Default)]
pub enum Taint {
    #[default]
    Clean,
    Names(Vec<String>),
    /// Nothing is known about the schema (no grouper could be resolved).
    All,
}

impl Taint {
    pub fn hides(&self, name: &str) -> bool {
        match self {
            Taint::Clean => false,
            Taint::Names(names) => names.iter().any(|n| n == name),
            Taint::All => true,
        }
    }
}

impl Resolve for GroupFields<'_> {
    type F = crate::query::plan::GroupField;

    fn name(&self, n: &Name, sink: &mut Sink<'_>) -> Option<(Self::F, FieldType)> {
        if let Some(found) = self.schema.lookup(&n.text) {
            return Some(found);
        }
        if self.taint.hides(&n.text) {
            return None;
        }
        let names = self.schema.names.iter().map(|(s, ..)| s.as_str());
        let mut help = did_you_mean(&n.text, names);
        if help.is_none() && Field::from_name(&n.text).is_some() {
            help = Some(format!(
                "groups carry only keys and aggregates; add e.g. 'aggregate sum({0}) as {0}' to the grouper",
                n.text
            ));
        }
        let by = self.grouper.map_or(String::new(), |g| {
            format!(" (grouper '{g}' does not produce it)")
        });
        sink.error_help(
            n.span,
            format!("unknown group field '{}'{by}", n.text),
            help,
        );
        None
    }

    fn stage(&self) -> &'static str {
        "groupfilter"
    }
}

/// Compile the rule lines of a stage: `And(lines)`, or `True` when empty.
/// `None` when any line has an error (every error is reported).
pub fn compile_lines<R: Resolve>(
    lines: &[ast::Rule],
    res: &R,
    sink: &mut Sink<'_>,
) -> Option<Rule<R::F>> {
    let mut out = Vec::new();
    let mut ok = true;
    for line in lines {
        match compile_rule(line, res, sink) {
            Some(r) => out.push(r),
            None => ok = false,
        }
    }
    match (ok, out.is_empty()) {
        (false, _) => None,
        (true, true) => Some(Rule::True),
        (true, false) => Some(Rule::And(out)),
    }
}

fn compile_rule<R: Resolve>(rule: &ast::Rule, res: &R, sink: &mut Sink<'_>) -> Option<Rule<R::F>> {
    match rule {
        ast::Rule::Cmp(c) => compile_cmp(c, res, sink),
        ast::Rule::Allen { span, x, op, y, .. } => {
            sink.error_help(
                *span,
                format!(
                    "'{} {} {}' is not a comparison; Allen relations are only allowed in a merger",
                    x.text, op.text, y.text
                ),
                Some("a rule is 'field op value' with op one of = != < <= > >= in".into()),
            );
            None
        }
        ast::Rule::Or(v) | ast::Rule::And(v) => {
            let parts: Vec<Option<Rule<R::F>>> =
                v.iter().map(|r| compile_rule(r, res, sink)).collect();
            let parts: Option<Vec<Rule<R::F>>> = parts.into_iter().collect();
            Some(join(parts?, matches!(rule, ast::Rule::Or(_))))
        }
        ast::Rule::Not(r, _) => Some(Rule::Not(Box::new(compile_rule(r, res, sink)?))),
        ast::Rule::Error => None,
    }
}

/// `a OR b OR …` / `a AND b AND …`, flattening parenthesised chains of the
/// same operator.
fn join<F>(parts: Vec<Rule<F>>, or: bool) -> Rule<F> {
    let mut v = Vec::new();
    for r in parts {
        match (r, or) {
            (Rule::Or(inner), true) | (Rule::And(inner), false) => v.extend(inner),
            (r, _) => v.push(r),
        }
    }
    if or {
        Rule::Or(v)
    } else {
        Rule::And(v)
    }
}

fn compile_cmp<R: Resolve>(c: &ast::CmpAst, res: &R, sink: &mut Sink<'_>) -> Option<Rule<R::F>> {
    if let Some(d) = &c.delta {
        sink.error_help(
            d.span,
            format!("'delta' is not allowed in a {}", res.stage()),
            Some("deltas belong to grouper and merger rules".into()),
        );
    }
    let lhs = operand(&c.lhs, res, sink);
    let rhs = operand(&c.rhs, res, sink);
    let ((lhs, lk), (rhs, rk)) = (lhs?, rhs?);
    if let Err((msg, help)) = check_cmp(&lk, c.op, &rk) {
        sink.error_help(c.span, msg, help);
        return None;
    }
    if c.delta.is_some() {
        return None;
    }
    Some(Rule::Cmp(Cmp { lhs, op: c.op, rhs }))
}

fn operand<R: Resolve>(arg: &Arg, res: &R, sink: &mut Sink<'_>) -> Option<(Operand<R::F>, Kind)> {
    match fold(arg, sink) {
        Folded::Const(c, k) => return Some((const_operand(c), k)),
        Folded::Failed => return None,
        Folded::NotConst => {}
    }
    match arg {
        Arg::Name(n) => res
            .name(n, sink)
            .map(|(f, t)| (Operand::Field(f), Kind::of_field(t))),
        Arg::Qualified(a, b) => {
            sink.error_help(
                a.span.to(b.span),
                format!(
                    "qualified name '{}.{}' is not allowed in a {}",
                    a.text,
                    b.text,
                    res.stage()
                ),
                Some("BRANCH.field names are for merger rules".into()),
            );
            None
        }
        Arg::Call(f, args, span) => bit_call(f, args, *span, res, sink),
        Arg::Lit(..) | Arg::Set(..) => None,
    }
}

pub fn const_operand<F>(c: Const) -> Operand<F> {
    match c {
        Const::Value(v) => Operand::Lit(v),
        Const::Prefix(p) => Operand::Prefix(p),
        Const::Set(s) => Operand::Set(s),
    }
}

fn bit_call<R: Resolve>(
    f: &Name,
    args: &[Arg],
    span: ast::Span,
    res: &R,
    sink: &mut Sink<'_>,
) -> Option<(Operand<R::F>, Kind)> {
    let is_and = match f.text.as_str() {
        "bitAND" => true,
        "bitOR" => false,
        other => {
            unknown_function(f, other, sink);
            return None;
        }
    };
    let [a, b] = args else {
        sink.error(span, format!("{}() takes two arguments", f.text));
        return None;
    };
    let (a, b) = (operand(a, res, sink), operand(b, res, sink));
    let ((a, ak), (b, bk)) = (a?, b?);
    for (k, arg) in [(&ak, &args[0]), (&bk, &args[1])] {
        if !matches!(k, Kind::Num | Kind::Unknown) {
            sink.error(
                arg.span(),
                format!("{}() needs numbers, found {}", f.text, k.describe()),
            );
            return None;
        }
    }
    let (a, b) = (Box::new(a), Box::new(b));
    let op = if is_and {
        Operand::BitAnd(a, b)
    } else {
        Operand::BitOr(a, b)
    };
    Some((op, Kind::Num))
}

pub fn unknown_function(f: &Name, name: &str, sink: &mut Sink<'_>) {
    let help = if AGG_FUNCTIONS.contains(&name) {
        Some(format!(
            "'{name}' is an aggregate function: use it in a grouper's 'aggregate' clause"
        ))
    } else {
        did_you_mean(name, RULE_FUNCTIONS.iter().copied())
    };
    sink.error_help(f.span, format!("unknown function '{name}'"), help);
}
