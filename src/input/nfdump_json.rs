//! `nfdump -o json` output: one JSON array of flow objects (or, as
//! `-o json-log` writes, one object per line), nfdump's own key names.
//!
//! nfdump writes `first`/`last` in the local time of the machine that ran
//! it, without an offset; flowy reads them as UTC. Run nfdump with `TZ=UTC`
//! (the README says so). Objects whose `type` is not `FLOW` are skipped;
//! keys flowy has no field for are ignored (nfdump prints dozens).

use std::io::{BufRead, Cursor, Read};
use std::path::Path;

use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};
use time::macros::format_description;
use time::PrimitiveDateTime;

use super::jsonl::{ip, uint};
use super::stream::{collect, each_line, read_failed};
use super::InputError;
use crate::record::{Record, RecordFields, Time};

type Object = Map<String, Json>;

/// Decode nfdump's JSON; `rec_id` = index of the flow object.
pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Record>, InputError> {
    collect(|emit| stream(path, data, emit))
}

/// Decode nfdump's JSON flow object by flow object: the elements of its
/// array one at a time, or its `json-log` lines.
pub fn stream<R: BufRead>(
    path: &Path,
    mut reader: R,
    emit: &mut dyn FnMut(Record),
) -> Result<(), InputError> {
    let (lead, first) = leading_space(&mut reader).map_err(|e| read_failed(path, 0, &e))?;
    let text = Cursor::new(lead).chain(reader);
    if first == Some(b'[') {
        array(path, text, emit)
    } else {
        lines(path, text, emit)
    }
}

/// The whitespace the input starts with (consumed) and the byte after it
/// (not consumed).
fn leading_space(r: &mut impl BufRead) -> std::io::Result<(Vec<u8>, Option<u8>)> {
    let mut lead = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok((lead, None));
        }
        match buf
            .iter()
            .position(|&b| !b.is_ascii() || !(b as char).is_whitespace())
        {
            Some(at) => {
                let first = buf[at];
                lead.extend_from_slice(&buf[..at]);
                r.consume(at);
                return Ok((lead, Some(first)));
            }
            None => {
                let n = buf.len();
                lead.extend_from_slice(buf);
                r.consume(n);
            }
        }
    }
}

/// True for the objects that are not flows (nfdump's `type` says so).
fn is_skipped(obj: &Object) -> bool {
    obj.get("type")
        .and_then(Json::as_str)
        .is_some_and(|t| t != "FLOW")
}

/// One JSON array, its elements deserialized and decoded one at a time.
/// Errors of the JSON carry serde's line; a refused flow object reports
/// the array's first line.
fn array(path: &Path, text: impl Read, emit: &mut dyn FnMut(Record)) -> Result<(), InputError> {
    let mut checked = Utf8Checked::new(text);
    let mut flows = Flows {
        emit,
        next_id: 0,
        refused: None,
    };
    let mut de = serde_json::Deserializer::from_reader(&mut checked);
    let result = de.deserialize_seq(&mut flows).and_then(|()| de.end());
    drop(de);
    if let Err(e) = result {
        // A byte that is not UTF-8 anywhere in the file comes first.
        if checked.bad.is_none() {
            let _ = std::io::copy(&mut checked, &mut std::io::sink());
        }
        if let Some(offset) = checked.bad {
            return Err(not_utf8(path, offset));
        }
        return Err(InputError::BadLine {
            path: path.to_path_buf(),
            line: e.line() as u64,
            reason: format!("invalid nfdump JSON: {e}"),
        });
    }
    match flows.refused {
        Some(reason) => Err(InputError::BadLine {
            path: path.to_path_buf(),
            line: 1,
            reason,
        }),
        None => Ok(()),
    }
}

fn not_utf8(path: &Path, offset: u64) -> InputError {
    InputError::Malformed {
        path: path.to_path_buf(),
        offset,
        reason: "not UTF-8 text".into(),
    }
}

/// Hands the array's flow objects on as they are deserialized.
struct Flows<'a> {
    emit: &'a mut dyn FnMut(Record),
    next_id: u64,
    /// Why a flow object was refused (the JSON itself was fine).
    refused: Option<String>,
}

impl<'de> Visitor<'de> for &mut Flows<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of nfdump flow objects")
    }

    /// After a refused object the elements are still deserialized: the
    /// JSON's own errors come first, as when the file was read whole.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(obj) = seq.next_element::<Object>()? {
            if self.refused.is_some() || is_skipped(&obj) {
                continue;
            }
            match record(&obj, self.next_id) {
                Ok(r) => {
                    self.next_id += 1;
                    (self.emit)(r);
                }
                Err(reason) => self.refused = Some(reason),
            }
        }
        Ok(())
    }
}

/// `json-log`: one object per line. As when the file was read whole: a
/// byte that is not UTF-8 anywhere comes first, then a line that is not
/// JSON anywhere, then the first refused flow object.
fn lines(path: &Path, text: impl BufRead, emit: &mut dyn FnMut(Record)) -> Result<(), InputError> {
    let mut next_id = 0u64;
    let (mut not_json, mut refused) = (None, None);
    each_line(path, text, |i, offset, line| {
        let line = std::str::from_utf8(line)
            .map_err(|e| not_utf8(path, offset + e.valid_up_to() as u64))?;
        if not_json.is_some() || line.trim().is_empty() {
            return Ok(());
        }
        let bad = |reason: String| InputError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let obj: Object = match serde_json::from_str(line) {
            Ok(obj) => obj,
            Err(e) => {
                not_json = Some(bad(format!("invalid JSON: {e}")));
                return Ok(());
            }
        };
        if refused.is_some() || is_skipped(&obj) {
            return Ok(());
        }
        match record(&obj, next_id) {
            Ok(r) => {
                next_id += 1;
                emit(r);
            }
            Err(reason) => refused = Some(bad(reason)),
        }
        Ok(())
    })?;
    not_json.or(refused).map_or(Ok(()), Err)
}

/// Passes text on while it is UTF-8; at the first byte that is not, the
/// reading fails and `bad` holds its offset (nfdump's JSON must be UTF-8
/// as a whole, not only inside strings).
struct Utf8Checked<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Served up to `pos`; checked up to `valid`; read up to `len`.
    pos: usize,
    valid: usize,
    len: usize,
    /// Input offset of `buf[0]`.
    offset: u64,
    eof: bool,
    bad: Option<u64>,
}

impl<R: Read> Utf8Checked<R> {
    fn new(inner: R) -> Self {
        Utf8Checked {
            inner,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            pos: 0,
            valid: 0,
            len: 0,
            offset: 0,
            eof: false,
            bad: None,
        }
    }

    /// Read and check more; an incomplete character at the end waits for
    /// the rest of its bytes.
    fn refill(&mut self) -> std::io::Result<()> {
        self.offset += self.valid as u64;
        self.buf.copy_within(self.valid..self.len, 0);
        self.len -= self.valid;
        (self.pos, self.valid) = (0, 0);
        while self.valid == 0 && !self.eof && self.bad.is_none() {
            let n = self.inner.read(&mut self.buf[self.len..])?;
            self.eof = n == 0;
            self.len += n;
            match std::str::from_utf8(&self.buf[..self.len]) {
                Ok(_) => self.valid = self.len,
                Err(e) => {
                    self.valid = e.valid_up_to();
                    if e.error_len().is_some() || self.eof {
                        self.bad = Some(self.offset + self.valid as u64);
                    }
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for Utf8Checked<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.valid {
            self.refill()?;
            if self.pos == self.valid && self.bad.is_some() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not UTF-8 text",
                ));
            }
        }
        let n = out.len().min(self.valid - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// True when the text starts the way nfdump's JSON does: an array whose
/// first object carries nfdump's own keys (format detection).
pub fn looks_like(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head);
    let t = head.trim_start();
    t.starts_with('[') && (t.contains("\"type\" : \"FLOW\"") || t.contains("\"export_sysid\""))
}

fn record(o: &Object, rec_id: u64) -> Result<Record, String> {
    let mut r = Record::from(RecordFields {
        rec_id,
        ..RecordFields::default()
    });
    for (key, val) in o {
        let ctx = |e: String| format!("key '{key}': {e}");
        match key.as_str() {
            "first" => r.set_stime(local_time(val).map_err(ctx)?),
            "last" => r.set_etime(local_time(val).map_err(ctx)?),
            "in_packets" => r.set_packets(Some(uint(val).map_err(ctx)?)),
            "in_bytes" => r.set_bytes(Some(uint(val).map_err(ctx)?)),
            "proto" => r.set_prot(Some(uint(val).map_err(ctx)?)),
            "tcp_flags" => r.set_tcp_flags(Some(tcp_flags(val).map_err(ctx)?)),
            "src_port" => r.set_srcport(Some(uint(val).map_err(ctx)?)),
            "dst_port" => r.set_dstport(Some(uint(val).map_err(ctx)?)),
            "src_tos" => r.set_tos(Some(uint(val).map_err(ctx)?)),
            "src4_addr" | "src6_addr" => r.set_srcip(Some(ip(val).map_err(ctx)?)),
            "dst4_addr" | "dst6_addr" => r.set_dstip(Some(ip(val).map_err(ctx)?)),
            "ip4_next_hop" | "ip6_next_hop" => r.set_nexthop(Some(ip(val).map_err(ctx)?)),
            "ip4_router" | "ip6_router" => r.set_exporter(Some(ip(val).map_err(ctx)?)),
            "input_snmp" => r.set_input(Some(uint(val).map_err(ctx)?)),
            "output_snmp" => r.set_output(Some(uint(val).map_err(ctx)?)),
            "src_as" => r.set_src_as(Some(uint(val).map_err(ctx)?)),
            "dst_as" => r.set_dst_as(Some(uint(val).map_err(ctx)?)),
            "src_mask" => r.set_src_mask(Some(uint(val).map_err(ctx)?)),
            "dst_mask" => r.set_dst_mask(Some(uint(val).map_err(ctx)?)),
            _ => {}
        }
    }
    icmp_ports(o, &mut r)?;
    if !o.contains_key("first") {
        return Err("missing 'first'".into());
    }
    if !o.contains_key("last") {
        r.set_etime(r.stime());
    }
    Ok(r)
}

/// nfdump prints ICMP type and code instead of ports: flowy's convention
/// is srcport 0, dstport type·256 + code (SPEC §1.1).
fn icmp_ports(o: &Object, r: &mut Record) -> Result<(), String> {
    if !matches!(r.prot(), Some(1) | Some(58)) {
        return Ok(());
    }
    let (Some(t), Some(c)) = (o.get("icmp_type"), o.get("icmp_code")) else {
        return Ok(());
    };
    let (t, c): (u16, u16) = (uint(t)?, uint(c)?);
    if t > 255 || c > 255 {
        return Err(format!("ICMP type {t} / code {c} out of range"));
    }
    r.set_srcport(Some(0));
    r.set_dstport(Some(t * 256 + c));
    Ok(())
}

/// `2026-12-04T23:34:47.000` (no offset), read as UTC.
fn local_time(val: &Json) -> Result<Time, String> {
    let s = val.as_str().ok_or("expected a time string")?;
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]");
    let t = PrimitiveDateTime::parse(s, &fmt).map_err(|e| format!("bad time '{s}': {e}"))?;
    i64::try_from(t.assume_utc().unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("time out of range: {s}"))
}

/// nfdump's flag string, `CEUAPRSF` with `.` for an unset flag, or a number.
fn tcp_flags(val: &Json) -> Result<u16, String> {
    if let Some(n) = val.as_u64() {
        return u16::try_from(n).map_err(|_| format!("flags {n} out of range"));
    }
    let s = val.as_str().ok_or("expected a flag string or a number")?;
    if s.len() != 8 {
        return Err(format!("flag string '{s}' is not 8 characters"));
    }
    s.bytes()
        .zip("CEUAPRSF".bytes())
        .try_fold(0u16, |acc, (c, want)| {
            if c == want {
                Ok(acc << 1 | 1)
            } else if c == b'.' {
                Ok(acc << 1)
            } else {
                Err(format!("unexpected '{}' in flag string '{s}'", c as char))
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two flows as Debian's nfdump 1.7.1 prints them (`nfdump -o json`).
    const NFDUMP: &str = r#"[
{
	"type" : "FLOW",
	"sampled" : 0,
	"export_sysid" : 1,
	"first" : "2026-12-04T23:34:47.000",
	"last" : "2026-12-04T23:34:49.000",
	"received" : "2026-12-04T23:35:07.987",
	"in_packets" : 3,
	"in_bytes" : 612,
	"proto" : 6,
	"tcp_flags" : "...AP.SF",
	"src_port" : 1234,
	"dst_port" : 80,
	"src_tos" : 0,
	"src4_addr" : "10.0.0.1",
	"dst4_addr" : "10.0.0.2",
	"input_snmp" : 1,
	"output_snmp" : 2,
	"src_mask" : 0,
	"dst_mask" : 0,
	"src_net" : "",
	"dst_net" : "",
	"fwd_status" : 0,
	"direction" : 0,
	"dst_tos" : 0,
	"ip4_router" : "127.0.0.1",
	"label" : "<none>"
},
{
	"type" : "FLOW",
	"first" : "2026-12-04T23:34:47.100",
	"last" : "2026-12-04T23:34:49.500",
	"in_packets" : 1,
	"in_bytes" : 84,
	"proto" : 58,
	"icmp_type" : 128,
	"icmp_code" : 0,
	"src6_addr" : "2001:db8::1",
	"dst6_addr" : "2001:db8::2",
	"ip6_router" : "::1"
}]"#;

    #[test]
    fn reads_what_nfdump_prints() {
        let recs = parse(Path::new("x.json"), NFDUMP.as_bytes()).unwrap();
        assert_eq!(recs.len(), 2);
        let r = &recs[0];
        assert_eq!(r.stime(), 1_796_427_287_000);
        assert_eq!(r.etime(), 1_796_427_289_000);
        assert_eq!(
            (r.packets(), r.bytes(), r.prot()),
            (Some(3), Some(612), Some(6))
        );
        assert_eq!(r.tcp_flags(), Some(0x1b));
        assert_eq!((r.srcport(), r.dstport()), (Some(1234), Some(80)));
        assert_eq!(r.srcip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(r.exporter(), Some("127.0.0.1".parse().unwrap()));
        assert_eq!((r.input(), r.output()), (Some(1), Some(2)));
        let icmp = &recs[1];
        assert_eq!(
            (icmp.rec_id(), icmp.srcport(), icmp.dstport()),
            (1, Some(0), Some(128 * 256))
        );
        assert_eq!(icmp.dstip(), Some("2001:db8::2".parse().unwrap()));
        assert!(looks_like(NFDUMP.as_bytes()));
    }

    #[test]
    fn json_log_lines_and_errors() {
        let lines = "{\"type\":\"FLOW\",\"first\":\"2026-12-04T23:34:47.000\",\"proto\":17}\n\n{\"type\":\"EXPORTER\"}\n{\"first\":\"yesterday\"}\n";
        let err = parse(Path::new("l.json"), lines.as_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "l.json: line 4: key 'first': bad time 'yesterday': the 'year' component could not be parsed"
        );
        let ok = parse(
            Path::new("l.json"),
            lines
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].etime(), ok[0].stime());
        assert!(tcp_flags(&Json::from("..x.....")).is_err());
        assert_eq!(tcp_flags(&Json::from("CEUAPRSF")), Ok(0xff));
    }
}
