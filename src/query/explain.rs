//! A readable rendering of a compiled plan, for `flowy check`.

use std::fmt::Write;

use crate::query::plan::{
    AggFunc, AggregatePlan, AllenOp, BranchPlan, Cmp, CmpOp, GroupField, GroupRule, GroupSchema,
    MergeOperand, MergeRule, MergerPlan, Operand, Plan, Reference, Rule,
};
use crate::record::{Field, FieldType};
use crate::value::{Value, ValueSet};

pub fn explain(plan: &Plan) -> String {
    let mut out = format!("query {}\n", plan.name);
    for (i, b) in plan.branches.iter().enumerate() {
        branch(&mut out, i, b);
    }
    match &plan.merger {
        Some(m) => merger(&mut out, plan, m),
        None => out.push_str("no merger: every group that passes is a match\n"),
    }
    let _ = writeln!(out, "partition key: {}", plan.partition_key());
    out
}

fn branch(out: &mut String, i: usize, b: &BranchPlan) {
    let _ = writeln!(out, "branch {} (#{i})", b.name);
    match &b.filter {
        Some(f) => {
            let _ = writeln!(
                out,
                "  filter {}: {}",
                f.name,
                rule(&f.rule, &|f: &Field| f.name().to_string())
            );
        }
        None => out.push_str("  filter: none (every record passes)\n"),
    }
    match &b.grouper {
        Some(g) => {
            let _ = writeln!(out, "  grouper {}:", g.name);
            if g.modules.is_empty() {
                out.push_str("    no modules: every record is its own group\n");
            }
            for m in &g.modules {
                let rules: Vec<String> = m.rules.iter().map(group_rule).collect();
                let body = if rules.is_empty() {
                    "every record".to_string()
                } else {
                    rules.join(", ")
                };
                let _ = writeln!(out, "    module {}: {body}", m.name);
            }
            if !g.keys.is_empty() {
                let keys: Vec<&str> = g.keys.iter().map(|k| k.name()).collect();
                let _ = writeln!(out, "    keys: {}", keys.join(", "));
            }
            if !g.aggregates.is_empty() {
                let aggs: Vec<String> = g.aggregates.iter().map(|a| aggregate(a, g)).collect();
                let _ = writeln!(out, "    aggregate: {}", aggs.join(", "));
            }
        }
        None => out.push_str("  grouper: none (every record is its own group)\n"),
    }
    match &b.groupfilter {
        Some(gf) => {
            let namer = |f: &GroupField| group_field_name(&b.schema, *f);
            let _ = writeln!(out, "  groupfilter {}: {}", gf.name, rule(&gf.rule, &namer));
        }
        None => out.push_str("  groupfilter: none (every group passes)\n"),
    }
    let _ = writeln!(out, "  group fields: {}", schema(&b.schema));
}

fn schema(s: &GroupSchema) -> String {
    let mut names = vec!["stime", "etime", "duration", "count"];
    names.extend(s.slot_names.iter().map(String::as_str));
    let mut text = names.join(", ");
    if s.singleton {
        text.push_str(", and every record field (groups are single records)");
    }
    text
}

fn group_field_name(s: &GroupSchema, f: GroupField) -> String {
    match f {
        GroupField::Stime => "stime".into(),
        GroupField::Etime => "etime".into(),
        GroupField::Duration => "duration".into(),
        GroupField::Count => "count".into(),
        GroupField::Slot(i) => s
            .slot_names
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("slot{i}")),
        GroupField::Record(f) => f.name().to_string(),
    }
}

fn op(o: CmpOp) -> &'static str {
    match o {
        CmpOp::Eq => "=",
        CmpOp::Ne => "!=",
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::In => "in",
    }
}

fn value(v: &Value) -> String {
    match v {
        Value::Uint(n) => n.to_string(),
        Value::Ip(a) => a.to_string(),
        Value::Float(f) => f.0.to_string(),
        Value::Text(t) => format!("\"{t}\""),
        Value::Set(s) => set(s),
    }
}

fn set(s: &ValueSet) -> String {
    let items: Vec<String> = s.iter().map(value).collect();
    format!("{{{}}}", items.join(", "))
}

fn operand<F>(o: &Operand<F>, name: &dyn Fn(&F) -> String) -> String {
    match o {
        Operand::Field(f) => name(f),
        Operand::Lit(v) => value(v),
        Operand::Prefix(p) => p.to_string(),
        Operand::Set(s) => set(s),
        Operand::BitAnd(a, b) => format!("bitAND({}, {})", operand(a, name), operand(b, name)),
        Operand::BitOr(a, b) => format!("bitOR({}, {})", operand(a, name), operand(b, name)),
    }
}

fn rule<F>(r: &Rule<F>, name: &dyn Fn(&F) -> String) -> String {
    match r {
        Rule::True => "true".into(),
        Rule::Cmp(Cmp { lhs, op: o, rhs }) => {
            format!("{} {} {}", operand(lhs, name), op(*o), operand(rhs, name))
        }
        Rule::And(v) => join(v.iter().map(|r| rule(r, name)), " AND "),
        Rule::Or(v) => join(v.iter().map(|r| rule(r, name)), " OR "),
        Rule::Not(r) => format!("NOT {}", rule(r, name)),
    }
}

fn join(parts: impl Iterator<Item = String>, sep: &str) -> String {
    let v: Vec<String> = parts.collect();
    if v.len() == 1 {
        v.into_iter().collect()
    } else {
        format!("({})", v.join(sep))
    }
}

fn group_rule(r: &GroupRule) -> String {
    let base = format!("{} {} {}", r.left.name(), op(r.op), r.right.name());
    match r.delta {
        None => base,
        Some(d) => {
            let kw = match d.reference {
                Reference::First => "delta",
                Reference::Last => "rdelta",
            };
            let unit = match r.left.field_type() {
                FieldType::Time | FieldType::Duration => "ms",
                _ => "",
            };
            format!("{base} {kw} {}{unit}", d.amount)
        }
    }
}

fn aggregate(a: &AggregatePlan, g: &crate::query::plan::GrouperPlan) -> String {
    let arg = match a.module.and_then(|m| g.modules.get(m)) {
        Some(m) => format!("{}.{}", m.name, a.field.name()),
        None => a.field.name().to_string(),
    };
    let func = match a.func {
        AggFunc::Sum => "sum",
        AggFunc::Count => "count",
        AggFunc::Min => "min",
        AggFunc::Max => "max",
        AggFunc::Avg => "avg",
        AggFunc::Union => "union",
        AggFunc::BitOr => "bitOR",
        AggFunc::BitAnd => "bitAND",
        AggFunc::First => "first",
        AggFunc::Last => "last",
        AggFunc::Plain => {
            return if arg == a.name {
                arg
            } else {
                format!("{arg} as {}", a.name)
            }
        }
    };
    format!("{func}({arg}) as {}", a.name)
}

fn merger(out: &mut String, plan: &Plan, m: &MergerPlan) {
    let _ = writeln!(out, "merger {}", m.name);
    let bname = |i: usize| plan.branches.get(i).map_or("?", |b| b.name.as_str());
    for (i, module) in m.modules.iter().enumerate() {
        let branches: Vec<&str> = module.branches.iter().map(|b| bname(*b)).collect();
        let role = if i == m.export {
            " (exported)"
        } else {
            " (difference)"
        };
        let _ = writeln!(
            out,
            "  module {}{role}: branches {}",
            module.name,
            branches.join(", ")
        );
        for r in &module.rules {
            let _ = writeln!(out, "    {}", merge_rule(plan, r));
        }
    }
    let export = m.modules.get(m.export).map_or("?", |x| x.name.as_str());
    let _ = writeln!(out, "  export {export}");
}

fn merge_operand(plan: &Plan, o: &MergeOperand) -> String {
    match o {
        MergeOperand::Field { branch, field } => match plan.branches.get(*branch) {
            Some(b) => format!("{}.{}", b.name, group_field_name(&b.schema, *field)),
            None => "?".into(),
        },
        MergeOperand::Lit(v) => value(v),
        MergeOperand::Prefix(p) => p.to_string(),
        MergeOperand::Set(s) => set(s),
    }
}

fn allen(o: AllenOp) -> &'static str {
    match o {
        AllenOp::Before => "< (before)",
        AllenOp::After => "> (after)",
        AllenOp::Meets => "m (meets)",
        AllenOp::MetBy => "mi (met by)",
        AllenOp::Overlaps => "o (overlaps)",
        AllenOp::OverlappedBy => "oi (overlapped by)",
        AllenOp::Starts => "s (starts)",
        AllenOp::StartedBy => "si (started by)",
        AllenOp::During => "d (during)",
        AllenOp::Contains => "di (contains)",
        AllenOp::Finishes => "f (finishes)",
        AllenOp::FinishedBy => "fi (finished by)",
        AllenOp::Equals => "eq (equals)",
    }
}

fn merge_rule(plan: &Plan, r: &MergeRule) -> String {
    let bname = |i: usize| plan.branches.get(i).map_or("?", |b| b.name.as_str());
    match r {
        MergeRule::Allen(a) => {
            let d = a.delta.map_or(String::new(), |d| format!(" delta {d}ms"));
            format!("{} {} {}{d}", bname(a.x), allen(a.op), bname(a.y))
        }
        MergeRule::Field(f) => {
            let d = f.delta.map_or(String::new(), |d| format!(" delta {d}"));
            format!(
                "{} {} {}{d}",
                merge_operand(plan, &f.lhs),
                op(f.op),
                merge_operand(plan, &f.rhs)
            )
        }
        MergeRule::And(v) => join(v.iter().map(|r| merge_rule(plan, r)), " AND "),
        MergeRule::Or(v) => join(v.iter().map(|r| merge_rule(plan, r)), " OR "),
        MergeRule::Not(r) => format!("NOT {}", merge_rule(plan, r)),
    }
}
