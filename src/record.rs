//! The flow record: one normalised type for every input (SPEC §1.1).
//!
//! Canonical fields are plain struct members so that the per-record hot path
//! (filters, groupers) never touches a map. Fields a record lacks are `None`
//! and compare as absent. IANA information elements beyond the canonical
//! table live in `extra`, looked up by element id.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::LazyLock;

pub use crate::value::Value;

/// Milliseconds since the Unix epoch, UTC.
pub type Time = i64;

/// A canonical record field (plus the IANA elements beyond the table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    RecId,
    Exporter,
    SrcIp,
    DstIp,
    NextHop,
    SrcPort,
    DstPort,
    Prot,
    TcpFlags,
    Tos,
    Bytes,
    Packets,
    Stime,
    Etime,
    Duration,
    Input,
    Output,
    SrcAs,
    DstAs,
    SrcMask,
    DstMask,
    Sampling,
    IcmpType,
    IcmpCode,
    /// Any other IANA IPFIX information element, by element id.
    Extra(u16),
}

/// The type of a field's values, for compile-time checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Unsigned integer (counters, ports, ids, flags).
    Uint,
    /// IPv4 or IPv6 address.
    Ip,
    /// Absolute time, ms since the epoch.
    Time,
    /// A length of time in ms.
    Duration,
    /// Floating point (only `avg` aggregates produce it).
    Float,
    /// A set of values (only `union` aggregates produce it); the element type.
    Set(SetOf),
    /// Bytes or text that only support `=`/`!=` (e.g. interface names).
    Text,
}

/// Element type of a set-valued field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetOf {
    Uint,
    Ip,
    Time,
    Float,
    Text,
}

impl FieldType {
    /// True for types whose values are numbers (comparable with `<`, deltas apply).
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Uint | FieldType::Time | FieldType::Duration | FieldType::Float
        )
    }

    /// The set type with this element type, as produced by `union`.
    pub fn set_of(self) -> FieldType {
        FieldType::Set(match self {
            FieldType::Ip => SetOf::Ip,
            FieldType::Time => SetOf::Time,
            FieldType::Float => SetOf::Float,
            FieldType::Text => SetOf::Text,
            FieldType::Set(s) => s,
            FieldType::Uint | FieldType::Duration => SetOf::Uint,
        })
    }
}

/// Canonical name, type and aliases of every canonical field (SPEC §1.1).
/// Order matters only for output: records are printed in this order.
pub const CANONICAL: &[(Field, &str, FieldType, &[&str])] = &[
    (Field::RecId, "rec_id", FieldType::Uint, &[]),
    (Field::Exporter, "exporter", FieldType::Ip, &["exaddr"]),
    (
        Field::SrcIp,
        "srcip",
        FieldType::Ip,
        &["srcaddr", "sourceIPv4Address", "sourceIPv6Address"],
    ),
    (
        Field::DstIp,
        "dstip",
        FieldType::Ip,
        &[
            "dstaddr",
            "destinationIPv4Address",
            "destinationIPv6Address",
        ],
    ),
    (
        Field::NextHop,
        "nexthop",
        FieldType::Ip,
        &["ipNextHopIPv4Address", "ipNextHopIPv6Address"],
    ),
    (
        Field::SrcPort,
        "srcport",
        FieldType::Uint,
        &["sourceTransportPort"],
    ),
    (
        Field::DstPort,
        "dstport",
        FieldType::Uint,
        &["destinationTransportPort"],
    ),
    (
        Field::Prot,
        "prot",
        FieldType::Uint,
        &["proto", "protocol", "protocolIdentifier"],
    ),
    (
        Field::TcpFlags,
        "tcp_flags",
        FieldType::Uint,
        &["tcpControlBits"],
    ),
    (Field::Tos, "tos", FieldType::Uint, &["ipClassOfService"]),
    (
        Field::Bytes,
        "bytes",
        FieldType::Uint,
        &["dOctets", "octetDeltaCount"],
    ),
    (
        Field::Packets,
        "packets",
        FieldType::Uint,
        &["dPkts", "packetDeltaCount"],
    ),
    (
        Field::Stime,
        "stime",
        FieldType::Time,
        &["First", "flowStartMilliseconds"],
    ),
    (
        Field::Etime,
        "etime",
        FieldType::Time,
        &["Last", "flowEndMilliseconds"],
    ),
    (Field::Duration, "duration", FieldType::Duration, &["td"]),
    (
        Field::Input,
        "input",
        FieldType::Uint,
        &["ingressInterface"],
    ),
    (
        Field::Output,
        "output",
        FieldType::Uint,
        &["egressInterface"],
    ),
    (
        Field::SrcAs,
        "src_as",
        FieldType::Uint,
        &["bgpSourceAsNumber"],
    ),
    (
        Field::DstAs,
        "dst_as",
        FieldType::Uint,
        &["bgpDestinationAsNumber"],
    ),
    (
        Field::SrcMask,
        "src_mask",
        FieldType::Uint,
        &["sourceIPv4PrefixLength"],
    ),
    (
        Field::DstMask,
        "dst_mask",
        FieldType::Uint,
        &["destinationIPv4PrefixLength"],
    ),
    (
        Field::Sampling,
        "sampling",
        FieldType::Uint,
        &["samplingInterval"],
    ),
    (Field::IcmpType, "icmp_type", FieldType::Uint, &[]),
    (Field::IcmpCode, "icmp_code", FieldType::Uint, &[]),
];

/// Every query name of a field: the canonical table first (a name's first
/// row wins), then the IANA elements. Built once; queries and JSON Lines
/// input resolve names on every use.
static FIELDS_BY_NAME: LazyLock<HashMap<&'static str, Field, foldhash::fast::RandomState>> =
    LazyLock::new(|| {
        let mut map = HashMap::default();
        for (f, canon, _, aliases) in CANONICAL {
            for n in std::iter::once(canon).chain(aliases.iter()) {
                map.entry(*n).or_insert(*f);
            }
        }
        for ie in crate::iana::ELEMENTS {
            map.entry(ie.name).or_insert(Field::Extra(ie.id));
        }
        map
    });

impl Field {
    /// Resolve a query name (canonical, alias, or IANA element name).
    pub fn from_name(name: &str) -> Option<Field> {
        FIELDS_BY_NAME.get(name).copied()
    }

    /// The canonical name (for IANA extras: the IANA name).
    pub fn name(self) -> &'static str {
        match self {
            Field::Extra(id) => crate::iana::by_id(id).map_or("unknown", |ie| ie.name),
            f => CANONICAL
                .iter()
                .find(|(g, ..)| *g == f)
                .map_or("unknown", |(_, n, ..)| n),
        }
    }

    pub fn field_type(self) -> FieldType {
        match self {
            Field::Extra(id) => crate::iana::by_id(id).map_or(FieldType::Uint, |ie| ie.ty),
            f => CANONICAL
                .iter()
                .find(|(g, ..)| *g == f)
                .map_or(FieldType::Uint, |(_, _, t, _)| *t),
        }
    }

    /// Every name a query may use for a field, for "did you mean" suggestions.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        CANONICAL
            .iter()
            .flat_map(|(_, n, _, a)| std::iter::once(*n).chain(a.iter().copied()))
            .chain(crate::iana::ELEMENTS.iter().map(|ie| ie.name))
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One flow record. `stime`/`etime` are always known; other fields may be absent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    /// Input order in a file (0-based); arrival counter in the daemon.
    pub rec_id: u64,
    pub exporter: Option<IpAddr>,
    pub srcip: Option<IpAddr>,
    pub dstip: Option<IpAddr>,
    pub nexthop: Option<IpAddr>,
    pub srcport: Option<u16>,
    pub dstport: Option<u16>,
    pub prot: Option<u8>,
    pub tcp_flags: Option<u16>,
    pub tos: Option<u8>,
    pub bytes: Option<u64>,
    pub packets: Option<u64>,
    pub stime: Time,
    pub etime: Time,
    pub input: Option<u32>,
    pub output: Option<u32>,
    pub src_as: Option<u32>,
    pub dst_as: Option<u32>,
    pub src_mask: Option<u8>,
    pub dst_mask: Option<u8>,
    pub sampling: Option<u32>,
    /// IANA elements beyond the canonical table, as (element id, value).
    pub extra: Vec<(u16, Value)>,
}

impl Record {
    /// The value of a field, or `None` when the record lacks it.
    #[inline]
    pub fn get(&self, field: Field) -> Option<Value> {
        let u = |v: Option<u64>| v.map(Value::Uint);
        match field {
            Field::RecId => Some(Value::Uint(self.rec_id)),
            Field::Exporter => self.exporter.map(Value::Ip),
            Field::SrcIp => self.srcip.map(Value::Ip),
            Field::DstIp => self.dstip.map(Value::Ip),
            Field::NextHop => self.nexthop.map(Value::Ip),
            Field::SrcPort => u(self.srcport.map(u64::from)),
            Field::DstPort => u(self.dstport.map(u64::from)),
            Field::Prot => u(self.prot.map(u64::from)),
            Field::TcpFlags => u(self.tcp_flags.map(u64::from)),
            Field::Tos => u(self.tos.map(u64::from)),
            Field::Bytes => u(self.bytes),
            Field::Packets => u(self.packets),
            Field::Stime => Some(Value::Uint(time_to_u64(self.stime))),
            Field::Etime => Some(Value::Uint(time_to_u64(self.etime))),
            Field::Duration => Some(Value::Uint(self.duration())),
            Field::Input => u(self.input.map(u64::from)),
            Field::Output => u(self.output.map(u64::from)),
            Field::SrcAs => u(self.src_as.map(u64::from)),
            Field::DstAs => u(self.dst_as.map(u64::from)),
            Field::SrcMask => u(self.src_mask.map(u64::from)),
            Field::DstMask => u(self.dst_mask.map(u64::from)),
            Field::Sampling => Some(Value::Uint(u64::from(self.sampling.unwrap_or(1)))),
            Field::IcmpType => self.icmp().map(|(t, _)| Value::Uint(u64::from(t))),
            Field::IcmpCode => self.icmp().map(|(_, c)| Value::Uint(u64::from(c))),
            Field::Extra(id) => self
                .extra
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, v)| v.clone()),
        }
    }

    /// The value of an integer field of the record's own columns without
    /// building a [`Value`]: `None` when the field is absent or is not one
    /// of them (ask [`Record::get`]). Filters compare such fields with
    /// integer literals on every record.
    #[inline]
    pub fn get_uint(&self, field: Field) -> Option<u64> {
        match field {
            Field::RecId => Some(self.rec_id),
            Field::SrcPort => self.srcport.map(u64::from),
            Field::DstPort => self.dstport.map(u64::from),
            Field::Prot => self.prot.map(u64::from),
            Field::TcpFlags => self.tcp_flags.map(u64::from),
            Field::Tos => self.tos.map(u64::from),
            Field::Bytes => self.bytes,
            Field::Packets => self.packets,
            _ => None,
        }
    }

    /// `etime - stime` in ms (0 if an exporter reported them reversed).
    pub fn duration(&self) -> u64 {
        u64::try_from(self.etime.saturating_sub(self.stime)).unwrap_or(0)
    }

    /// ICMP type and code, from `dstport = type·256 + code` (ICMP and ICMPv6 only).
    pub fn icmp(&self) -> Option<(u8, u8)> {
        match self.prot {
            Some(1) | Some(58) => self.dstport.map(|p| ((p >> 8) as u8, (p & 0xff) as u8)),
            _ => None,
        }
    }

    /// Every field the record has, canonical ones first, in output order.
    pub fn present_fields(&self) -> impl Iterator<Item = (Field, Value)> + '_ {
        CANONICAL
            .iter()
            .map(|(f, ..)| *f)
            .filter(|f| !matches!(f, Field::IcmpType | Field::IcmpCode | Field::Sampling))
            .filter_map(|f| self.get(f).map(|v| (f, v)))
            .chain(
                self.sampling
                    .map(|s| (Field::Sampling, Value::Uint(u64::from(s)))),
            )
            .chain(
                self.extra
                    .iter()
                    .map(|(id, v)| (Field::Extra(*id), v.clone())),
            )
    }
}

/// Times before the epoch do not occur in flow data; clamp rather than wrap.
#[inline]
pub fn time_to_u64(t: Time) -> u64 {
    u64::try_from(t).unwrap_or(0)
}
