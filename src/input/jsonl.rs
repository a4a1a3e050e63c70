//! JSON Lines flow files: one JSON object per line, keys are canonical field
//! names or their aliases (SPEC §4.1).
//!
//! `rec_id` is the line's 0-based index and `duration` is derived from the
//! times, whatever the line says. Blank lines are skipped (they keep their
//! index, so `rec_id` always equals the line number minus one). A record
//! without `etime` ends when it starts.

use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value as Json};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::stream::{collect, each_line};
use super::InputError;
use crate::record::{Field, FieldType, Record, RecordFields, Time};
use crate::value::Value;

/// Read a JSON Lines file into records.
pub fn read(path: &Path) -> Result<Vec<Record>, InputError> {
    let open_err = |source| InputError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(open_err)?;
    from_reader(path, BufReader::new(file))
}

/// Decode JSON Lines already in memory; `path` only labels errors.
pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Record>, InputError> {
    from_reader(path, data)
}

/// Read JSON Lines from any buffered reader; `path` only labels errors.
pub fn from_reader(path: &Path, reader: impl BufRead) -> Result<Vec<Record>, InputError> {
    collect(|emit| stream(path, reader, emit))
}

/// Decode JSON Lines line by line (`rec_id` = line index).
pub fn stream<R: BufRead>(
    path: &Path,
    reader: R,
    emit: &mut dyn FnMut(Record),
) -> Result<(), InputError> {
    each_line(path, reader, |index, _, line| {
        let line_no = index + 1;
        let line = std::str::from_utf8(line).map_err(|_| {
            bad_line(
                path,
                line_no,
                "cannot read: stream did not contain valid UTF-8".into(),
            )
        })?;
        if line.trim().is_empty() {
            return Ok(());
        }
        emit(parse_line(line, index).map_err(|r| bad_line(path, line_no, r))?);
        Ok(())
    })
}

fn bad_line(path: &Path, line: u64, reason: String) -> InputError {
    InputError::BadLine {
        path: path.to_path_buf(),
        line,
        reason,
    }
}

/// Parse one line into a record with the given `rec_id`.
pub fn parse_line(line: &str, rec_id: u64) -> Result<Record, String> {
    let obj: Map<String, Json> = match serde_json::from_str::<Json>(line) {
        Ok(Json::Object(m)) => m,
        Ok(_) => return Err("expected a JSON object".into()),
        Err(e) => return Err(format!("invalid JSON: {e}")),
    };
    let mut rec = Record::from(RecordFields {
        rec_id,
        ..RecordFields::default()
    });
    let (mut stime, mut etime) = (None, None);
    for (key, val) in &obj {
        let field = Field::from_name(key).ok_or_else(|| format!("unknown field '{key}'"))?;
        if val.is_null() {
            continue;
        }
        let ctx = |e: String| format!("field '{key}': {e}");
        match field {
            Field::Stime => stime = Some(time_value(val).map_err(ctx)?),
            Field::Etime => etime = Some(time_value(val).map_err(ctx)?),
            _ => set_field(&mut rec, field, val).map_err(ctx)?,
        }
    }
    let stime = stime.ok_or("missing 'stime'")?;
    rec.set_times(stime, etime.unwrap_or(stime));
    Ok(rec)
}

/// Store a non-time field; derived fields (`rec_id`, `duration`, ICMP
/// type/code) are ignored as the format says.
fn set_field(rec: &mut Record, field: Field, val: &Json) -> Result<(), String> {
    match field {
        Field::RecId | Field::Duration | Field::IcmpType | Field::IcmpCode => {}
        Field::Stime | Field::Etime => {}
        Field::Exporter => rec.set_exporter(Some(ip(val)?)),
        Field::SrcIp => rec.set_srcip(Some(ip(val)?)),
        Field::DstIp => rec.set_dstip(Some(ip(val)?)),
        Field::NextHop => rec.set_nexthop(Some(ip(val)?)),
        Field::SrcPort => rec.set_srcport(Some(uint(val)?)),
        Field::DstPort => rec.set_dstport(Some(uint(val)?)),
        Field::Prot => rec.set_prot(Some(uint(val)?)),
        Field::TcpFlags => rec.set_tcp_flags(Some(uint(val)?)),
        Field::Tos => rec.set_tos(Some(uint(val)?)),
        Field::Bytes => rec.set_bytes(Some(uint(val)?)),
        Field::Packets => rec.set_packets(Some(uint(val)?)),
        Field::Input => rec.set_input(Some(uint(val)?)),
        Field::Output => rec.set_output(Some(uint(val)?)),
        Field::SrcAs => rec.set_src_as(Some(uint(val)?)),
        Field::DstAs => rec.set_dst_as(Some(uint(val)?)),
        Field::SrcMask => rec.set_src_mask(Some(uint(val)?)),
        Field::DstMask => rec.set_dst_mask(Some(uint(val)?)),
        Field::Sampling => rec.set_sampling(Some(uint(val)?)),
        Field::Extra(id) => {
            let v = extra_value(field.field_type(), val)?;
            rec.extra_mut().retain(|(i, _)| *i != id);
            rec.extra_mut().push((id, v));
        }
    }
    Ok(())
}

fn extra_value(ty: FieldType, val: &Json) -> Result<Value, String> {
    match ty {
        FieldType::Ip => ip(val).map(Value::Ip),
        FieldType::Text => match val {
            Json::String(s) => Ok(Value::Text(Arc::from(s.as_str()))),
            other => Ok(Value::Text(Arc::from(other.to_string().as_str()))),
        },
        FieldType::Float => val
            .as_f64()
            .map(|f| Value::Float(crate::value::F64(f)))
            .ok_or_else(|| "expected a number".to_string()),
        FieldType::Time => time_value(val).map(|t| Value::Uint(crate::record::time_to_u64(t))),
        _ => uint::<u64>(val).map(Value::Uint),
    }
}

pub(super) fn ip(val: &Json) -> Result<IpAddr, String> {
    val.as_str()
        .ok_or_else(|| "expected an address string".to_string())?
        .parse()
        .map_err(|_| format!("not an IP address: {val}"))
}

pub(super) fn uint<T: TryFrom<u64>>(val: &Json) -> Result<T, String> {
    let n = val
        .as_u64()
        .ok_or_else(|| format!("expected a non-negative integer, got {val}"))?;
    T::try_from(n).map_err(|_| format!("value {n} out of range"))
}

/// Epoch milliseconds (integer) or an RFC 3339 string.
fn time_value(val: &Json) -> Result<Time, String> {
    match val {
        Json::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("expected epoch milliseconds, got {n}")),
        Json::String(s) => {
            let t = OffsetDateTime::parse(s, &Rfc3339)
                .map_err(|e| format!("not an RFC 3339 time '{s}': {e}"))?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| format!("time out of range: {s}"))
        }
        other => Err(format!("expected a time, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_time_forms() {
        let r = parse_line(
            r#"{"srcaddr":"10.0.0.1","dstip":"2001:db8::1","dPkts":3,"bytes":120,
               "First":"2026-11-23T08:59:41.003Z","etime":1795424382118,"proto":6,
               "rec_id":99,"duration":5,"vlanId":12,"exaddr":"192.0.2.1"}"#,
            7,
        )
        .unwrap();
        assert_eq!(r.rec_id(), 7);
        assert_eq!(r.srcip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(r.dstip(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(r.exporter(), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(
            (r.packets(), r.bytes(), r.prot()),
            (Some(3), Some(120), Some(6))
        );
        assert_eq!(r.stime(), 1_795_424_381_003);
        assert_eq!(r.etime(), 1_795_424_382_118);
        assert_eq!(r.duration(), 1_115);
        assert_eq!(
            r.get(Field::from_name("vlanId").unwrap()),
            Some(Value::Uint(12))
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_line(r#"{"stime":1,"scrip":"10.0.0.1"}"#, 0).unwrap_err();
        assert!(e.contains("unknown field 'scrip'"), "{e}");
        let e = parse_line(r#"{"stime":1,"srcport":70000}"#, 0).unwrap_err();
        assert!(e.contains("srcport") && e.contains("out of range"), "{e}");
        let e = parse_line(r#"{"stime":1,"srcip":17}"#, 0).unwrap_err();
        assert!(e.contains("srcip"), "{e}");
        let e = parse_line(r#"{"srcip":"1.2.3.4"}"#, 0).unwrap_err();
        assert!(e.contains("stime"), "{e}");
        assert!(parse_line("[1,2]", 0).is_err());
        assert!(parse_line("{", 0).is_err());
    }

    #[test]
    fn file_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("flows.jsonl");
        std::fs::write(&p, "{\"stime\":1}\n\n{\"stime\":2}\n{\"stime\":\"x\"}\n").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("flows.jsonl") && e.contains("line 4"), "{e}");
        std::fs::write(&p, "{\"stime\":1}\n\n{\"stime\":2}\n").unwrap();
        let recs = read(&p).unwrap();
        assert_eq!(recs.iter().map(|r| r.rec_id()).collect::<Vec<_>>(), [0, 2]);
    }
}
