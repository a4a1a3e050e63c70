//! The human-readable format: one summary line per match, one indented line
//! per record.

use std::fmt::Write as _;

use super::json::branch_name;
use super::{format_time, group_fields, record_fields, Named};
use crate::engine::{Group, Match};
use crate::query::plan::Plan;
use crate::record::{FieldType, SetOf};
use crate::value::Value;

/// Append the match's lines to `out`.
pub(crate) fn write_match(
    out: &mut String,
    query: &str,
    number: u64,
    plan: &Plan,
    m: &Match,
    records: bool,
) {
    let _ = write!(out, "{query} #{number}:");
    for g in &m.groups {
        out.push(' ');
        group(out, plan, g);
    }
    out.push('\n');
    if records {
        for (branch, rec) in &m.records {
            let _ = write!(out, "    {}", branch_name(plan, *branch));
            for f in record_fields(rec) {
                out.push(' ');
                field(out, &f);
            }
            out.push('\n');
        }
    }
}

fn group(out: &mut String, plan: &Plan, g: &Group) {
    let _ = write!(
        out,
        "{}[{} .. {} count={}",
        branch_name(plan, g.branch),
        format_time(g.stime),
        format_time(g.etime),
        g.members.len()
    );
    for f in group_fields(plan, g) {
        out.push(' ');
        field(out, &f);
    }
    out.push(']');
}

fn field(out: &mut String, f: &Named<'_>) {
    let _ = write!(out, "{}=", f.name);
    value(out, f.ty, &f.value);
}

fn value(out: &mut String, ty: FieldType, v: &Value) {
    let _ = match v {
        Value::Uint(u) if ty == FieldType::Time => {
            write!(
                out,
                "{}",
                format_time(i64::try_from(*u).unwrap_or(i64::MAX))
            )
        }
        Value::Uint(u) => write!(out, "{u}"),
        Value::Float(f) => write!(out, "{}", f.0),
        Value::Ip(ip) => write!(out, "{ip}"),
        Value::Text(s) => write!(out, "{s:?}"),
        Value::Set(set) => {
            let elem = match ty {
                FieldType::Set(SetOf::Time) => FieldType::Time,
                _ => FieldType::Uint,
            };
            out.push('{');
            for (i, e) in set.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(out, elem, e);
            }
            out.push('}');
            Ok(())
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{http_match, http_plan};

    #[test]
    fn one_summary_line_and_indented_records() {
        let mut s = String::new();
        write_match(
            &mut s,
            "http-download",
            3,
            &http_plan(),
            &http_match(),
            true,
        );
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("http-download #3: A[2026-11-23T08:59:41.003Z .. "));
        assert!(lines[0].contains("srcports={51234,51236}"), "{}", lines[0]);
        assert!(lines[0].contains(" B["), "{}", lines[0]);
        assert!(lines[1].starts_with("    A rec_id=1021 exporter=192.0.2.1 srcip=10.0.0.5"));
        assert!(lines[2].starts_with("    B rec_id=1022"));
        let mut s = String::new();
        write_match(&mut s, "q", 1, &http_plan(), &http_match(), false);
        assert_eq!(s.lines().count(), 1);
    }
}
