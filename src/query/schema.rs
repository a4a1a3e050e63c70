//! Groupers → [`GrouperPlan`] and the group-record schema they produce
//! (SPEC §1.2, §2.4).

use std::sync::{Arc, LazyLock};

use crate::query::ast::{self, Agg, Arg, GItem, Name};
use crate::query::diag::Sink;
use crate::query::plan::{
    AggFunc, AggregatePlan, CmpOp, Delta, GroupField, GroupRule, GroupSchema, GrouperPlan,
    ModulePlan, Reference,
};
use crate::query::rules::{Taint, AGG_FUNCTIONS};
use crate::query::suggest::{did_you_mean, field_names};
use crate::query::typeck::{check_cmp, Kind};
use crate::record::{Field, FieldType, CANONICAL};

/// A compiled grouper and the schema of its groups.
pub struct CompiledGrouper {
    pub plan: Arc<GrouperPlan>,
    pub schema: Arc<GroupSchema>,
    /// Not `Clean` when the grouper had errors: the plan and schema are a
    /// best effort, and the names its source mentions are not reported again.
    pub taint: Taint,
}

/// The implicit fields every group record has: the interval (under every
/// name of `stime`, `etime` and `duration`, so `First`/`td` work too) and
/// `count`.
fn implicit_names() -> Vec<(String, GroupField, FieldType)> {
    static IMPLICIT: LazyLock<Vec<(String, GroupField, FieldType)>> = LazyLock::new(|| {
        let interval = [
            (Field::Stime, GroupField::Stime),
            (Field::Etime, GroupField::Etime),
            (Field::Duration, GroupField::Duration),
        ];
        let mut names: Vec<(String, GroupField, FieldType)> = interval
            .iter()
            .flat_map(|(f, g)| {
                names_of(*f)
                    .into_iter()
                    .map(move |n| (n.to_string(), *g, f.field_type()))
            })
            .collect();
        names.push(("count".into(), GroupField::Count, FieldType::Uint));
        names
    });
    IMPLICIT.clone()
}

/// Canonical name and aliases of a field.
fn names_of(field: Field) -> Vec<&'static str> {
    CANONICAL.iter().find(|(f, ..)| *f == field).map_or_else(
        || vec![field.name()],
        |(_, n, _, aliases)| std::iter::once(*n).chain(aliases.iter().copied()).collect(),
    )
}

/// The schema of a branch whose groups are single records. Built once: every
/// branch without a grouper shares it.
pub fn singleton_schema() -> Arc<GroupSchema> {
    static SINGLETON: LazyLock<Arc<GroupSchema>> = LazyLock::new(|| {
        let mut names = implicit_names();
        add_record_fields(&mut names);
        Arc::new(GroupSchema {
            names,
            slots: 0,
            slot_names: Vec::new(),
            singleton: true,
        })
    });
    SINGLETON.clone()
}

/// Every record field name (first occurrence only) with its field and type.
static RECORD_NAMES: LazyLock<Vec<(&'static str, Field, FieldType)>> = LazyLock::new(|| {
    let mut out: Vec<(&'static str, Field, FieldType)> = Vec::new();
    for n in Field::all_names() {
        if out.iter().any(|(m, ..)| *m == n) {
            continue;
        }
        if let Some(f) = Field::from_name(n) {
            out.push((n, f, f.field_type()));
        }
    }
    out
});

/// Add every record field name not already in `names`.
fn add_record_fields(names: &mut Vec<(String, GroupField, FieldType)>) {
    // RECORD_NAMES has no repeats, so only the names present before this
    // call can hide one.
    let existing = names.len();
    names.reserve(RECORD_NAMES.len());
    for (n, f, t) in RECORD_NAMES.iter() {
        if !names[..existing].iter().any(|(m, ..)| m == n) {
            names.push(((*n).to_string(), GroupField::Record(*f), *t));
        }
    }
}

pub fn compile_grouper(name: &Name, items: &[GItem], sink: &mut Sink<'_>) -> CompiledGrouper {
    let before = sink.count();
    let modules = modules(items, sink);
    let keys = keys(&modules);
    let mut schema = GroupSchema {
        names: implicit_names(),
        slots: 0,
        slot_names: Vec::new(),
        singleton: modules.is_empty(),
    };
    for k in &keys {
        add_slot(&mut schema, k.name(), &names_of(*k), k.field_type());
    }
    let mut aggregates = Vec::new();
    for item in items {
        if let GItem::Aggregate(aggs) = item {
            for a in aggs {
                if let Some(p) = aggregate(a, &modules, &keys, &mut schema, sink) {
                    aggregates.push(p);
                }
            }
        }
    }
    if schema.singleton {
        add_record_fields(&mut schema.names);
    }
    let taint = if sink.count() == before {
        Taint::Clean
    } else {
        mentioned_names(items)
    };
    let plan = GrouperPlan {
        name: name.text.clone(),
        modules,
        keys,
        aggregates,
    };
    CompiledGrouper {
        plan: Arc::new(plan),
        schema: Arc::new(schema),
        taint,
    }
}

/// Every name a grouper's rules and aggregates mention: what it may have
/// meant to produce where an error stopped it. A rule that is not a plain
/// comparison (a syntax error, `OR`) hides what it meant: then nothing is
/// reported again.
fn mentioned_names(items: &[GItem]) -> Taint {
    let mut out = Vec::new();
    let arg = |a: &Arg, out: &mut Vec<String>| match a {
        Arg::Name(n) | Arg::Qualified(_, n) => out.push(n.text.clone()),
        Arg::Call(_, args, _) => out.extend(args.iter().filter_map(|x| match x {
            Arg::Name(n) | Arg::Qualified(_, n) => Some(n.text.clone()),
            _ => None,
        })),
        _ => {}
    };
    for item in items {
        match item {
            GItem::Module(_, rules) => {
                for r in rules {
                    let ast::Rule::Cmp(c) = r else {
                        return Taint::All;
                    };
                    arg(&c.lhs, &mut out);
                    arg(&c.rhs, &mut out);
                }
            }
            GItem::Aggregate(aggs) => {
                for a in aggs {
                    arg(&a.arg, &mut out);
                    out.extend(a.alias.as_ref().map(|n| n.text.clone()));
                }
            }
        }
    }
    Taint::Names(out)
}

fn add_slot(schema: &mut GroupSchema, out_name: &str, names: &[&str], ty: FieldType) {
    let slot = GroupField::Slot(schema.slots);
    for n in names {
        if schema.lookup(n).is_none() {
            schema.names.push((n.to_string(), slot, ty));
        }
    }
    schema.slots += 1;
    schema.slot_names.push(out_name.to_string());
}

fn modules(items: &[GItem], sink: &mut Sink<'_>) -> Vec<ModulePlan> {
    let mut out: Vec<ModulePlan> = Vec::new();
    let mut seen: Vec<&Name> = Vec::new();
    for item in items {
        let GItem::Module(name, rules) = item else {
            continue;
        };
        if seen.iter().any(|n| n.text == name.text) {
            sink.error(name.span, format!("duplicate module '{}'", name.text));
        }
        seen.push(name);
        let rules = rules.iter().filter_map(|r| group_rule(r, sink)).collect();
        out.push(ModulePlan {
            name: name.text.clone(),
            rules,
        });
    }
    out
}

const GRULE_HELP: &str = "a grouper rule is 'x op y [delta D | rdelta D]' with x, y record fields";

fn group_rule(rule: &ast::Rule, sink: &mut Sink<'_>) -> Option<GroupRule> {
    let c = match rule {
        ast::Rule::Cmp(c) => c,
        ast::Rule::Error => return None,
        other => {
            sink.error_help(
                other.span(),
                "grouper rules cannot use OR, AND, NOT or Allen relations",
                Some("alternatives are written as separate modules".into()),
            );
            return None;
        }
    };
    let left = rule_field(&c.lhs, sink);
    let right = rule_field(&c.rhs, sink);
    let (left, right) = (left?, right?);
    if c.op == CmpOp::In {
        sink.error_help(
            c.op_span,
            "'in' is not allowed in a grouper rule",
            Some(GRULE_HELP.into()),
        );
        return None;
    }
    let (lk, rk) = (
        Kind::of_field(left.field_type()),
        Kind::of_field(right.field_type()),
    );
    if let Err((msg, help)) = check_cmp(&lk, c.op, &rk) {
        sink.error_help(c.span, msg, help);
        return None;
    }
    let delta = c.delta.map(|d| Delta {
        amount: d.amount,
        reference: if d.relative {
            Reference::Last
        } else {
            Reference::First
        },
    });
    if let Some(d) = &c.delta {
        for (f, arg) in [(left, &c.lhs), (right, &c.rhs)] {
            if !f.field_type().is_numeric() {
                sink.error(
                    d.span,
                    format!(
                        "a delta needs numeric fields, but '{}' is {}",
                        arg_text(arg),
                        Kind::of_field(f.field_type()).describe()
                    ),
                );
                return None;
            }
        }
    }
    Some(GroupRule {
        left,
        op: c.op,
        right,
        delta,
    })
}

fn arg_text(a: &Arg) -> String {
    match a {
        Arg::Name(n) => n.text.clone(),
        Arg::Qualified(a, b) => format!("{}.{}", a.text, b.text),
        _ => "operand".into(),
    }
}

fn rule_field(arg: &Arg, sink: &mut Sink<'_>) -> Option<Field> {
    match arg {
        Arg::Name(n) => record_field(n, sink),
        Arg::Lit(ast::Lit::Bad, _) => None,
        other => {
            sink.error_help(
                other.span(),
                "grouper rules compare two record fields",
                Some(GRULE_HELP.into()),
            );
            None
        }
    }
}

pub fn record_field(n: &Name, sink: &mut Sink<'_>) -> Option<Field> {
    let f = Field::from_name(&n.text);
    if f.is_none() {
        sink.error_help(
            n.span,
            format!("unknown field '{}'", n.text),
            did_you_mean(&n.text, field_names()),
        );
    }
    f
}

/// Fields with a plain `x = x` rule in every module, in first-module order.
fn keys(modules: &[ModulePlan]) -> Vec<Field> {
    let is_key = |m: &ModulePlan, f: Field| {
        m.rules
            .iter()
            .any(|r| r.left == f && r.right == f && r.op == CmpOp::Eq && r.delta.is_none())
    };
    let Some(first) = modules.first() else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for r in &first.rules {
        let f = r.left;
        // The interval fields are implicit group fields already.
        let implicit = matches!(f, Field::Stime | Field::Etime | Field::Duration);
        if !implicit && !keys.contains(&f) && modules.iter().all(|m| is_key(m, f)) {
            keys.push(f);
        }
    }
    keys
}

fn agg_func(name: &str) -> Option<AggFunc> {
    Some(match name {
        "sum" => AggFunc::Sum,
        "count" => AggFunc::Count,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        "avg" => AggFunc::Avg,
        "union" => AggFunc::Union,
        "bitOR" => AggFunc::BitOr,
        "bitAND" => AggFunc::BitAnd,
        "first" => AggFunc::First,
        "last" => AggFunc::Last,
        _ => return None,
    })
}

fn agg_type(func: AggFunc, t: FieldType) -> FieldType {
    match func {
        AggFunc::Count | AggFunc::BitOr | AggFunc::BitAnd => FieldType::Uint,
        AggFunc::Avg => FieldType::Float,
        AggFunc::Union => t.set_of(),
        AggFunc::Sum
        | AggFunc::Min
        | AggFunc::Max
        | AggFunc::First
        | AggFunc::Last
        | AggFunc::Plain => t,
    }
}

fn aggregate(
    a: &Agg,
    modules: &[ModulePlan],
    keys: &[Field],
    schema: &mut GroupSchema,
    sink: &mut Sink<'_>,
) -> Option<AggregatePlan> {
    let (func, field, module) = agg_target(&a.arg, modules, sink)?;
    let numeric_only = matches!(
        func,
        AggFunc::Sum | AggFunc::Avg | AggFunc::BitOr | AggFunc::BitAnd
    );
    if numeric_only && !field.field_type().is_numeric() {
        sink.error(
            a.arg.span(),
            format!(
                "cannot aggregate '{}' ({}) with a numeric function",
                field.name(),
                Kind::of_field(field.field_type()).describe()
            ),
        );
        return None;
    }
    let name = a
        .alias
        .as_ref()
        .map_or_else(|| field.name().to_string(), |n| n.text.clone());
    let plain_key = func == AggFunc::Plain && module.is_none() && keys.contains(&field);
    if plain_key && name == field.name() {
        // Already a key: the same value (the first member's) in its own slot.
        return None;
    }
    if let Some((_, existing, _)) = schema.names.iter().find(|(n, ..)| *n == name) {
        let plain = func == AggFunc::Plain && a.alias.is_none() && module.is_none();
        if plain && !matches!(existing, GroupField::Slot(_)) {
            // `aggregate srcip, td` (the seed's IPv6 listing) names the
            // implicit field itself (SPEC §1.2): nothing to add.
            return None;
        }
        let what = match existing {
            GroupField::Slot(_) => "another key or aggregate",
            _ => "an implicit group field",
        };
        let span = a.alias.as_ref().map_or(a.span, |n| n.span);
        sink.error_help(
            span,
            format!("aggregate name '{name}' is already used by {what}"),
            Some("give it another name with 'as NAME'".into()),
        );
        return None;
    }
    let names: Vec<&str> = if a.alias.is_none() && func == AggFunc::Plain {
        names_of(field)
    } else {
        vec![name.as_str()]
    };
    add_slot(schema, &name, &names, agg_type(func, field.field_type()));
    Some(AggregatePlan {
        name,
        func,
        field,
        module,
    })
}

fn agg_target(
    arg: &Arg,
    modules: &[ModulePlan],
    sink: &mut Sink<'_>,
) -> Option<(AggFunc, Field, Option<usize>)> {
    match arg {
        Arg::Name(n) => Some((AggFunc::Plain, record_field(n, sink)?, None)),
        Arg::Call(f, args, span) => {
            let func = agg_func(&f.text);
            if func.is_none() {
                sink.error_help(
                    f.span,
                    format!("unknown aggregate function '{}'", f.text),
                    did_you_mean(&f.text, AGG_FUNCTIONS.iter().copied()),
                );
            }
            let [one] = args.as_slice() else {
                sink.error(*span, format!("{}() takes one field", f.text));
                return None;
            };
            let (field, module) = agg_arg(one, modules, sink)?;
            Some((func?, field, module))
        }
        other => {
            sink.error_help(
                other.span(),
                "expected a field or an aggregate function",
                Some("write e.g. 'aggregate srcip, sum(bytes) as bytes'".into()),
            );
            None
        }
    }
}

fn agg_arg(
    arg: &Arg,
    modules: &[ModulePlan],
    sink: &mut Sink<'_>,
) -> Option<(Field, Option<usize>)> {
    match arg {
        Arg::Name(n) => Some((record_field(n, sink)?, None)),
        Arg::Qualified(m, n) => {
            let idx = modules.iter().position(|p| p.name == m.text);
            if idx.is_none() {
                sink.error_help(
                    m.span,
                    format!("unknown module '{}'", m.text),
                    did_you_mean(&m.text, modules.iter().map(|p| p.name.as_str())),
                );
            }
            let field = record_field(n, sink);
            Some((field?, Some(idx?)))
        }
        other => {
            sink.error(other.span(), "an aggregate takes a field name");
            None
        }
    }
}
