//! One match as one JSON object (SPEC §3.3), keys in the documented order.
//! Written straight into a byte buffer: the output path runs once per
//! record of every match, so nothing here allocates per value.

use super::stamp::{write_ip, write_json_str, write_key, write_set, write_time, write_uint};
use super::{for_each_group_field, for_each_record_field};
use crate::engine::{Group, Match};
use crate::query::plan::Plan;
use crate::record::FieldType;
use crate::value::Value;

/// Everything one JSON line says besides the plan and the match.
pub(crate) struct Header<'a> {
    pub query: &'a str,
    pub number: u64,
    pub emitted: i64,
    pub records: bool,
    /// `flowy query`'s run id; the daemon has none.
    pub run: Option<&'a str>,
    /// Records written at most; the rest are counted in `records_omitted`.
    pub max_records: usize,
}

/// Append the match's JSON line (with its newline) to `out`.
pub(crate) fn write_match(out: &mut Vec<u8>, h: &Header<'_>, plan: &Plan, m: &Match) {
    out.extend_from_slice(b"{\"query\":");
    write_json_str(out, h.query);
    out.extend_from_slice(b",\"match\":");
    write_uint(out, h.number);
    out.extend_from_slice(b",\"match_id\":\"");
    write_hex16(out, m.id(h.query));
    out.push(b'"');
    if let Some(run) = h.run {
        out.extend_from_slice(b",\"run\":");
        write_json_str(out, run);
    }
    out.extend_from_slice(b",\"emitted\":");
    quoted_time(out, h.emitted);
    out.extend_from_slice(b",\"groups\":[");
    for (i, g) in m.groups.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        group(out, plan, g);
    }
    out.push(b']');
    if h.records {
        out.extend_from_slice(b",\"records\":[");
        for (i, (branch, rec)) in m.records().iter().take(h.max_records).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"branch\":");
            write_json_str(out, branch_name(plan, *branch));
            for_each_record_field(rec, |name, ty, v| field(out, name, ty, &v));
            out.push(b'}');
        }
        out.push(b']');
        let omitted = m.records().len().saturating_sub(h.max_records);
        if omitted > 0 {
            out.extend_from_slice(b",\"records_omitted\":");
            write_uint(out, omitted as u64);
        }
    }
    out.extend_from_slice(b"}\n");
}

pub(crate) fn branch_name(plan: &Plan, branch: usize) -> &str {
    plan.branches.get(branch).map_or("?", |b| b.name.as_str())
}

fn group(out: &mut Vec<u8>, plan: &Plan, g: &Group) {
    out.extend_from_slice(b"{\"branch\":");
    write_json_str(out, branch_name(plan, g.branch));
    out.extend_from_slice(b",\"stime\":");
    quoted_time(out, g.stime);
    out.extend_from_slice(b",\"etime\":");
    quoted_time(out, g.etime);
    out.extend_from_slice(b",\"count\":");
    write_uint(out, g.members.len() as u64);
    out.extend_from_slice(b",\"fields\":{");
    let mut first = true;
    for_each_group_field(plan, g, |name, ty, value| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_key(out, name);
        self::value(out, ty, &value);
    });
    out.extend_from_slice(b"}}");
}

/// `,"name":value`
fn field(out: &mut Vec<u8>, name: &str, ty: FieldType, v: &Value) {
    out.push(b',');
    write_key(out, name);
    value(out, ty, v);
}

/// A u64 as 16 lowercase hex digits.
pub(crate) fn write_hex16(out: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

fn quoted_time(out: &mut Vec<u8>, ms: i64) {
    out.push(b'"');
    write_time(out, ms);
    out.push(b'"');
}

fn value(out: &mut Vec<u8>, ty: FieldType, v: &Value) {
    match v {
        Value::Uint(u) if ty == FieldType::Time => {
            quoted_time(out, i64::try_from(*u).unwrap_or(i64::MAX))
        }
        Value::Uint(u) => write_uint(out, *u),
        Value::Float(f) => match serde_json::Number::from_f64(f.0) {
            Some(n) => {
                use std::io::Write as _;
                // Writing into a Vec cannot fail.
                let _ = write!(out, "{n}");
            }
            None => out.extend_from_slice(b"null"),
        },
        Value::Ip(ip) => {
            out.push(b'"');
            write_ip(out, ip);
            out.push(b'"');
        }
        Value::Text(s) => write_json_str(out, s),
        Value::Set(set) => write_set(out, ty, set, (b'[', b']'), value),
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
        let mut s = Vec::new();
        let h = Header {
            query: "http-download",
            number: 17,
            emitted: 1_795_424_401_250,
            records: true,
            run: None,
            max_records: usize::MAX,
        };
        write_match(&mut s, &h, &plan, &m);
        let s = String::from_utf8(s).unwrap();
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
        let id = format!("{:016x}", m.id("http-download"));
        let head = format!(
            "{{\"query\":\"http-download\",\"match\":17,\"match_id\":\"{id}\",\"emitted\":"
        );
        assert!(s.starts_with(&head), "{s}");
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
        let mut s = Vec::new();
        let h = Header {
            query: "q",
            number: 1,
            emitted: 0,
            records: false,
            run: None,
            max_records: usize::MAX,
        };
        write_match(&mut s, &h, &http_plan(), &http_match());
        let s = String::from_utf8(s).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert!(v.get("records").is_none());
        assert_eq!(v["groups"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn escapes_strings() {
        let mut s = Vec::new();
        write_json_str(&mut s, "a\"b\\c\n");
        assert_eq!(s, br#""a\"b\\c\n""#);
    }
}
