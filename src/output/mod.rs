//! Match output: JSON Lines (SPEC §3.3) and a human-readable text format.

mod json;
mod stamp;
mod text;
mod writer;

pub use writer::{open_output, MatchWriter};

use std::fmt;
use std::str::FromStr;

use crate::engine::Group;
use crate::query::plan::{GroupField, Plan};
use crate::record::{Field, FieldType, Record, Time};
use crate::value::Value;

/// How matches are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum OutputFormat {
    /// One JSON object per match per line.
    #[default]
    Json,
    /// One summary line per match, one indented line per record.
    Text,
}

impl OutputFormat {
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Text => "text",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown output format '{0}' (expected json or text)")]
pub struct UnknownOutputFormat(pub String);

impl FromStr for OutputFormat {
    type Err = UnknownOutputFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" | "jsonl" => Ok(OutputFormat::Json),
            "text" => Ok(OutputFormat::Text),
            _ => Err(UnknownOutputFormat(s.to_string())),
        }
    }
}

/// A named field value with its type (the type decides how it is printed:
/// a `Uint` of type `Time` is a timestamp).
pub(crate) struct Named<'a> {
    pub name: &'a str,
    pub ty: FieldType,
    pub value: Value,
}

/// A group record's `fields`: the schema's slots (implicit keys, then
/// aggregates) and, for single-record groups, the record's own fields.
pub(crate) fn group_fields<'a>(plan: &'a Plan, g: &'a Group) -> Vec<Named<'a>> {
    let Some(branch) = plan.branches.get(g.branch) else {
        return Vec::new();
    };
    let schema = &branch.schema;
    let mut out: Vec<Named<'a>> = schema
        .slot_names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let value = g.get(GroupField::Slot(i))?;
            let ty = schema
                .names
                .iter()
                .find(|(_, f, _)| *f == GroupField::Slot(i))
                .map_or(FieldType::Uint, |(_, _, t)| *t);
            Some(Named { name, ty, value })
        })
        .collect();
    if schema.singleton {
        if let Some(rec) = g.members.first() {
            for n in record_fields(rec) {
                if !out.iter().any(|o| o.name == n.name) {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// Every field a record has, in output order: `rec_id`, `exporter`, the
/// other canonical fields, IANA extras, then `stime` and `etime`. `duration`
/// is left out: it is derived from the two times.
pub(crate) fn record_fields(rec: &Record) -> Vec<Named<'static>> {
    let named = |f: Field, value: Value| Named {
        name: f.name(),
        ty: f.field_type(),
        value,
    };
    let mut out = Vec::new();
    for_each_record_field(rec, |f, value| out.push(named(f, value)));
    out
}

/// `record_fields` without collecting: calls `visit` with each field (the
/// times as `Field::Stime`/`Field::Etime`, typed `Time`) in output order.
pub(crate) fn for_each_record_field(rec: &Record, mut visit: impl FnMut(Field, Value)) {
    visit(Field::RecId, Value::Uint(rec.rec_id));
    if let Some(ip) = rec.exporter {
        visit(Field::Exporter, Value::Ip(ip));
    }
    for (f, v) in rec.present_fields() {
        if !matches!(
            f,
            Field::RecId | Field::Exporter | Field::Stime | Field::Etime | Field::Duration
        ) {
            visit(f, v);
        }
    }
    visit(
        Field::Stime,
        Value::Uint(crate::record::time_to_u64(rec.stime)),
    );
    visit(
        Field::Etime,
        Value::Uint(crate::record::time_to_u64(rec.etime)),
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

    #[test]
    fn formats_times_like_the_spec() {
        assert_eq!(format_time(1_795_424_381_003), "2026-11-23T08:59:41.003Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_260_226_734_835), "2009-12-07T22:58:54.835Z");
    }

    #[test]
    fn parses_format_names() {
        assert_eq!("json".parse::<OutputFormat>().unwrap(), OutputFormat::Json);
        assert_eq!("text".parse::<OutputFormat>().unwrap(), OutputFormat::Text);
        assert!("xml".parse::<OutputFormat>().is_err());
    }
}
