//! One match as one JSON object (SPEC §3.3), keys in the documented order.

use std::fmt::Write as _;

use super::{format_time, group_fields, record_fields, Named};
use crate::engine::{Group, Match};
use crate::query::plan::Plan;
use crate::record::{FieldType, SetOf};
use crate::value::Value;

/// Everything one JSON line says besides the plan and the match.
pub(crate) struct Header<'a> {
    pub query: &'a str,
    pub number: u64,
    pub emitted: i64,
    pub records: bool,
}

/// Append the match's JSON line (with its newline) to `out`.
pub(crate) fn write_match(out: &mut String, h: &Header<'_>, plan: &Plan, m: &Match) {
    out.push_str("{\"query\":");
    string(out, h.query);
    let _ = write!(out, ",\"match\":{}", h.number);
    out.push_str(",\"emitted\":");
    string(out, &format_time(h.emitted));
    out.push_str(",\"groups\":[");
    for (i, g) in m.groups.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        group(out, plan, g);
    }
    out.push(']');
    if h.records {
        out.push_str(",\"records\":[");
        for (i, (branch, rec)) in m.records.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"branch\":");
            string(out, branch_name(plan, *branch));
            for f in record_fields(rec) {
                field(out, &f);
            }
            out.push('}');
        }
        out.push(']');
    }
    out.push_str("}\n");
}

pub(crate) fn branch_name(plan: &Plan, branch: usize) -> &str {
    plan.branches.get(branch).map_or("?", |b| b.name.as_str())
}

fn group(out: &mut String, plan: &Plan, g: &Group) {
    out.push_str("{\"branch\":");
    string(out, branch_name(plan, g.branch));
    out.push_str(",\"stime\":");
    string(out, &format_time(g.stime));
    out.push_str(",\"etime\":");
    string(out, &format_time(g.etime));
    let _ = write!(out, ",\"count\":{}", g.members.len());
    out.push_str(",\"fields\":{");
    for (i, f) in group_fields(plan, g).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, f.name);
        out.push(':');
        value(out, f.ty, &f.value);
    }
    out.push_str("}}");
}

/// `,"name":value`
fn field(out: &mut String, f: &Named<'_>) {
    out.push(',');
    string(out, f.name);
    out.push(':');
    value(out, f.ty, &f.value);
}

fn value(out: &mut String, ty: FieldType, v: &Value) {
    match v {
        Value::Uint(u) if ty == FieldType::Time => {
            string(out, &format_time(i64::try_from(*u).unwrap_or(i64::MAX)))
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => match serde_json::Number::from_f64(f.0) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str("null"),
        },
        Value::Ip(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        Value::Text(s) => string(out, s),
        Value::Set(set) => {
            let elem = match ty {
                FieldType::Set(SetOf::Time) => FieldType::Time,
                _ => FieldType::Uint,
            };
            out.push('[');
            for (i, e) in set.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(out, elem, e);
            }
            out.push(']');
        }
    }
}

/// A JSON string literal with serde_json's escaping.
fn string(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{http_match, http_plan};

    #[test]
    fn writes_the_spec_layout() {
        let plan = http_plan();
        let m = http_match();
        let mut s = String::new();
        let h = Header {
            query: "http-download",
            number: 17,
            emitted: 1_795_424_401_250,
            records: true,
        };
        write_match(&mut s, &h, &plan, &m);
        assert!(s.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["query"], "http-download");
        assert_eq!(v["match"], 17);
        assert_eq!(v["emitted"], "2026-11-23T09:00:01.250Z");
        assert_eq!(v["groups"][0]["branch"], "A");
        assert_eq!(v["groups"][0]["count"], 2);
        assert_eq!(v["groups"][0]["stime"], "2026-11-23T08:59:41.003Z");
        assert_eq!(v["groups"][0]["fields"]["srcip"], "10.0.0.5");
        assert_eq!(v["groups"][0]["fields"]["bytes"], 1834);
        assert_eq!(
            v["groups"][0]["fields"]["srcports"],
            serde_json::json!([51234, 51236])
        );
        assert_eq!(v["groups"][0]["fields"]["avg"], 917.0);
        assert_eq!(v["groups"][1]["branch"], "B");
        let recs = v["records"].as_array().unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0]["branch"], "A");
        assert_eq!(recs[0]["rec_id"], 1021);
        assert_eq!(recs[0]["exporter"], "192.0.2.1");
        assert_eq!(recs[0]["dstport"], 80);
        assert_eq!(recs[0]["etime"], "2026-11-23T08:59:42.118Z");
        assert!(recs[0].get("duration").is_none());
        // Key order as documented.
        assert!(s.starts_with("{\"query\":\"http-download\",\"match\":17,\"emitted\":"));
        let r = &s[s.find("\"records\":[{").unwrap()..];
        assert!(r.starts_with("\"records\":[{\"branch\":\"A\",\"rec_id\":1021,\"exporter\":"));
        let first = &r[..r.find('}').unwrap()];
        assert!(
            first.ends_with(
                ",\"stime\":\"2026-11-23T08:59:41.003Z\",\"etime\":\"2026-11-23T08:59:42.118Z\""
            ),
            "{first}"
        );
    }

    #[test]
    fn omits_records_when_switched_off() {
        let mut s = String::new();
        let h = Header {
            query: "q",
            number: 1,
            emitted: 0,
            records: false,
        };
        write_match(&mut s, &h, &http_plan(), &http_match());
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert!(v.get("records").is_none());
        assert_eq!(v["groups"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn escapes_strings() {
        let mut s = String::new();
        string(&mut s, "a\"b\\c\n");
        assert_eq!(s, r#""a\"b\\c\n""#);
    }
}
