//! The human-readable format: one summary line per match, one indented line
//! per record.

use std::io::Write as _;

use super::json::branch_name;
use super::stamp::{write_ip, write_set, write_time, write_uint};
use super::{for_each_record_field, group_fields};
use crate::engine::{Group, Match};
use crate::query::plan::Plan;
use crate::record::FieldType;
use crate::value::Value;

/// Append the match's lines to `out`.
pub(crate) fn write_match(
    out: &mut Vec<u8>,
    query: &str,
    number: u64,
    plan: &Plan,
    m: &Match,
    records: Option<usize>,
) {
    out.extend_from_slice(query.as_bytes());
    out.extend_from_slice(b" #");
    write_uint(out, number);
    out.push(b':');
    for g in &m.groups {
        out.push(b' ');
        group(out, plan, g);
    }
    out.push(b'\n');
    if let Some(max) = records {
        for (branch, rec) in m.records().iter().take(max) {
            out.extend_from_slice(b"    ");
            out.extend_from_slice(branch_name(plan, *branch).as_bytes());
            for_each_record_field(rec, |name, ty, v| {
                out.push(b' ');
                field(out, name, ty, &v);
            });
            out.push(b'\n');
        }
        let omitted = m.records().len().saturating_sub(max);
        if omitted > 0 {
            out.extend_from_slice(b"    ... ");
            write_uint(out, omitted as u64);
            out.extend_from_slice(b" more records omitted\n");
        }
    }
}

fn group(out: &mut Vec<u8>, plan: &Plan, g: &Group) {
    out.extend_from_slice(branch_name(plan, g.branch).as_bytes());
    out.push(b'[');
    write_time(out, g.stime);
    out.extend_from_slice(b" .. ");
    write_time(out, g.etime);
    out.extend_from_slice(b" count=");
    write_uint(out, g.members.len() as u64);
    for f in group_fields(plan, g) {
        out.push(b' ');
        field(out, f.name, f.ty, &f.value);
    }
    out.push(b']');
}

fn field(out: &mut Vec<u8>, name: &str, ty: FieldType, v: &Value) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    value(out, ty, v);
}

fn value(out: &mut Vec<u8>, ty: FieldType, v: &Value) {
    match v {
        Value::Uint(u) if ty == FieldType::Time => {
            write_time(out, i64::try_from(*u).unwrap_or(i64::MAX))
        }
        Value::Uint(u) => write_uint(out, *u),
        // Writing into a Vec cannot fail.
        Value::Float(f) => {
            let _ = write!(out, "{}", f.0);
        }
        Value::Ip(ip) => write_ip(out, ip),
        Value::Text(s) => {
            let _ = write!(out, "{s:?}");
        }
        Value::Set(set) => write_set(out, ty, set, (b'{', b'}'), value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{http_match, http_plan};

    #[test]
    fn one_summary_line_and_indented_records() {
        let mut s = Vec::new();
        write_match(
            &mut s,
            "http-download",
            3,
            &http_plan(),
            &http_match(),
            Some(usize::MAX),
        );
        let s = String::from_utf8(s).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("http-download #3: A[2026-11-23T08:59:41.003Z .. "));
        assert!(lines[0].contains("srcports={51234,51236}"), "{}", lines[0]);
        assert!(lines[0].contains(" B["), "{}", lines[0]);
        assert!(lines[1].starts_with("    A rec_id=1021 exporter=192.0.2.1 srcip=10.0.0.5"));
        assert!(lines[2].starts_with("    B rec_id=1022"));
        let mut s = Vec::new();
        write_match(&mut s, "q", 1, &http_plan(), &http_match(), None);
        let s = String::from_utf8(s).unwrap();
        assert_eq!(s.lines().count(), 1);
    }
}
