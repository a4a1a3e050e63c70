//! GoFlow2's JSON output (`-format json`): one object per line with its
//! snake_case keys (`src_addr`, `time_flow_start_ns`, `proto` as a name or a
//! number, …). Keys flowy has no field for (MAC addresses, VLANs, MPLS) are
//! ignored.

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use serde_json::{Map, Value as Json};

use super::jsonl::{ip, uint};
use super::stream::{collect, each_line};
use super::InputError;
use crate::record::{Record, RecordFields, Time};

/// The keys only GoFlow2 writes: one of them on the first line makes the
/// format certain (format detection).
const SIGNATURE: [&str; 3] = [
    "\"time_flow_start_ns\"",
    "\"sampler_address\"",
    "\"time_received_ns\"",
];

pub fn looks_like(head: &[u8]) -> bool {
    let head = String::from_utf8_lossy(head);
    let first = head.trim_start().lines().next().unwrap_or("");
    first.starts_with('{') && SIGNATURE.iter().any(|k| first.contains(k))
}

/// Decode GoFlow2 JSON lines; `rec_id` = line index (blank lines keep
/// their index, as in JSON Lines).
pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Record>, InputError> {
    collect(|emit| stream(path, data, emit))
}

/// Decode GoFlow2 JSON line by line. A file that is not UTF-8 is refused
/// as such wherever the bad byte is: after a bad line, the rest is still
/// checked.
pub fn stream<R: BufRead>(
    path: &Path,
    reader: R,
    emit: &mut dyn FnMut(Record),
) -> Result<(), InputError> {
    let mut failed = None;
    each_line(path, reader, |i, offset, line| {
        let line = std::str::from_utf8(line).map_err(|e| InputError::Malformed {
            path: path.to_path_buf(),
            offset: offset + e.valid_up_to() as u64,
            reason: "not UTF-8 text".into(),
        })?;
        if failed.is_some() || line.trim().is_empty() {
            return Ok(());
        }
        let bad = |reason: String| InputError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let decoded = serde_json::from_str::<Map<String, Json>>(line)
            .map_err(|e| bad(format!("invalid JSON: {e}")))
            .and_then(|obj| record(&obj, i).map_err(bad));
        match decoded {
            Ok(r) => emit(r),
            Err(e) => failed = Some(e),
        }
        Ok(())
    })?;
    failed.map_or(Ok(()), Err)
}

fn record(o: &Map<String, Json>, rec_id: u64) -> Result<Record, String> {
    let mut r = Record::from(RecordFields {
        rec_id,
        ..RecordFields::default()
    });
    let (mut start, mut end) = (None, None);
    let (mut icmp_type, mut icmp_code) = (None, None);
    for (key, val) in o {
        let ctx = |e: String| format!("key '{key}': {e}");
        match key.as_str() {
            "time_flow_start_ns" => start = Some(ns_to_ms(val).map_err(ctx)?),
            "time_flow_end_ns" => end = Some(ns_to_ms(val).map_err(ctx)?),
            "sampler_address" => r.set_exporter(addr(val).map_err(ctx)?),
            "src_addr" => r.set_srcip(addr(val).map_err(ctx)?),
            "dst_addr" => r.set_dstip(addr(val).map_err(ctx)?),
            "next_hop" => r.set_nexthop(addr(val).map_err(ctx)?),
            "bytes" => r.set_bytes(Some(uint(val).map_err(ctx)?)),
            "packets" => r.set_packets(Some(uint(val).map_err(ctx)?)),
            "proto" => r.set_prot(Some(protocol(val).map_err(ctx)?)),
            "src_port" => r.set_srcport(Some(uint(val).map_err(ctx)?)),
            "dst_port" => r.set_dstport(Some(uint(val).map_err(ctx)?)),
            "in_if" => r.set_input(Some(uint(val).map_err(ctx)?)),
            "out_if" => r.set_output(Some(uint(val).map_err(ctx)?)),
            "ip_tos" => r.set_tos(Some(uint(val).map_err(ctx)?)),
            "tcp_flags" => r.set_tcp_flags(Some(uint(val).map_err(ctx)?)),
            "src_as" => r.set_src_as(Some(uint(val).map_err(ctx)?)),
            "dst_as" => r.set_dst_as(Some(uint(val).map_err(ctx)?)),
            "src_net" => r.set_src_mask(prefix_len(val).map_err(ctx)?),
            "dst_net" => r.set_dst_mask(prefix_len(val).map_err(ctx)?),
            // 0 means "unsampled" in GoFlow2; flowy says 1 (SPEC §1.1).
            "sampling_rate" => r.set_sampling(Some(uint::<u32>(val).map_err(ctx)?.max(1))),
            "icmp_type" => icmp_type = Some(uint::<u16>(val).map_err(ctx)?),
            "icmp_code" => icmp_code = Some(uint::<u16>(val).map_err(ctx)?),
            _ => {}
        }
    }
    let stime = start.or(end).ok_or("missing 'time_flow_start_ns'")?;
    r.set_times(stime, end.unwrap_or(stime));
    if matches!(r.prot(), Some(1) | Some(58)) {
        if let (Some(t), Some(c)) = (icmp_type, icmp_code) {
            r.set_srcport(Some(0));
            r.set_dstport(Some((t & 0xff) * 256 + (c & 0xff)));
        }
    }
    Ok(r)
}

fn ns_to_ms(val: &Json) -> Result<Time, String> {
    let ns: u64 = uint(val)?;
    Ok((ns / 1_000_000) as Time)
}

/// An address, or nothing for GoFlow2's empty string.
fn addr(val: &Json) -> Result<Option<IpAddr>, String> {
    match val.as_str() {
        Some("") => Ok(None),
        _ => ip(val).map(Some),
    }
}

/// `"TCP"` or `6`.
fn protocol(val: &Json) -> Result<u8, String> {
    if let Some(name) = val.as_str() {
        return crate::query::protocol_number(name)
            .ok_or_else(|| format!("unknown protocol name '{name}'"));
    }
    uint(val)
}

/// The length of a prefix such as `"10.0.0.0/24"`; nothing for `""`.
fn prefix_len(val: &Json) -> Result<Option<u8>, String> {
    let s = val.as_str().ok_or("expected a prefix string")?;
    if s.is_empty() {
        return Ok(None);
    }
    let p: crate::value::Prefix = s.parse()?;
    Ok(Some(p.len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line as GoFlow2 v2 writes it (from its documentation's example).
    const LINE: &str = r#"{"type":"IPFIX","time_received_ns":1767324720787460121,"sequence_num":65361,"sampling_rate":0,"sampler_address":"192.168.88.1","time_flow_start_ns":1767324720000000000,"time_flow_end_ns":1767324721500000000,"bytes":143,"packets":1,"src_addr":"192.168.89.2","dst_addr":"192.168.88.30","etype":"IPv4","proto":"UDP","src_port":53,"dst_port":55743,"in_if":11,"out_if":12,"src_mac":"42:61:64:55:53:42","dst_mac":"48:6f:73:74:50:43","src_vlan":0,"dst_vlan":0,"vlan_id":0,"ip_tos":0,"forwarding_status":0,"ip_ttl":0,"ip_flags":0,"tcp_flags":0,"icmp_type":0,"icmp_code":0,"ipv6_flow_label":0,"fragment_id":0,"fragment_offset":0,"src_as":0,"dst_as":0,"next_hop":"0.0.0.0","next_hop_as":0,"src_net":"192.168.89.0/24","dst_net":"0.0.0.0/0","bgp_next_hop":"","bgp_communities":[],"as_path":[],"mpls_ttl":[],"mpls_label":[],"mpls_ip":[],"observation_domain_id":0,"observation_point_id":0,"layer_stack":[],"layer_size":[],"ipv6_routing_header_addresses":[],"ipv6_routing_header_seg_left":0}"#;

    #[test]
    fn reads_goflow2_lines() {
        assert!(looks_like(LINE.as_bytes()));
        assert!(!looks_like(br#"{"stime":1}"#));
        let text = format!(
            "{LINE}\n\n{}\n",
            LINE.replace("\"UDP\"", "1")
                .replace("\"icmp_type\":0", "\"icmp_type\":8")
        );
        let recs = parse(Path::new("g.json"), text.as_bytes()).unwrap();
        assert_eq!(recs.len(), 2);
        let r = &recs[0];
        assert_eq!(
            (r.stime(), r.etime()),
            (1_767_324_720_000, 1_767_324_721_500)
        );
        assert_eq!(r.exporter(), Some("192.168.88.1".parse().unwrap()));
        assert_eq!(
            (r.prot(), r.srcport(), r.dstport()),
            (Some(17), Some(53), Some(55_743))
        );
        assert_eq!(
            (r.bytes(), r.packets(), r.sampling()),
            (Some(143), Some(1), Some(1))
        );
        assert_eq!((r.src_mask(), r.dst_mask()), (Some(24), Some(0)));
        assert_eq!((r.input(), r.output()), (Some(11), Some(12)));
        let icmp = &recs[1];
        assert_eq!(icmp.rec_id(), 2);
        assert_eq!(
            (icmp.prot(), icmp.srcport(), icmp.dstport()),
            (Some(1), Some(0), Some(8 * 256))
        );
        let err = parse(
            Path::new("g.json"),
            b"{\"proto\":\"XYZ\",\"time_flow_start_ns\":1}",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "g.json: line 1: key 'proto': unknown protocol name 'XYZ'"
        );
    }
}
