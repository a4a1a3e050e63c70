//! Match output: JSON Lines (SPEC §3.3), a human-readable text format and
//! CSV (one row per record).

mod csv;
mod json;
pub mod rotate;
mod stamp;
mod text;
mod writer;

pub use writer::{open_output, LineSink, MatchFormatter, WriteFailure, WRITE_CHUNK};

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use smallvec::SmallVec;

use crate::engine::Group;
use crate::query::plan::{GroupField, Plan};
use crate::record::{time_to_u64, Field, FieldType, Record, Time, CANONICAL};
use crate::value::Value;

/// How matches are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum OutputFormat {
    /// One JSON object per match per line.
    #[default]
    Json,
    /// One summary line per match, one indented line per record.
    Text,
    /// One CSV row per record of a match, under one header line.
    Csv,
}

impl OutputFormat {
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Text => "text",
            OutputFormat::Csv => "csv",
        }
    }

    /// The line that starts an output of this format (CSV's column names),
    /// written once per output, before the first match.
    pub fn header(self) -> Option<&'static [u8]> {
        match self {
            OutputFormat::Csv => Some(csv::HEADER),
            OutputFormat::Json | OutputFormat::Text => None,
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown output format '{0}' (expected json, text or csv)")]
pub struct UnknownOutputFormat(pub String);

impl FromStr for OutputFormat {
    type Err = UnknownOutputFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" | "jsonl" => Ok(OutputFormat::Json),
            "text" => Ok(OutputFormat::Text),
            "csv" => Ok(OutputFormat::Csv),
            _ => Err(UnknownOutputFormat(s.to_string())),
        }
    }
}

/// A named field value with its type (the type decides how it is printed:
/// a `Uint` of type `Time` is a timestamp).
pub(crate) struct Named<'a> {
    pub name: &'a str,
    pub ty: FieldType,
    /// Borrowed from the group where stored (no clone per printed value).
    pub value: Cow<'a, Value>,
}

/// A group record's `fields`: the schema's slots (implicit keys, then
/// aggregates) and, for single-record groups, the record's own fields.
pub(crate) fn group_fields<'a>(plan: &'a Plan, g: &'a Group) -> Vec<Named<'a>> {
    let mut out = Vec::new();
    for_each_group_field(plan, g, |name, ty, value| {
        out.push(Named { name, ty, value })
    });
    out
}

/// [`group_fields`] without collecting them: the JSON writer runs this for
/// every match, and a filter-only query's every match is a singleton group.
pub(crate) fn for_each_group_field<'a>(
    plan: &'a Plan,
    g: &'a Group,
    mut visit: impl FnMut(&'a str, FieldType, Cow<'a, Value>),
) {
    let Some(branch) = plan.branches.get(g.branch) else {
        return;
    };
    let schema = &branch.schema;
    // Slots that have a value hide a record field of the same name.
    let mut shown: SmallVec<[&str; 8]> = SmallVec::new();
    for (i, name) in schema.slot_names.iter().enumerate() {
        let Some(value) = g.get_ref(GroupField::Slot(i)) else {
            continue;
        };
        let ty = schema
            .names
            .iter()
            .find(|(_, f, _)| *f == GroupField::Slot(i))
            .map_or(FieldType::Uint, |(_, _, t)| *t);
        shown.push(name);
        visit(name, ty, value);
    }
    if !schema.singleton {
        return;
    }
    if let Some(rec) = g.members.first() {
        for_each_record_field(rec, |name, ty, value| {
            if !shown.contains(&name) {
                visit(name, ty, Cow::Owned(value));
            }
        });
    }
}

/// Every field a record has, in output order: `rec_id`, `exporter`, the
/// other canonical fields, IANA extras, then `stime` and `etime`. `duration`
/// is left out: it is derived from the two times.
#[cfg(test)]
pub(crate) fn record_fields(rec: &Record) -> Vec<Named<'static>> {
    let mut out = Vec::new();
    for_each_record_field(rec, |name, ty, value| {
        out.push(Named {
            name,
            ty,
            value: Cow::Owned(value),
        })
    });
    out
}

/// `record_fields` without collecting: calls `visit` with each field's name,
/// type and value in output order. It walks `CANONICAL` itself, in the order
/// of `Record::present_fields`, because `Field::name`/`field_type` search
/// that table per call, which showed up per output value.
pub(crate) fn for_each_record_field(
    rec: &Record,
    mut visit: impl FnMut(&'static str, FieldType, Value),
) {
    visit("rec_id", FieldType::Uint, Value::Uint(rec.rec_id()));
    if let Some(ip) = rec.exporter() {
        visit("exporter", FieldType::Ip, Value::Ip(ip));
    }
    for (f, name, ty, _) in CANONICAL {
        if matches!(
            f,
            Field::RecId
                | Field::Exporter
                | Field::Stime
                | Field::Etime
                | Field::Duration
                | Field::IcmpType
                | Field::IcmpCode
                | Field::Sampling
        ) {
            continue;
        }
        if let Some(v) = rec.get(*f) {
            visit(name, *ty, v);
        }
    }
    if let Some(s) = rec.sampling() {
        let f = Field::Sampling;
        visit(f.name(), f.field_type(), Value::Uint(u64::from(s)));
    }
    for (id, v) in rec.extra() {
        let f = Field::Extra(*id);
        visit(f.name(), f.field_type(), v.clone());
    }
    visit(
        "stime",
        FieldType::Time,
        Value::Uint(time_to_u64(rec.stime())),
    );
    visit(
        "etime",
        FieldType::Time,
        Value::Uint(time_to_u64(rec.etime())),
    );
}

/// RFC 3339 UTC with milliseconds: `2026-11-23T08:59:41.003Z`.
pub fn format_time(ms: Time) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            millis
        ),
        // Outside the calendar range of `time`: still print something exact.
        Err(_) => format!("{ms}ms"),
    }
}

/// Wall-clock now in epoch ms (the `emitted` stamp).
pub(crate) fn now_ms() -> Time {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordFields;

    #[test]
    fn formats_times_like_the_spec() {
        assert_eq!(format_time(1_795_424_381_003), "2026-11-23T08:59:41.003Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_260_226_734_835), "2009-12-07T22:58:54.835Z");
    }

    /// The fast field walk must list exactly what the table-searching
    /// original (`present_fields` + `Field::name`/`field_type`) lists.
    #[test]
    fn record_fields_follow_present_fields() {
        let rec = Record::from(RecordFields {
            rec_id: 7,
            exporter: "192.0.2.1".parse().ok(),
            srcip: "10.0.0.1".parse().ok(),
            dstip: "2001:db8::1".parse().ok(),
            nexthop: "10.0.0.254".parse().ok(),
            srcport: Some(1),
            dstport: Some(2),
            prot: Some(1),
            tcp_flags: Some(3),
            tos: Some(4),
            bytes: Some(5),
            packets: Some(6),
            stime: 1000,
            etime: 2500,
            input: Some(8),
            output: Some(9),
            src_as: Some(10),
            dst_as: Some(11),
            src_mask: Some(12),
            dst_mask: Some(13),
            sampling: Some(100),
            extra: vec![(82, Value::Text("eth0".into()))],
        });
        let mut expected = vec![("rec_id".to_string(), FieldType::Uint, Value::Uint(7))];
        expected.push((
            "exporter".into(),
            FieldType::Ip,
            Value::Ip(rec.exporter().unwrap()),
        ));
        for (f, v) in rec.present_fields() {
            if !matches!(
                f,
                Field::RecId | Field::Exporter | Field::Stime | Field::Etime | Field::Duration
            ) {
                expected.push((f.name().to_string(), f.field_type(), v));
            }
        }
        expected.push(("stime".into(), FieldType::Time, Value::Uint(1000)));
        expected.push(("etime".into(), FieldType::Time, Value::Uint(2500)));
        let got: Vec<_> = record_fields(&rec)
            .into_iter()
            .map(|n| (n.name.to_string(), n.ty, n.value.into_owned()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn parses_format_names() {
        assert_eq!("json".parse::<OutputFormat>().unwrap(), OutputFormat::Json);
        assert_eq!("text".parse::<OutputFormat>().unwrap(), OutputFormat::Text);
        assert_eq!("csv".parse::<OutputFormat>().unwrap(), OutputFormat::Csv);
        assert_eq!(OutputFormat::Csv.to_string(), "csv");
        assert!(OutputFormat::Csv.header().is_some());
        assert!(OutputFormat::Json.header().is_none());
        assert!("xml".parse::<OutputFormat>().is_err());
    }
}
