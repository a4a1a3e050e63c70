//! The flow record: one normalised type for every input (SPEC §1.1).
//!
//! Canonical fields are compact struct members read through accessors, so
//! that the per-record hot path (filters, groupers) never touches a map and
//! held records stay small. Fields a record lacks are `None` and compare as
//! absent. IANA information elements beyond the canonical table live in
//! `extra()`, looked up by element id.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, LazyLock};

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

/// One flow record, in the wide form: every field a plain public member.
/// Tests and cold paths build records this way and convert with
/// `Record::from`; [`Record::fields`] gives a record's fields back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordFields {
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

// Bits of `Record::has`: which optional fields are present (the first 18;
// bits 0–3 are the address slots exporter, srcip, dstip, nexthop),
// then which of them live in the aside rather than inline.
const EXPORTER: u32 = 1 << 0;
const SRCPORT: u32 = 1 << 4;
const DSTPORT: u32 = 1 << 5;
const PROT: u32 = 1 << 6;
const TCP_FLAGS: u32 = 1 << 7;
const TOS: u32 = 1 << 8;
const BYTES: u32 = 1 << 9;
const PACKETS: u32 = 1 << 10;
const INPUT: u32 = 1 << 11;
const OUTPUT: u32 = 1 << 12;
const SRC_AS: u32 = 1 << 13;
const DST_AS: u32 = 1 << 14;
const SRC_MASK: u32 = 1 << 15;
const DST_MASK: u32 = 1 << 16;
const SAMPLING: u32 = 1 << 17;
/// The address in slot `i` (exporter, srcip, dstip, nexthop) is not IPv4.
const IP_WIDE: u32 = 1 << 18;
const ETIME_WIDE: u32 = 1 << 22;
const PACKETS_WIDE: u32 = 1 << 23;
const SAMPLING_WIDE: u32 = 1 << 24;
/// Every "lives in the aside" bit (the four address slots, then the rest).
const WIDE: u32 = (IP_WIDE * 0xf) | ETIME_WIDE | PACKETS_WIDE | SAMPLING_WIDE;

const SLOT_EXPORTER: usize = 0;
const SLOT_SRCIP: usize = 1;
const SLOT_DSTIP: usize = 2;
const SLOT_NEXTHOP: usize = 3;

/// What does not fit a record's compact form: IPv6 addresses, an `etime`
/// more than `u32::MAX` ms after `stime` (or before it), packet counts
/// beyond `u32`, sampling intervals beyond `u16`, and the IANA extras.
/// Only records that need it carry one; records with the same extras and
/// nothing else aside may share one (see [`ExtrasCache`]): it is copied
/// before it is changed.
#[derive(Clone, Default)]
struct Aside {
    ip: [Option<IpAddr>; 4],
    etime: Time,
    packets: u64,
    sampling: u32,
    extra: Vec<(u16, Value)>,
}

/// A decoder's recent extras-only asides, for [`Record::set_extra_shared`]:
/// a few, since an exporter's records alternate between some sets of
/// extras (softflowd's `flowEndReason` differs by how a flow ended).
#[derive(Default)]
pub struct ExtrasCache {
    recent: [Option<Arc<Aside>>; EXTRAS_CACHED],
    /// The slot the next new aside replaces.
    next: usize,
}

const EXTRAS_CACHED: usize = 4;

impl ExtrasCache {
    fn find(&self, extra: &[(u16, Value)]) -> Option<&Arc<Aside>> {
        self.recent.iter().flatten().find(|a| a.extra == extra)
    }

    fn keep(&mut self, a: &Arc<Aside>) {
        self.recent[self.next] = Some(Arc::clone(a));
        self.next = (self.next + 1) % EXTRAS_CACHED;
    }
}

impl fmt::Debug for ExtrasCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept: Vec<&[(u16, Value)]> =
            self.recent.iter().flatten().map(|a| &a.extra[..]).collect();
        f.debug_tuple("ExtrasCache").field(&kept).finish()
    }
}

/// One flow record. `stime`/`etime` are always known; other fields may be
/// absent (`None`, compared as absent).
///
/// Held state is mostly records, so the layout is compact (88 bytes, a
/// 112-byte heap block behind an `Arc`): IPv4 addresses inline, a presence
/// bitmask instead of `Option` tags, `etime` as a `u32` offset from
/// `stime`, and everything that does not fit (IPv6, odd durations, IANA
/// extras) in one boxed aside allocated only for records that need it.
/// Fields are read and written through methods named like them.
#[derive(Clone, Default)]
pub struct Record {
    rec_id: u64,
    stime: Time,
    bytes: u64,
    aside: Option<Arc<Aside>>,
    /// IPv4 addresses of exporter, srcip, dstip, nexthop.
    ip: [u32; 4],
    packets: u32,
    /// `etime - stime` unless `ETIME_WIDE`.
    dur: u32,
    input: u32,
    output: u32,
    src_as: u32,
    dst_as: u32,
    has: u32,
    srcport: u16,
    dstport: u16,
    tcp_flags: u16,
    sampling: u16,
    prot: u8,
    tos: u8,
    src_mask: u8,
    dst_mask: u8,
}

// The per-record memory budget (issue 11): 88 bytes + the Arc's two
// counts = 104, a 112-byte malloc chunk.
const _: () = assert!(std::mem::size_of::<Record>() <= 88);

/// Getter and setter of an optional field stored inline at its width.
macro_rules! inline_field {
    ($get:ident, $set:ident, $ty:ty, $bit:expr) => {
        #[inline]
        pub fn $get(&self) -> Option<$ty> {
            (self.has & $bit != 0).then_some(self.$get)
        }

        #[inline]
        pub fn $set(&mut self, v: Option<$ty>) {
            match v {
                Some(x) => {
                    self.$get = x;
                    self.has |= $bit;
                }
                None => {
                    self.$get = 0;
                    self.has &= !$bit;
                }
            }
        }
    };
}

/// Getter and setter of an optional address (slot in `ip`/`Aside::ip`).
macro_rules! ip_field {
    ($get:ident, $set:ident, $slot:expr) => {
        #[inline]
        pub fn $get(&self) -> Option<IpAddr> {
            self.ip_at($slot)
        }

        #[inline]
        pub fn $set(&mut self, v: Option<IpAddr>) {
            self.set_ip_at($slot, v)
        }
    };
}

/// A flow with every field NetFlow v5 carries (IPv4, 32-bit counters):
/// what flow-tools files hold, built in one step (see [`Record::from_v5`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct V5Flow {
    pub rec_id: u64,
    pub exporter: u32,
    pub srcip: u32,
    pub dstip: u32,
    pub nexthop: u32,
    pub input: u16,
    pub output: u16,
    pub packets: u32,
    pub bytes: u32,
    pub srcport: u16,
    pub dstport: u16,
    pub prot: u8,
    pub tos: u8,
    pub tcp_flags: u8,
    pub src_mask: u8,
    pub dst_mask: u8,
    pub src_as: u16,
    pub dst_as: u16,
    pub stime: Time,
    pub etime: Time,
}

/// The fields a [`V5Flow`] sets.
const V5_FIELDS: u32 = 0xf
    | SRCPORT
    | DSTPORT
    | PROT
    | TCP_FLAGS
    | TOS
    | BYTES
    | PACKETS
    | INPUT
    | OUTPUT
    | SRC_AS
    | DST_AS
    | SRC_MASK
    | DST_MASK;

impl Record {
    /// The record of `f`: the same as setting each field in turn, without
    /// a presence check per field (flow-tools files are read a million
    /// records a second per core, and the setters were a third of that).
    #[inline]
    pub fn from_v5(f: &V5Flow) -> Record {
        let mut r = Record {
            rec_id: f.rec_id,
            stime: f.stime,
            bytes: u64::from(f.bytes),
            aside: None,
            ip: [f.exporter, f.srcip, f.dstip, f.nexthop],
            packets: f.packets,
            dur: 0,
            input: u32::from(f.input),
            output: u32::from(f.output),
            src_as: u32::from(f.src_as),
            dst_as: u32::from(f.dst_as),
            has: V5_FIELDS,
            srcport: f.srcport,
            dstport: f.dstport,
            tcp_flags: u16::from(f.tcp_flags),
            sampling: 0,
            prot: f.prot,
            tos: f.tos,
            src_mask: f.src_mask,
            dst_mask: f.dst_mask,
        };
        r.set_etime(f.etime);
        r
    }
}

impl Record {
    /// Input order in a file (0-based); arrival counter in the daemon.
    #[inline]
    pub fn rec_id(&self) -> u64 {
        self.rec_id
    }

    #[inline]
    pub fn set_rec_id(&mut self, v: u64) {
        self.rec_id = v;
    }

    #[inline]
    pub fn stime(&self) -> Time {
        self.stime
    }

    /// Set `stime`, keeping `etime`.
    #[inline]
    pub fn set_stime(&mut self, t: Time) {
        let etime = self.etime();
        self.stime = t;
        self.set_etime(etime);
    }

    #[inline]
    pub fn etime(&self) -> Time {
        if self.has & ETIME_WIDE != 0 {
            if let Some(a) = &self.aside {
                return a.etime;
            }
        }
        self.stime.wrapping_add(i64::from(self.dur))
    }

    /// Set `etime`, keeping `stime`.
    #[inline]
    pub fn set_etime(&mut self, t: Time) {
        match t
            .checked_sub(self.stime)
            .and_then(|d| u32::try_from(d).ok())
        {
            Some(d) => {
                self.dur = d;
                if self.has & ETIME_WIDE != 0 {
                    self.has &= !ETIME_WIDE;
                    self.tidy();
                }
            }
            None => {
                self.dur = 0;
                self.aside_mut().etime = t;
                self.has |= ETIME_WIDE;
            }
        }
    }

    /// Set both times (what decoders know together).
    #[inline]
    pub fn set_times(&mut self, stime: Time, etime: Time) {
        self.stime = stime;
        self.set_etime(etime);
    }

    ip_field!(exporter, set_exporter, SLOT_EXPORTER);
    ip_field!(srcip, set_srcip, SLOT_SRCIP);
    ip_field!(dstip, set_dstip, SLOT_DSTIP);
    ip_field!(nexthop, set_nexthop, SLOT_NEXTHOP);
    inline_field!(srcport, set_srcport, u16, SRCPORT);
    inline_field!(dstport, set_dstport, u16, DSTPORT);
    inline_field!(prot, set_prot, u8, PROT);
    inline_field!(tcp_flags, set_tcp_flags, u16, TCP_FLAGS);
    inline_field!(tos, set_tos, u8, TOS);
    inline_field!(bytes, set_bytes, u64, BYTES);
    inline_field!(input, set_input, u32, INPUT);
    inline_field!(output, set_output, u32, OUTPUT);
    inline_field!(src_as, set_src_as, u32, SRC_AS);
    inline_field!(dst_as, set_dst_as, u32, DST_AS);
    inline_field!(src_mask, set_src_mask, u8, SRC_MASK);
    inline_field!(dst_mask, set_dst_mask, u8, DST_MASK);

    #[inline]
    pub fn packets(&self) -> Option<u64> {
        if self.has & PACKETS == 0 {
            None
        } else if self.has & PACKETS_WIDE != 0 {
            self.aside.as_ref().map(|a| a.packets)
        } else {
            Some(u64::from(self.packets))
        }
    }

    #[inline]
    pub fn set_packets(&mut self, v: Option<u64>) {
        if self.has & PACKETS_WIDE != 0 {
            self.has &= !PACKETS_WIDE;
            self.tidy();
        }
        self.has &= !PACKETS;
        self.packets = 0;
        let Some(n) = v else { return };
        self.has |= PACKETS;
        match u32::try_from(n) {
            Ok(n) => self.packets = n,
            Err(_) => {
                self.aside_mut().packets = n;
                self.has |= PACKETS_WIDE;
            }
        }
    }

    /// The sampling interval the exporter reported (`None`: unsampled).
    #[inline]
    pub fn sampling(&self) -> Option<u32> {
        if self.has & SAMPLING == 0 {
            None
        } else if self.has & SAMPLING_WIDE != 0 {
            self.aside.as_ref().map(|a| a.sampling)
        } else {
            Some(u32::from(self.sampling))
        }
    }

    #[inline]
    pub fn set_sampling(&mut self, v: Option<u32>) {
        if self.has & SAMPLING_WIDE != 0 {
            self.has &= !SAMPLING_WIDE;
            self.tidy();
        }
        self.has &= !SAMPLING;
        self.sampling = 0;
        let Some(n) = v else { return };
        self.has |= SAMPLING;
        match u16::try_from(n) {
            Ok(n) => self.sampling = n,
            Err(_) => {
                self.aside_mut().sampling = n;
                self.has |= SAMPLING_WIDE;
            }
        }
    }

    /// IANA elements beyond the canonical table, as (element id, value).
    #[inline]
    pub fn extra(&self) -> &[(u16, Value)] {
        self.aside.as_ref().map_or(&[], |a| &a.extra)
    }

    /// The extras for editing (gives the record an aside if it has none:
    /// prefer [`Record::push_extra`] where nothing may be added).
    pub fn extra_mut(&mut self) -> &mut Vec<(u16, Value)> {
        &mut self.aside_mut().extra
    }

    pub fn push_extra(&mut self, id: u16, v: Value) {
        self.extra_mut().push((id, v));
    }

    /// Give the record these extras, taking the aside of an earlier record
    /// of the same decoder when it holds exactly these extras and nothing
    /// else: exporters repeat the same extras on every record (nfcapd's
    /// flow-misc element), and one aside per record was an allocation per
    /// record read and 128 bytes per record held.
    pub fn set_extra_shared(&mut self, extra: &[(u16, Value)], cache: &mut ExtrasCache) {
        if self.aside.is_some() || extra.is_empty() {
            self.set_extra(extra.to_vec());
            return;
        }
        if let Some(a) = cache.find(extra) {
            self.aside = Some(Arc::clone(a));
            return;
        }
        let a = Arc::new(Aside {
            extra: extra.to_vec(),
            ..Aside::default()
        });
        cache.keep(&a);
        self.aside = Some(a);
    }

    pub fn set_extra(&mut self, extra: Vec<(u16, Value)>) {
        if extra.is_empty() && self.aside.is_none() {
            return;
        }
        self.aside_mut().extra = extra;
    }

    /// Heap bytes the record owns beyond itself: the aside and the extras'
    /// vector (not what the extras' values own), for memory accounting.
    pub fn aside_bytes(&self) -> usize {
        self.aside.as_ref().map_or(0, |a| {
            size_of::<Aside>() + a.extra.capacity() * size_of::<(u16, Value)>()
        })
    }

    /// The record in the wide form.
    pub fn fields(&self) -> RecordFields {
        RecordFields {
            rec_id: self.rec_id(),
            exporter: self.exporter(),
            srcip: self.srcip(),
            dstip: self.dstip(),
            nexthop: self.nexthop(),
            srcport: self.srcport(),
            dstport: self.dstport(),
            prot: self.prot(),
            tcp_flags: self.tcp_flags(),
            tos: self.tos(),
            bytes: self.bytes(),
            packets: self.packets(),
            stime: self.stime(),
            etime: self.etime(),
            input: self.input(),
            output: self.output(),
            src_as: self.src_as(),
            dst_as: self.dst_as(),
            src_mask: self.src_mask(),
            dst_mask: self.dst_mask(),
            sampling: self.sampling(),
            extra: self.extra().to_vec(),
        }
    }

    #[inline]
    fn ip_at(&self, slot: usize) -> Option<IpAddr> {
        if self.has & (EXPORTER << slot) == 0 {
            None
        } else if self.has & (IP_WIDE << slot) != 0 {
            self.aside.as_ref().and_then(|a| a.ip[slot])
        } else {
            Some(IpAddr::V4(Ipv4Addr::from(self.ip[slot])))
        }
    }

    #[inline]
    fn set_ip_at(&mut self, slot: usize, v: Option<IpAddr>) {
        let (has, wide) = (EXPORTER << slot, IP_WIDE << slot);
        if self.has & wide != 0 {
            if let Some(a) = &mut self.aside {
                Arc::make_mut(a).ip[slot] = None;
            }
            self.has &= !wide;
            self.tidy();
        }
        self.has &= !has;
        self.ip[slot] = 0;
        match v {
            None => {}
            Some(IpAddr::V4(a)) => {
                self.ip[slot] = u32::from(a);
                self.has |= has;
            }
            Some(a) => {
                self.aside_mut().ip[slot] = Some(a);
                self.has |= has | wide;
            }
        }
    }

    /// Drop an aside nothing uses any more (a record first given an
    /// `etime` before its `stime`, or an IPv6 address later replaced).
    fn tidy(&mut self) {
        if self.has & WIDE == 0 && self.aside.as_ref().is_some_and(|a| a.extra.is_empty()) {
            self.aside = None;
        }
    }

    fn aside_mut(&mut self) -> &mut Aside {
        Arc::make_mut(self.aside.get_or_insert_with(Arc::default))
    }
}

impl From<RecordFields> for Record {
    fn from(f: RecordFields) -> Record {
        let mut r = Record {
            rec_id: f.rec_id,
            ..Record::default()
        };
        r.set_times(f.stime, f.etime);
        r.set_exporter(f.exporter);
        r.set_srcip(f.srcip);
        r.set_dstip(f.dstip);
        r.set_nexthop(f.nexthop);
        r.set_srcport(f.srcport);
        r.set_dstport(f.dstport);
        r.set_prot(f.prot);
        r.set_tcp_flags(f.tcp_flags);
        r.set_tos(f.tos);
        r.set_bytes(f.bytes);
        r.set_packets(f.packets);
        r.set_input(f.input);
        r.set_output(f.output);
        r.set_src_as(f.src_as);
        r.set_dst_as(f.dst_as);
        r.set_src_mask(f.src_mask);
        r.set_dst_mask(f.dst_mask);
        r.set_sampling(f.sampling);
        r.set_extra(f.extra);
        r
    }
}

impl From<&Record> for RecordFields {
    fn from(r: &Record) -> RecordFields {
        r.fields()
    }
}

/// Records are equal when their fields are, however they are stored.
impl PartialEq for Record {
    fn eq(&self, o: &Record) -> bool {
        self.rec_id == o.rec_id
            && self.stime == o.stime
            && self.etime() == o.etime()
            && self.has & !WIDE == o.has & !WIDE
            && self.exporter() == o.exporter()
            && self.srcip() == o.srcip()
            && self.dstip() == o.dstip()
            && self.nexthop() == o.nexthop()
            && self.srcport() == o.srcport()
            && self.dstport() == o.dstport()
            && self.prot() == o.prot()
            && self.tcp_flags() == o.tcp_flags()
            && self.tos() == o.tos()
            && self.bytes() == o.bytes()
            && self.packets() == o.packets()
            && self.input() == o.input()
            && self.output() == o.output()
            && self.src_as() == o.src_as()
            && self.dst_as() == o.dst_as()
            && self.src_mask() == o.src_mask()
            && self.dst_mask() == o.dst_mask()
            && self.sampling() == o.sampling()
            && self.extra() == o.extra()
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("rec_id", &self.rec_id())
            .field("exporter", &self.exporter())
            .field("srcip", &self.srcip())
            .field("dstip", &self.dstip())
            .field("nexthop", &self.nexthop())
            .field("srcport", &self.srcport())
            .field("dstport", &self.dstport())
            .field("prot", &self.prot())
            .field("tcp_flags", &self.tcp_flags())
            .field("tos", &self.tos())
            .field("bytes", &self.bytes())
            .field("packets", &self.packets())
            .field("stime", &self.stime())
            .field("etime", &self.etime())
            .field("input", &self.input())
            .field("output", &self.output())
            .field("src_as", &self.src_as())
            .field("dst_as", &self.dst_as())
            .field("src_mask", &self.src_mask())
            .field("dst_mask", &self.dst_mask())
            .field("sampling", &self.sampling())
            .field("extra", &self.extra())
            .finish()
    }
}

impl Record {
    /// The value of a field, or `None` when the record lacks it.
    #[inline]
    pub fn get(&self, field: Field) -> Option<Value> {
        let u = |v: Option<u64>| v.map(Value::Uint);
        match field {
            Field::RecId => Some(Value::Uint(self.rec_id)),
            Field::Exporter => self.exporter().map(Value::Ip),
            Field::SrcIp => self.srcip().map(Value::Ip),
            Field::DstIp => self.dstip().map(Value::Ip),
            Field::NextHop => self.nexthop().map(Value::Ip),
            Field::SrcPort => u(self.srcport().map(u64::from)),
            Field::DstPort => u(self.dstport().map(u64::from)),
            Field::Prot => u(self.prot().map(u64::from)),
            Field::TcpFlags => u(self.tcp_flags().map(u64::from)),
            Field::Tos => u(self.tos().map(u64::from)),
            Field::Bytes => u(self.bytes()),
            Field::Packets => u(self.packets()),
            Field::Stime => Some(Value::Uint(time_to_u64(self.stime))),
            Field::Etime => Some(Value::Uint(time_to_u64(self.etime()))),
            Field::Duration => Some(Value::Uint(self.duration())),
            Field::Input => u(self.input().map(u64::from)),
            Field::Output => u(self.output().map(u64::from)),
            Field::SrcAs => u(self.src_as().map(u64::from)),
            Field::DstAs => u(self.dst_as().map(u64::from)),
            Field::SrcMask => u(self.src_mask().map(u64::from)),
            Field::DstMask => u(self.dst_mask().map(u64::from)),
            Field::Sampling => Some(Value::Uint(u64::from(self.sampling().unwrap_or(1)))),
            Field::IcmpType => self.icmp().map(|(t, _)| Value::Uint(u64::from(t))),
            Field::IcmpCode => self.icmp().map(|(_, c)| Value::Uint(u64::from(c))),
            Field::Extra(id) => self
                .extra()
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
            Field::SrcPort => self.srcport().map(u64::from),
            Field::DstPort => self.dstport().map(u64::from),
            Field::Prot => self.prot().map(u64::from),
            Field::TcpFlags => self.tcp_flags().map(u64::from),
            Field::Tos => self.tos().map(u64::from),
            Field::Bytes => self.bytes(),
            Field::Packets => self.packets(),
            _ => None,
        }
    }

    /// `etime - stime` in ms (0 if an exporter reported them reversed).
    #[inline]
    pub fn duration(&self) -> u64 {
        if self.has & ETIME_WIDE == 0 {
            u64::from(self.dur)
        } else {
            u64::try_from(self.etime().saturating_sub(self.stime)).unwrap_or(0)
        }
    }

    /// ICMP type and code, from `dstport = type·256 + code` (ICMP and ICMPv6 only).
    pub fn icmp(&self) -> Option<(u8, u8)> {
        match self.prot() {
            Some(1) | Some(58) => self.dstport().map(|p| ((p >> 8) as u8, (p & 0xff) as u8)),
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
                self.sampling()
                    .map(|s| (Field::Sampling, Value::Uint(u64::from(s)))),
            )
            .chain(
                self.extra()
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

/// Addresses for tests of records and of what carries them.
#[cfg(test)]
pub(crate) mod test_addrs {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    pub(crate) fn v4(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
    }

    /// `2001:db8::last`.
    pub(crate) fn v6(last: u16) -> Option<IpAddr> {
        Some(IpAddr::V6(Ipv6Addr::new(
            0x2001, 0xdb8, 0, 0, 0, 0, 0, last,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::test_addrs::{v4, v6};
    use super::*;
    use std::net::Ipv6Addr;
    use std::sync::Arc;

    /// `from_v5` makes the record the setters make, with short and with
    /// long durations (the latter go to the aside).
    #[test]
    fn a_v5_flow_is_the_record_its_fields_make() {
        for etime in [1_500i64, 0, 5_000_000_000] {
            let f = V5Flow {
                rec_id: 9,
                exporter: 0xc000_0201,
                srcip: 0x0a00_0001,
                dstip: 0x0a00_0002,
                nexthop: 0,
                input: 3,
                output: 4,
                packets: 12,
                bytes: u32::MAX,
                srcport: 51000,
                dstport: 80,
                prot: 6,
                tos: 0x10,
                tcp_flags: 0x1b,
                src_mask: 24,
                dst_mask: 16,
                src_as: 64500,
                dst_as: 64501,
                stime: 1_000,
                etime,
            };
            let want = RecordFields {
                rec_id: 9,
                exporter: v4(192, 0, 2, 1),
                srcip: v4(10, 0, 0, 1),
                dstip: v4(10, 0, 0, 2),
                nexthop: v4(0, 0, 0, 0),
                input: Some(3),
                output: Some(4),
                packets: Some(12),
                bytes: Some(u64::from(u32::MAX)),
                srcport: Some(51000),
                dstport: Some(80),
                prot: Some(6),
                tos: Some(0x10),
                tcp_flags: Some(0x1b),
                src_mask: Some(24),
                dst_mask: Some(16),
                src_as: Some(64500),
                dst_as: Some(64501),
                stime: 1_000,
                etime,
                ..RecordFields::default()
            };
            assert_eq!(Record::from_v5(&f).fields(), want);
        }
    }

    /// Every field set, IPv4 addresses, times 1.5 s apart: no aside.
    fn full_v4() -> RecordFields {
        RecordFields {
            rec_id: 7,
            exporter: v4(192, 0, 2, 1),
            srcip: v4(10, 0, 0, 1),
            dstip: v4(10, 0, 0, 2),
            nexthop: v4(0, 0, 0, 0),
            srcport: Some(51000),
            dstport: Some(443),
            prot: Some(6),
            tcp_flags: Some(0x1b),
            tos: Some(32),
            bytes: Some(u64::MAX),
            packets: Some(u64::from(u32::MAX)),
            stime: 1_700_000_000_000,
            etime: 1_700_000_001_500,
            input: Some(u32::MAX),
            output: Some(2),
            src_as: Some(65000),
            dst_as: Some(4_200_000_000),
            src_mask: Some(24),
            dst_mask: Some(128),
            sampling: Some(u32::from(u16::MAX)),
            extra: Vec::new(),
        }
    }

    /// Each field's value through `get` as the wide form gives it.
    fn check_get(r: &Record, f: &RecordFields) {
        let ip = |v: Option<IpAddr>| v.map(Value::Ip);
        let u = |v: Option<u64>| v.map(Value::Uint);
        assert_eq!(r.get(Field::RecId), Some(Value::Uint(f.rec_id)));
        assert_eq!(r.get(Field::Exporter), ip(f.exporter));
        assert_eq!(r.get(Field::SrcIp), ip(f.srcip));
        assert_eq!(r.get(Field::DstIp), ip(f.dstip));
        assert_eq!(r.get(Field::NextHop), ip(f.nexthop));
        assert_eq!(r.get(Field::SrcPort), u(f.srcport.map(u64::from)));
        assert_eq!(r.get(Field::DstPort), u(f.dstport.map(u64::from)));
        assert_eq!(r.get(Field::Prot), u(f.prot.map(u64::from)));
        assert_eq!(r.get(Field::TcpFlags), u(f.tcp_flags.map(u64::from)));
        assert_eq!(r.get(Field::Tos), u(f.tos.map(u64::from)));
        assert_eq!(r.get(Field::Bytes), u(f.bytes));
        assert_eq!(r.get(Field::Packets), u(f.packets));
        assert_eq!(r.get(Field::Stime), Some(Value::Uint(time_to_u64(f.stime))));
        assert_eq!(r.get(Field::Etime), Some(Value::Uint(time_to_u64(f.etime))));
        let dur = u64::try_from(f.etime.saturating_sub(f.stime)).unwrap_or(0);
        assert_eq!(r.get(Field::Duration), Some(Value::Uint(dur)));
        assert_eq!(r.get(Field::Input), u(f.input.map(u64::from)));
        assert_eq!(r.get(Field::Output), u(f.output.map(u64::from)));
        assert_eq!(r.get(Field::SrcAs), u(f.src_as.map(u64::from)));
        assert_eq!(r.get(Field::DstAs), u(f.dst_as.map(u64::from)));
        assert_eq!(r.get(Field::SrcMask), u(f.src_mask.map(u64::from)));
        assert_eq!(r.get(Field::DstMask), u(f.dst_mask.map(u64::from)));
        let sampling = u64::from(f.sampling.unwrap_or(1));
        assert_eq!(r.get(Field::Sampling), Some(Value::Uint(sampling)));
        for (id, v) in &f.extra {
            assert_eq!(r.get(Field::Extra(*id)), Some(v.clone()));
        }
        for field in [Field::Bytes, Field::Packets, Field::SrcPort, Field::RecId] {
            assert_eq!(r.get_uint(field).map(Value::Uint), r.get(field));
        }
    }

    fn round_trip(f: RecordFields) -> Record {
        let r = Record::from(f.clone());
        assert_eq!(r.fields(), f);
        check_get(&r, &f);
        assert_eq!(Record::from(r.fields()), r);
        r
    }

    #[test]
    fn record_fits_the_memory_budget() {
        // 88 + the Arc's two counts = 104 bytes: a 112-byte malloc chunk.
        assert!(size_of::<Record>() <= 88, "{}", size_of::<Record>());
    }

    #[test]
    fn ipv4_record_is_all_inline() {
        let r = round_trip(full_v4());
        assert!(r.aside.is_none());
        assert_eq!(r.aside_bytes(), 0);
        assert!(round_trip(RecordFields::default()).aside.is_none());
    }

    #[test]
    fn ipv6_addresses_go_aside_and_back() {
        for slot in 0..4 {
            let mut f = full_v4();
            let addr = v6(slot as u16 + 1);
            match slot {
                0 => f.exporter = addr,
                1 => f.srcip = addr,
                2 => f.dstip = addr,
                _ => f.nexthop = addr,
            }
            let mut r = round_trip(f);
            assert!(r.aside.is_some());
            // Back to IPv4: the aside has nothing left and goes.
            r.set_ip_at(slot, v4(1, 2, 3, 4));
            assert_eq!(r.ip_at(slot), v4(1, 2, 3, 4));
            assert!(r.aside.is_none());
        }
        // An IPv4-mapped IPv6 address stays IPv6.
        let mapped = Some(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()));
        let r = round_trip(RecordFields {
            srcip: mapped,
            ..full_v4()
        });
        assert_eq!(r.srcip(), mapped);
        assert_ne!(r.srcip(), v4(10, 0, 0, 1));
    }

    #[test]
    fn long_and_negative_durations_go_aside() {
        let s = 1_700_000_000_000;
        for etime in [
            s + i64::from(u32::MAX) + 1,
            s - 1,
            i64::MIN,
            s + 365 * 86_400_000,
        ] {
            let r = round_trip(RecordFields {
                stime: s,
                etime,
                ..full_v4()
            });
            assert!(r.aside.is_some());
            assert_eq!((r.stime(), r.etime()), (s, etime));
        }
        let longest = round_trip(RecordFields {
            stime: s,
            etime: s + i64::from(u32::MAX),
            ..full_v4()
        });
        assert!(longest.aside.is_none());
        assert_eq!(longest.duration(), u64::from(u32::MAX));
        // Extreme times themselves are not a problem.
        for t in [i64::MIN, -1, 0, i64::MAX] {
            let r = round_trip(RecordFields {
                stime: t,
                etime: t,
                ..RecordFields::default()
            });
            assert!(r.aside.is_none());
        }
    }

    #[test]
    fn setting_one_time_keeps_the_other() {
        let mut r = Record::default();
        r.set_stime(5_000);
        assert_eq!((r.stime(), r.etime()), (5_000, 0));
        r.set_etime(9_000);
        assert_eq!((r.stime(), r.etime()), (5_000, 9_000));
        // The reversed pair needed the aside only until etime came.
        assert!(r.aside.is_none());
        r.set_stime(8_000);
        assert_eq!((r.stime(), r.etime(), r.duration()), (8_000, 9_000, 1_000));
        r.set_times(1, 2);
        assert_eq!((r.stime(), r.etime()), (1, 2));
    }

    #[test]
    fn wide_counters_go_aside() {
        let r = round_trip(RecordFields {
            packets: Some(u64::from(u32::MAX) + 1),
            sampling: Some(u32::from(u16::MAX) + 1),
            ..full_v4()
        });
        assert!(r.aside.is_some());
        let mut r = r;
        r.set_packets(Some(3));
        r.set_sampling(None);
        assert_eq!((r.packets(), r.sampling()), (Some(3), None));
        assert!(r.aside.is_none());
    }

    #[test]
    fn extras_go_aside() {
        let extra = vec![
            (58, Value::Uint(42)),
            (56, Value::Text(Arc::from("00:01:02:03:04:05"))),
            (63, Value::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))),
        ];
        let mut r = round_trip(RecordFields {
            extra: extra.clone(),
            ..full_v4()
        });
        assert_eq!(r.extra(), &extra[..]);
        assert!(r.aside_bytes() >= size_of::<Aside>());
        assert_eq!(r.get(Field::Extra(1)), None);
        let present: Vec<Field> = r.present_fields().map(|(f, _)| f).collect();
        assert_eq!(present[present.len() - 3..], [58, 56, 63].map(Field::Extra));
        r.push_extra(1, Value::Uint(5));
        assert_eq!(r.get(Field::Extra(1)), Some(Value::Uint(5)));
        let mut plain = Record::from(full_v4());
        plain.set_extra(Vec::new());
        assert!(plain.aside.is_none());
    }

    #[test]
    fn records_with_the_same_extras_share_one_aside_until_one_changes() {
        let extra = [(61, Value::Uint(0)), (55, Value::Uint(0))];
        let mut cache = ExtrasCache::default();
        let mut a = Record::from(full_v4());
        let mut b = Record::from(full_v4());
        a.set_extra_shared(&extra, &mut cache);
        b.set_extra_shared(&extra, &mut cache);
        let shared = |r: &Record| r.aside.as_ref().map(Arc::as_ptr);
        assert_eq!(shared(&a), shared(&b));
        assert_eq!(b.extra(), &extra[..]);
        // Other extras: an aside of its own, which the cache now holds
        // next to the first.
        let mut c = Record::from(full_v4());
        c.set_extra_shared(&extra[..1], &mut cache);
        assert_ne!(shared(&c), shared(&a));
        let mut e = Record::from(full_v4());
        e.set_extra_shared(&extra, &mut cache);
        assert_eq!(shared(&e), shared(&a));
        // Changing a shared aside copies it first.
        b.set_srcip(Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        b.push_extra(1, Value::Uint(5));
        assert_eq!(a.extra(), &extra[..]);
        assert_eq!(a.srcip(), full_v4().srcip);
        assert_eq!(b.extra().len(), 3);
        // A record that has an aside already keeps it.
        let mut d = Record::from(full_v4());
        d.set_dstip(Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        d.set_extra_shared(&extra, &mut cache);
        assert_eq!(d.extra(), &extra[..]);
        assert_eq!(d.dstip(), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    #[test]
    fn equality_ignores_how_fields_are_stored() {
        // Same fields, one record with a left-over empty aside.
        let a = Record::from(full_v4());
        let mut b = Record::from(full_v4());
        b.extra_mut().clear();
        assert!(b.aside.is_some());
        assert_eq!(a, b);
        b.set_tos(None);
        assert_ne!(a, b);
        let mut c = a.clone();
        c.set_srcip(v6(1));
        assert_ne!(a, c);
        c.set_srcip(a.srcip());
        assert_eq!(a, c);
        assert_eq!(
            format!("{a:?}").replace("Record {", "RecordFields {"),
            format!("{:?}", a.fields())
        );
    }

    #[test]
    fn absent_fields_stay_absent() {
        let mut r = Record::from(full_v4());
        r.set_srcport(None);
        r.set_exporter(None);
        r.set_bytes(None);
        assert_eq!((r.srcport(), r.exporter(), r.bytes()), (None, None, None));
        assert_eq!(r.get_uint(Field::SrcPort), None);
        assert_eq!(r.get(Field::Exporter), None);
        assert_eq!(Record::from(r.fields()), r);
    }
}
