//! Mergers → [`MergerPlan`] (SPEC §2.5): modules, field rules over group
//! records, Allen relations and the export.

use crate::query::ast::{self, Arg, MItem, Name, Span};
use crate::query::consts::{fold, Const, Folded};
use crate::query::diag::Sink;
use crate::query::plan::{
    AllenOp, AllenRule, CmpOp, FieldRule, GroupSchema, MergeModule, MergeOperand, MergeRule,
    MergerPlan,
};
use crate::query::rules::{unknown_function, Taint};
use crate::query::suggest::did_you_mean;
use crate::query::typeck::{check_cmp, Kind};

/// What the merger needs to know about each branch of the query.
pub struct BranchInfo<'a> {
    pub name: &'a str,
    pub schema: &'a GroupSchema,
    pub grouper: Option<&'a str>,
    /// What the branch's grouper's errors hide (not reported again).
    pub taint: &'a Taint,
}

const ALLEN_OPS: &[(&str, AllenOp)] = &[
    ("m", AllenOp::Meets),
    ("mi", AllenOp::MetBy),
    ("o", AllenOp::Overlaps),
    ("oi", AllenOp::OverlappedBy),
    ("s", AllenOp::Starts),
    ("si", AllenOp::StartedBy),
    ("d", AllenOp::During),
    ("di", AllenOp::Contains),
    ("f", AllenOp::Finishes),
    ("fi", AllenOp::FinishedBy),
    ("eq", AllenOp::Equals),
];

const ALLEN_HELP: &str = "Allen relations: < > = m mi o oi s si d di f fi eq";

/// One module before compilation.
struct RawModule<'a> {
    name: &'a Name,
    branches: Option<&'a [Name]>,
    rules: Vec<&'a ast::Rule>,
}

pub fn compile_merger(
    name: &Name,
    items: &[MItem],
    branches: &[BranchInfo<'_>],
    sink: &mut Sink<'_>,
) -> Option<MergerPlan> {
    let before = sink.count();
    let (raw, exports) = split_items(name, items, sink);
    let mut modules = Vec::new();
    for (i, m) in raw.iter().enumerate() {
        if raw[..i].iter().any(|o| o.name.text == m.name.text) {
            sink.error(m.name.span, format!("duplicate module '{}'", m.name.text));
        }
        if let Some(module) = compile_module(m, branches, sink) {
            modules.push(module);
        }
    }
    let export = export_index(name, &raw, &exports, sink);
    if let Some(e) = export {
        check_difference_modules(&raw, e, branches, sink);
    }
    if sink.count() > before {
        return None;
    }
    Some(MergerPlan {
        name: name.text.clone(),
        modules,
        export: export?,
    })
}

/// Modules (or the shorthand's implicit module) and `export` names.
fn split_items<'a>(
    name: &'a Name,
    items: &'a [MItem],
    sink: &mut Sink<'_>,
) -> (Vec<RawModule<'a>>, Vec<&'a Name>) {
    let mut modules = Vec::new();
    let mut exports = Vec::new();
    let mut shorthand = RawModule {
        name,
        branches: None,
        rules: Vec::new(),
    };
    let mut shorthand_used: Option<Span> = None;
    for item in items {
        match item {
            MItem::Module(n, body) => modules.push(module_body(n, body, sink)),
            MItem::Export(n) => exports.push(n),
            MItem::Branches(b, span) => {
                if shorthand.branches.is_some() {
                    sink.error(*span, "'branches' given twice");
                }
                shorthand.branches = Some(b);
                shorthand_used.get_or_insert(*span);
            }
            MItem::Rule(r) => {
                shorthand_used.get_or_insert(r.span());
                shorthand.rules.push(r);
            }
        }
    }
    match (shorthand_used, modules.is_empty()) {
        (Some(span), false) => {
            sink.error_help(
                span,
                "rules outside a module in a merger with modules",
                Some("put 'branches' and rules inside 'module NAME { ... }'".into()),
            );
        }
        (_, true) => {
            if shorthand.branches.is_none() {
                sink.error_help(
                    name.span,
                    format!("merger '{}' declares no branches", name.text),
                    Some("write 'branches A, B' or 'module m1 { branches A, B ... }'".into()),
                );
            }
            if let Some(e) = exports.first() {
                sink.error(
                    e.span,
                    "'export' needs modules; the shorthand merger exports itself",
                );
            }
            modules.push(shorthand);
            exports.clear();
        }
        (None, false) => {}
    }
    (modules, exports)
}

fn module_body<'a>(name: &'a Name, body: &'a [MItem], sink: &mut Sink<'_>) -> RawModule<'a> {
    let mut m = RawModule {
        name,
        branches: None,
        rules: Vec::new(),
    };
    for item in body {
        match item {
            MItem::Branches(b, span) => {
                if m.branches.is_some() {
                    sink.error(*span, "'branches' given twice");
                }
                m.branches = Some(b);
            }
            MItem::Rule(r) => m.rules.push(r),
            MItem::Module(n, _) => sink.error(n.span, "modules cannot be nested"),
            MItem::Export(n) => sink.error(n.span, "'export' belongs to the merger, not a module"),
        }
    }
    if m.branches.is_none() {
        sink.error_help(
            name.span,
            format!("module '{}' declares no branches", name.text),
            Some("add 'branches A, B'".into()),
        );
    }
    m
}

fn export_index(
    name: &Name,
    raw: &[RawModule<'_>],
    exports: &[&Name],
    sink: &mut Sink<'_>,
) -> Option<usize> {
    if raw.len() == 1 && exports.is_empty() {
        return Some(0);
    }
    let Some(e) = exports.first() else {
        sink.error_help(
            name.span,
            format!("merger '{}' has several modules but no 'export'", name.text),
            Some("add 'export NAME' naming the output module".into()),
        );
        return None;
    };
    for extra in &exports[1..] {
        sink.error(extra.span, "a merger has one 'export'");
    }
    let idx = raw.iter().position(|m| m.name.text == e.text);
    if idx.is_none() {
        sink.error_help(
            e.span,
            format!("export names no module: '{}'", e.text),
            did_you_mean(&e.text, raw.iter().map(|m| m.name.text.as_str())),
        );
    }
    idx
}

/// A difference module removes a tuple of the exported module only through
/// a shared branch (SPEC §2.5); one without any can never apply.
fn check_difference_modules(
    raw: &[RawModule<'_>],
    export: usize,
    branches: &[BranchInfo<'_>],
    sink: &mut Sink<'_>,
) {
    let names = |m: &RawModule<'_>| -> Vec<String> {
        m.branches
            .unwrap_or(&[])
            .iter()
            .filter(|b| branches.iter().any(|i| i.name == b.text))
            .map(|b| b.text.clone())
            .collect()
    };
    let exported = names(&raw[export]);
    for (i, m) in raw.iter().enumerate() {
        let own = names(m);
        if i != export && !own.is_empty() && !own.iter().any(|b| exported.contains(b)) {
            sink.error_help(
                m.name.span,
                format!(
                    "module '{}' shares no branch with the exported module '{}'",
                    m.name.text, raw[export].name.text
                ),
                Some("a difference module can only remove tuples through a shared branch".into()),
            );
        }
    }
}

/// Branch indexes of a module, in declared order.
fn module_branches(
    m: &RawModule<'_>,
    branches: &[BranchInfo<'_>],
    sink: &mut Sink<'_>,
) -> Vec<usize> {
    let mut out = Vec::new();
    for b in m.branches.unwrap_or(&[]) {
        match branches.iter().position(|i| i.name == b.text) {
            Some(i) if out.contains(&i) => {
                sink.error(b.span, format!("branch '{}' listed twice", b.text));
            }
            Some(i) => out.push(i),
            None => {
                sink.error_help(
                    b.span,
                    format!("unknown branch '{}'", b.text),
                    did_you_mean(&b.text, branches.iter().map(|i| i.name)),
                );
            }
        }
    }
    out
}

fn compile_module(
    m: &RawModule<'_>,
    branches: &[BranchInfo<'_>],
    sink: &mut Sink<'_>,
) -> Option<MergeModule> {
    let idx = module_branches(m, branches, sink);
    let ctx = Ctx {
        module: &m.name.text,
        members: &idx,
        branches,
    };
    let mut rules = Vec::new();
    let mut ok = true;
    for r in &m.rules {
        match ctx.rule(r, sink) {
            Some(r) => rules.push(r),
            None => ok = false,
        }
    }
    ok.then(|| MergeModule {
        name: m.name.text.clone(),
        branches: idx,
        rules,
    })
}

struct Ctx<'a, 'b> {
    module: &'a str,
    members: &'a [usize],
    branches: &'a [BranchInfo<'b>],
}

impl Ctx<'_, '_> {
    fn rule(&self, r: &ast::Rule, sink: &mut Sink<'_>) -> Option<MergeRule> {
        match r {
            ast::Rule::Cmp(c) => self.cmp(c, sink),
            ast::Rule::Allen {
                x, op, y, delta, ..
            } => {
                let found = ALLEN_OPS
                    .iter()
                    .find(|(n, _)| *n == op.text)
                    .map(|(_, o)| *o);
                if found.is_none() {
                    sink.error_help(
                        op.span,
                        format!("unknown Allen relation '{}'", op.text),
                        did_you_mean(&op.text, ALLEN_OPS.iter().map(|(n, _)| *n))
                            .or(Some(ALLEN_HELP.into())),
                    );
                }
                let (xi, yi) = (self.branch(x, sink), self.branch(y, sink));
                Some(allen(xi?, found?, yi?, delta.as_ref()))
            }
            ast::Rule::Or(v) | ast::Rule::And(v) => {
                let parts: Vec<Option<MergeRule>> = v.iter().map(|r| self.rule(r, sink)).collect();
                let parts: Option<Vec<MergeRule>> = parts.into_iter().collect();
                Some(join(parts?, matches!(r, ast::Rule::Or(_))))
            }
            ast::Rule::Not(r, _) => Some(MergeRule::Not(Box::new(self.rule(r, sink)?))),
            ast::Rule::Error => None,
        }
    }

    /// A branch named in this module's rules.
    fn branch(&self, n: &Name, sink: &mut Sink<'_>) -> Option<usize> {
        let idx = self.branches.iter().position(|b| b.name == n.text);
        match idx {
            Some(i) if self.members.contains(&i) => Some(i),
            Some(_) => {
                sink.error_help(
                    n.span,
                    format!("branch '{}' is not in module '{}'", n.text, self.module),
                    Some(format!("add it to the 'branches' of '{}'", self.module)),
                );
                None
            }
            None => {
                let names = self.members.iter().map(|i| self.branches[*i].name);
                sink.error_help(
                    n.span,
                    format!("unknown branch '{}'", n.text),
                    did_you_mean(&n.text, names),
                );
                None
            }
        }
    }

    fn cmp(&self, c: &ast::CmpAst, sink: &mut Sink<'_>) -> Option<MergeRule> {
        if let (Arg::Name(x), Arg::Name(y)) = (&c.lhs, &c.rhs) {
            return self.symbolic_allen(x, c, y, sink);
        }
        let lhs = self.operand(&c.lhs, sink);
        let rhs = self.operand(&c.rhs, sink);
        let ((lhs, lk), (rhs, rk)) = (lhs?, rhs?);
        if let Err((msg, help)) = check_cmp(&lk, c.op, &rk) {
            sink.error_help(c.span, msg, help);
            return None;
        }
        if let Some(d) = &c.delta {
            if lk != Kind::Num || rk != Kind::Num {
                sink.error(d.span, "a delta needs numeric operands on both sides");
                return None;
            }
        }
        Some(MergeRule::Field(FieldRule {
            lhs,
            op: c.op,
            rhs,
            delta: c.delta.map(|d| d.amount),
        }))
    }

    /// `X < Y`, `X > Y`, `X = Y` with bare branch names.
    fn symbolic_allen(
        &self,
        x: &Name,
        c: &ast::CmpAst,
        y: &Name,
        sink: &mut Sink<'_>,
    ) -> Option<MergeRule> {
        let op = match c.op {
            CmpOp::Lt => Some(AllenOp::Before),
            CmpOp::Gt => Some(AllenOp::After),
            CmpOp::Eq => Some(AllenOp::Equals),
            _ => None,
        };
        if op.is_none() {
            sink.error_help(c.op_span, "not an Allen relation", Some(ALLEN_HELP.into()));
        }
        let (xi, yi) = (self.branch(x, sink), self.branch(y, sink));
        Some(allen(xi?, op?, yi?, c.delta.as_ref()))
    }

    fn operand(&self, arg: &Arg, sink: &mut Sink<'_>) -> Option<(MergeOperand, Kind)> {
        match fold(arg, sink) {
            Folded::Const(c, k) => {
                let op = match c {
                    Const::Value(v) => MergeOperand::Lit(v),
                    Const::Prefix(p) => MergeOperand::Prefix(p),
                    Const::Set(s) => MergeOperand::Set(s),
                };
                return Some((op, k));
            }
            Folded::Failed => return None,
            Folded::NotConst => {}
        }
        match arg {
            Arg::Qualified(b, f) => self.field(b, f, sink),
            Arg::Name(n) => {
                let help = if self.branches.iter().any(|b| b.name == n.text) {
                    format!("a branch's field is written '{}.FIELD'", n.text)
                } else {
                    "merger rules name fields as 'BRANCH.field'".into()
                };
                sink.error_help(
                    n.span,
                    format!("expected BRANCH.field, found '{}'", n.text),
                    Some(help),
                );
                None
            }
            Arg::Call(f, ..) => {
                if f.text == "bitAND" || f.text == "bitOR" {
                    sink.error(
                        f.span,
                        format!("{}() is not supported in merger rules", f.text),
                    );
                } else {
                    unknown_function(f, &f.text, sink);
                }
                None
            }
            Arg::Lit(..) | Arg::Set(..) => None,
        }
    }

    fn field(&self, b: &Name, f: &Name, sink: &mut Sink<'_>) -> Option<(MergeOperand, Kind)> {
        let branch = self.branch(b, sink)?;
        let info = &self.branches[branch];
        match info.schema.lookup(&f.text) {
            Some((field, ty)) => Some((MergeOperand::Field { branch, field }, Kind::of_field(ty))),
            None if info.taint.hides(&f.text) => None,
            None => {
                let by = info.grouper.map_or(String::new(), |g| {
                    format!(" (grouper '{g}' does not produce it)")
                });
                let names = info.schema.names.iter().map(|(n, ..)| n.as_str());
                sink.error_help(
                    f.span,
                    format!("unknown field '{}' of branch '{}'{by}", f.text, b.text),
                    did_you_mean(&f.text, names),
                );
                None
            }
        }
    }
}

/// An Allen rule. An explicit `delta 0` is kept as `Some(0)`: on `<`/`>`
/// it makes the relation unsatisfiable, which is what SPEC §2.5 says.
fn allen(x: usize, op: AllenOp, y: usize, delta: Option<&ast::DeltaAst>) -> MergeRule {
    MergeRule::Allen(AllenRule {
        x,
        op,
        y,
        delta: delta.map(|d| d.amount),
    })
}

fn join(parts: Vec<MergeRule>, or: bool) -> MergeRule {
    let mut v = Vec::new();
    for r in parts {
        match (r, or) {
            (MergeRule::Or(inner), true) | (MergeRule::And(inner), false) => v.extend(inner),
            (r, _) => v.push(r),
        }
    }
    if or {
        MergeRule::Or(v)
    } else {
        MergeRule::And(v)
    }
}
