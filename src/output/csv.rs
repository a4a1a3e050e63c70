//! CSV (RFC 4180): one row per record of a match, in the spirit of
//! `nfdump -o csv`. The columns are fixed, so the rows of every query can
//! share one file under one header line; a record's IANA extras, whose set
//! varies, share the one `extra` column.
//!
//! Rows are written straight into the output buffer, as the JSON lines are:
//! nothing here allocates per row.

use super::json::{branch_name, write_hex16};
use super::stamp::{write_ip, write_time, write_uint};
use crate::engine::Match;
use crate::query::plan::Plan;
use crate::record::{Field, FieldType, Record};
use crate::value::Value;

/// The header line. The match columns, the record's canonical fields in the
/// JSON output's order, then `extra` and `records_omitted`. Must agree with
/// [`RECORD_COLUMNS`] (a test checks).
pub const HEADER: &[u8] = b"query,match,match_id,branch,rec_id,exporter,srcip,dstip,nexthop,\
srcport,dstport,prot,tcp_flags,tos,bytes,packets,input,output,src_as,dst_as,src_mask,dst_mask,\
sampling,stime,etime,extra,records_omitted\n";

/// The record columns between `branch` and `extra`. `duration` is left out
/// as in the JSON output (it is `etime − stime`), and so are `icmp_type` and
/// `icmp_code`, which are derived from `dstport`.
pub(crate) const RECORD_COLUMNS: [Field; 19] = [
    Field::RecId,
    Field::Exporter,
    Field::SrcIp,
    Field::DstIp,
    Field::NextHop,
    Field::SrcPort,
    Field::DstPort,
    Field::Prot,
    Field::TcpFlags,
    Field::Tos,
    Field::Bytes,
    Field::Packets,
    Field::Input,
    Field::Output,
    Field::SrcAs,
    Field::DstAs,
    Field::SrcMask,
    Field::DstMask,
    Field::Sampling,
];

/// Everything a row says besides the plan and the record.
pub(crate) struct Header<'a> {
    pub query: &'a str,
    pub number: u64,
    pub records: bool,
    pub max_records: usize,
}

/// Append the match's rows: one per record written, or one with the record
/// columns empty when records are off.
pub(crate) fn write_match(out: &mut Vec<u8>, h: &Header<'_>, plan: &Plan, m: &Match) {
    let id = m.id(h.query);
    if !h.records {
        match_columns(out, h, id);
        // branch, the record columns, extra and records_omitted: all empty.
        for _ in 0..RECORD_COLUMNS.len() + 5 {
            out.push(b',');
        }
        out.push(b'\n');
        return;
    }
    let omitted = m.records().len().saturating_sub(h.max_records) as u64;
    for (branch, rec) in m.records().iter().take(h.max_records) {
        match_columns(out, h, id);
        out.push(b',');
        text_cell(out, branch_name(plan, *branch));
        record_columns(out, rec);
        out.push(b',');
        extra_cell(out, rec);
        out.push(b',');
        write_uint(out, omitted);
        out.push(b'\n');
    }
}

/// `query,match,match_id` (no trailing comma).
fn match_columns(out: &mut Vec<u8>, h: &Header<'_>, id: u64) {
    text_cell(out, h.query);
    out.push(b',');
    write_uint(out, h.number);
    out.push(b',');
    write_hex16(out, id);
}

/// `,rec_id,…,sampling,stime,etime`; an absent field is an empty cell.
/// `sampling` is the record's own (`Record::get` would say 1 when absent).
fn record_columns(out: &mut Vec<u8>, rec: &Record) {
    for f in RECORD_COLUMNS {
        out.push(b',');
        let v = match f {
            Field::Sampling => rec.sampling().map(|s| Value::Uint(u64::from(s))),
            f => rec.get(f),
        };
        // None of these columns is a time (stime and etime follow), so the
        // type need not be looked up: `field_type` searches a table per call.
        if let Some(v) = v {
            value(out, FieldType::Uint, &v);
        }
    }
    out.push(b',');
    write_time(out, rec.stime());
    out.push(b',');
    write_time(out, rec.etime());
}

/// The record's IANA extras as `name=value` joined by `;`, in the record's
/// order; an element without a name in the table is named by its number.
/// In text values `%` and `;` are written `%25` and `%3B`, so the pairs
/// split unambiguously (names never hold `=`, so the first `=` splits a pair).
fn extra_cell(out: &mut Vec<u8>, rec: &Record) {
    let start = out.len();
    for (i, (id, v)) in rec.extra().iter().enumerate() {
        if i > 0 {
            out.push(b';');
        }
        let ie = crate::iana::by_id(*id);
        match ie {
            Some(ie) => out.extend_from_slice(ie.name.as_bytes()),
            None => write_uint(out, u64::from(*id)),
        }
        out.push(b'=');
        match v {
            Value::Text(s) => escape_pair_text(out, s),
            v => value(out, ie.map_or(FieldType::Uint, |ie| ie.ty), v),
        }
    }
    quote_from(out, start);
}

fn escape_pair_text(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b';' => out.extend_from_slice(b"%3B"),
            b => out.push(b),
        }
    }
}

/// A text cell, quoted only where RFC 4180 needs it.
fn text_cell(out: &mut Vec<u8>, s: &str) {
    let start = out.len();
    out.extend_from_slice(s.as_bytes());
    quote_from(out, start);
}

/// Quote the cell `out[start..]` in place if it holds `,`, `"`, CR or LF:
/// wrap it in `"` and double each `"`. Cells that need nothing (the usual
/// case) are left alone, and nothing is allocated either way beyond the
/// buffer's own growth.
pub(crate) fn quote_from(out: &mut Vec<u8>, start: usize) {
    let cell = &out[start..];
    if !cell
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        return;
    }
    let quotes = cell.iter().filter(|&&b| b == b'"').count();
    let old_len = out.len();
    out.resize(old_len + quotes + 2, 0);
    // Move the cell right, from its end, doubling quotes on the way.
    let mut w = out.len() - 1;
    out[w] = b'"';
    for r in (start..old_len).rev() {
        let b = out[r];
        w -= 1;
        out[w] = b;
        if b == b'"' {
            w -= 1;
            out[w] = b'"';
        }
    }
    out[start] = b'"';
}

/// A field value as a cell body: times RFC 3339 as in the JSON output,
/// addresses as text, numbers in decimal.
fn value(out: &mut Vec<u8>, ty: FieldType, v: &Value) {
    match v {
        Value::Uint(u) if ty == FieldType::Time => {
            write_time(out, i64::try_from(*u).unwrap_or(i64::MAX))
        }
        Value::Uint(u) => write_uint(out, *u),
        Value::Float(f) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{}", f.0);
        }
        Value::Ip(ip) => write_ip(out, ip),
        Value::Text(s) => out.extend_from_slice(s.as_bytes()),
        // Records hold no sets (only `union` aggregates make them); written
        // space-separated should one ever appear, so the cell needs no quotes.
        Value::Set(set) => {
            for (i, e) in set.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                value(out, FieldType::Uint, e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::output::testutil::{http_match, http_plan};
    use crate::record::CANONICAL;

    fn rows(h: &Header<'_>, m: &Match) -> Vec<String> {
        let mut out = Vec::new();
        write_match(&mut out, h, &http_plan(), m);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with('\n'));
        s.lines().map(str::to_string).collect()
    }

    fn header() -> Vec<&'static str> {
        std::str::from_utf8(HEADER)
            .unwrap()
            .trim_end()
            .split(',')
            .collect()
    }

    fn h(records: bool, max_records: usize) -> Header<'static> {
        Header {
            query: "http-download",
            number: 3,
            records,
            max_records,
        }
    }

    /// Every canonical field the JSON output prints has its column, in the
    /// header, in `RECORD_COLUMNS`' order.
    #[test]
    fn header_names_the_record_columns() {
        let names = header();
        assert_eq!(&names[..4], ["query", "match", "match_id", "branch"]);
        let record: Vec<&str> = RECORD_COLUMNS.iter().map(|f| f.name()).collect();
        // `record_columns` writes them without their type.
        assert!(RECORD_COLUMNS
            .iter()
            .all(|f| matches!(f.field_type(), FieldType::Uint | FieldType::Ip)));
        assert_eq!(&names[4..4 + record.len()], &record[..]);
        assert_eq!(
            &names[4 + record.len()..],
            ["stime", "etime", "extra", "records_omitted"]
        );
        for (f, name, ..) in CANONICAL {
            let derived = matches!(f, Field::Duration | Field::IcmpType | Field::IcmpCode);
            assert_eq!(!derived, names.contains(name), "{name}");
        }
    }

    #[test]
    fn one_row_per_record_with_absent_fields_empty() {
        let m = http_match();
        let rows = rows(&h(true, usize::MAX), &m);
        assert_eq!(rows.len(), 3);
        let id = format!("{:016x}", m.id("http-download"));
        let names = header();
        for row in &rows {
            assert_eq!(row.split(',').count(), names.len(), "{row}");
        }
        let cells: Vec<&str> = rows[0].split(',').collect();
        let cell = |n: &str| cells[names.iter().position(|c| *c == n).unwrap()];
        assert_eq!(cell("query"), "http-download");
        assert_eq!(cell("match"), "3");
        assert_eq!(cell("match_id"), id);
        assert_eq!(cell("branch"), "A");
        assert_eq!(cell("rec_id"), "1021");
        assert_eq!(cell("exporter"), "192.0.2.1");
        assert_eq!(cell("srcip"), "10.0.0.5");
        assert_eq!(cell("dstport"), "80");
        // The test records have no next hop, tos, interfaces, AS, masks,
        // sampling or extras.
        for absent in ["nexthop", "tos", "input", "src_as", "sampling", "extra"] {
            assert_eq!(cell(absent), "", "{absent}");
        }
        assert_eq!(cell("stime"), "2026-11-23T08:59:41.003Z");
        assert_eq!(cell("etime"), "2026-11-23T08:59:42.118Z");
        assert_eq!(cell("records_omitted"), "0");
        let branches: Vec<&str> = rows.iter().map(|r| r.split(',').nth(3).unwrap()).collect();
        assert_eq!(branches, ["A", "B", "A"]);
    }

    #[test]
    fn max_records_cuts_rows_and_counts_the_rest() {
        let rows = rows(&h(true, 2), &http_match());
        assert_eq!(rows.len(), 2);
        for row in &rows {
            assert!(row.ends_with(",1"), "{row}");
        }
    }

    #[test]
    fn without_records_one_row_with_empty_record_columns() {
        let m = http_match();
        let rows = rows(&h(false, usize::MAX), &m);
        assert_eq!(rows.len(), 1);
        let id = format!("{:016x}", m.id("http-download"));
        // One comma before each of the cells after match_id.
        let empty = ",".repeat(header().len() - 3);
        assert_eq!(rows[0], format!("http-download,3,{id}{empty}"));
    }

    #[test]
    fn quotes_only_where_needed() {
        let q = |s: &str| {
            let mut out = b"x,".to_vec();
            text_cell(&mut out, s);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(q("plain name"), "x,plain name");
        assert_eq!(q(""), "x,");
        assert_eq!(q("a,b"), "x,\"a,b\"");
        assert_eq!(q("say \"hi\""), "x,\"say \"\"hi\"\"\"");
        assert_eq!(q("two\nlines"), "x,\"two\nlines\"");
        assert_eq!(q("cr\r"), "x,\"cr\r\"");
        assert_eq!(q("\""), "x,\"\"\"\"");
    }

    #[test]
    fn a_query_name_with_a_comma_is_quoted() {
        let h = Header {
            query: "a,b",
            ..h(false, 1)
        };
        let rows = rows(&h, &http_match());
        assert!(rows[0].starts_with("\"a,b\",3,"), "{}", rows[0]);
    }

    #[test]
    fn extras_share_one_column() {
        let mut m = http_match();
        let mut rec = (*m.records()[0].1).clone();
        rec.set_extra(vec![
            (82, Value::Text("eth0, \"uplink\"; 100%".into())),
            (58, Value::Uint(10)),
            (63, Value::Ip("2001:db8::1".parse().unwrap())),
            (65000, Value::Uint(7)),
        ]);
        m = Match::with_records(m.groups.clone(), vec![(0, Arc::new(rec))]);
        let rows = rows(&h(true, usize::MAX), &m);
        assert_eq!(rows.len(), 1);
        let want = "\"interfaceName=eth0, \"\"uplink\"\"%3B 100%25;vlanId=10;\
                    bgpNextHopIPv6Address=2001:db8::1;65000=7\",0";
        assert!(rows[0].ends_with(want), "{}", rows[0]);
    }
}
