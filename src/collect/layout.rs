//! A v9 / IPFIX template compiled to byte offsets, and the per-exporter cache
//! of such layouts.
//!
//! A layout lets the decoder's fast path (`fastpath.rs`) hand every field of a
//! data record to `RecordBuilder::set` as a slice of the datagram, without
//! netflow_parser building a `Vec<(field, FieldValue)>` per record only to be
//! turned back into bytes. Layouts are compiled only from templates that
//! netflow_parser itself accepted (they come from its parse output), so the
//! parser stays the authority on which templates exist; a layout is merely a
//! faster way to read data the parser would read the same way.
//!
//! Values must be byte-for-byte what the slow path sees after
//! `FieldValue::write_be_bytes`. For most data types that is the wire slice
//! itself; for the few types netflow_parser normalises (flag words, enums,
//! floats) the layout either maps the byte through a table computed with the
//! parser, or runs the parser on that one field (`Conv`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use netflow_parser::variable_versions::ipfix::{
    OptionsTemplate as IpfixOptionsTemplate, Template as IpfixTemplate, TemplateField as IpfixField,
};
use netflow_parser::variable_versions::v9::{
    OptionsTemplate as V9OptionsTemplate, Template as V9Template,
};
use netflow_parser::{FieldDataType, FieldValue};

/// IPFIX field length announcing variable-length encoding (RFC 7011 §7).
pub(super) const VARLEN: u16 = u16::MAX;

/// How a field's wire bytes become the bytes the slow path would see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Conv {
    /// The wire bytes unchanged.
    Raw,
    /// A one-byte field the parser normalises: byte → byte. One table per
    /// data type for the whole process (`table_for`), so learning a template
    /// costs O(its fields) and a layout holds a pointer, not 256 bytes.
    Table(&'static [u8; 256]),
    /// Let the parser decode and re-encode the value.
    Parse(FieldDataType),
}

/// One template field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FieldSpec {
    /// Element id handed to `RecordBuilder::set`; `None` for fields the slow
    /// path ignores too (IPFIX enterprise fields, v9 options scope fields).
    pub(super) id: Option<u16>,
    /// Byte offset in a fixed-length record (unused with variable lengths).
    pub(super) offset: usize,
    /// Wire length, or `VARLEN`.
    pub(super) len: u16,
    pub(super) conv: Conv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Flow records.
    Data,
    /// Options records: they only teach the exporter options.
    Options,
}

/// The wire definition a layout was compiled from: (type with enterprise
/// bit, length, enterprise number) per field in wire order, then the kind.
type Signature = Vec<(u16, u16, u32)>;

/// A template compiled to byte offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) kind: Kind,
    pub(super) fields: Vec<FieldSpec>,
    /// Record length when every field has a fixed length.
    pub(super) fixed: Option<usize>,
    /// Smallest possible record (a variable-length field counts 1 byte).
    pub(super) min_len: usize,
    signature: Signature,
}

/// A layout, or `None` for a template whose data only the slow path decodes.
type Compiled = Option<Layout>;

/// A data type whose `write_be_bytes` reproduces the wire bytes for every
/// length (given that `from_field_type` succeeds).
fn wire_exact(dt: FieldDataType) -> bool {
    matches!(
        dt,
        FieldDataType::UnsignedDataNumber
            | FieldDataType::SignedDataNumber
            | FieldDataType::String
            | FieldDataType::Ip4Addr
            | FieldDataType::Ip6Addr
            | FieldDataType::MacAddr
            | FieldDataType::Vec
            | FieldDataType::Unknown
            | FieldDataType::DurationSeconds
            | FieldDataType::DurationMillis
            | FieldDataType::DurationMicrosNTP
            | FieldDataType::DurationNanosNTP
            | FieldDataType::ApplicationId
    )
}

/// Lengths at which netflow_parser decodes a normalising type as such; at any
/// other length it keeps the raw bytes (`FieldValue::Vec`).
fn normalised_at(dt: FieldDataType, len: u16) -> bool {
    match dt {
        FieldDataType::TcpControlBits => matches!(len, 1 | 2),
        FieldDataType::Ipv6ExtensionHeaders | FieldDataType::Ipv4Options => len == 4,
        FieldDataType::TcpOptions | FieldDataType::Float64 => len == 8,
        FieldDataType::ProtocolType
        | FieldDataType::ForwardingStatus
        | FieldDataType::FragmentFlags
        | FieldDataType::IsMulticast
        | FieldDataType::MplsLabelExp
        | FieldDataType::FlowEndReason
        | FieldDataType::NatEvent
        | FieldDataType::FirewallEvent
        | FieldDataType::MplsTopLabelType
        | FieldDataType::NatOriginatingAddressRealm => len == 1,
        // Types added to netflow_parser later: assume they normalise.
        _ => !wire_exact(dt),
    }
}

/// What the slow path makes of `raw`: `None` when netflow_parser refuses the
/// value (which ends the set there).
pub(super) fn parser_bytes(dt: FieldDataType, raw: &[u8], buf: &mut Vec<u8>) -> Option<()> {
    let len = u16::try_from(raw.len()).ok()?;
    let (_, v) = FieldValue::from_field_type(raw, dt, len).ok()?;
    buf.clear();
    if v.write_be_bytes(buf).is_err() {
        buf.clear();
    }
    Some(())
}

/// `None` when a fixed-length field can never be decoded (netflow_parser
/// refuses a zero-length application id), so no record of the template can.
fn conv_for(dt: FieldDataType, len: u16) -> Option<Conv> {
    if len == 0 && dt == FieldDataType::ApplicationId {
        return None;
    }
    if len == VARLEN {
        return Some(if wire_exact(dt) {
            Conv::Raw
        } else {
            Conv::Parse(dt)
        });
    }
    if !normalised_at(dt, len) {
        return Some(Conv::Raw);
    }
    if len != 1 {
        return Some(Conv::Parse(dt));
    }
    Some(table_for(dt))
}

/// What a one-byte field of type `dt` needs: computed once per data type
/// (at most a few dozen types, 256 bytes each, for the life of the process).
fn table_for(dt: FieldDataType) -> Conv {
    static TABLES: OnceLock<Mutex<Vec<(FieldDataType, Conv)>>> = OnceLock::new();
    let tables = TABLES.get_or_init(|| Mutex::new(Vec::new()));
    // A poisoned lock only means another thread panicked mid-push; the
    // entries already there are complete.
    let mut tables = tables.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, conv)) = tables.iter().find(|(t, _)| *t == dt) {
        return conv.clone();
    }
    let conv = build_table(dt);
    tables.push((dt, conv.clone()));
    conv
}

#[cfg(test)]
thread_local! {
    /// Parser calls made to build conversion tables on this thread.
    pub(super) static TABLE_PROBES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn build_table(dt: FieldDataType) -> Conv {
    let mut table = [0u8; 256];
    let mut buf = Vec::with_capacity(2);
    for (b, slot) in (0..=255u8).zip(table.iter_mut()) {
        #[cfg(test)]
        TABLE_PROBES.with(|c| c.set(c.get() + 1));
        match parser_bytes(dt, &[b], &mut buf) {
            Some(()) if buf.len() == 1 => *slot = buf[0],
            _ => return Conv::Parse(dt),
        }
    }
    let identity = table.iter().enumerate().all(|(i, b)| usize::from(*b) == i);
    if identity {
        Conv::Raw
    } else {
        Conv::Table(Box::leak(Box::new(table)))
    }
}

/// Offsets, record lengths and conversions for fields given in wire order.
fn build(
    kind: Kind,
    fields: impl Iterator<Item = (Option<u16>, u16, FieldDataType)>,
    signature: Signature,
) -> Compiled {
    let mut specs = Vec::new();
    let (mut offset, mut min_len, mut varlen) = (0usize, 0usize, false);
    for (id, len, dt) in fields {
        let conv = conv_for(dt, len)?;
        specs.push(FieldSpec {
            id,
            offset,
            len,
            conv,
        });
        if len == VARLEN {
            varlen = true;
            min_len += 1;
        } else {
            offset += usize::from(len);
            min_len += usize::from(len);
        }
    }
    if specs.is_empty() || min_len == 0 {
        return None;
    }
    Some(Layout {
        kind,
        fields: specs,
        fixed: (!varlen).then_some(offset),
        min_len,
        signature,
    })
}

/// A template definition netflow_parser accepted.
#[derive(Clone, Copy)]
pub(super) enum Def<'t> {
    V9Data(&'t V9Template),
    V9Options(&'t V9OptionsTemplate),
    IpfixData(&'t IpfixTemplate),
    IpfixOptions(&'t IpfixOptionsTemplate),
}

impl Def<'_> {
    fn signature(self) -> Signature {
        fn ipfix(fields: &[IpfixField]) -> Signature {
            fields
                .iter()
                .map(|f| {
                    let ent = f.enterprise_number;
                    let ty = f.field_type_number | if ent.is_some() { 0x8000 } else { 0 };
                    (ty, f.field_length, ent.unwrap_or(0))
                })
                .collect()
        }
        let (code, mut sig): (u16, Signature) = match self {
            Def::V9Data(t) => (
                0,
                t.fields
                    .iter()
                    .map(|f| (f.field_type_number, f.field_length, 0))
                    .collect(),
            ),
            Def::V9Options(t) => {
                let scope = t
                    .scope_fields
                    .iter()
                    .map(|f| (f.field_type_number, f.field_length, 0));
                let opts = t
                    .option_fields
                    .iter()
                    .map(|f| (f.field_type_number, f.field_length, 1));
                (1, scope.chain(opts).collect())
            }
            Def::IpfixData(t) => (2, ipfix(&t.fields)),
            Def::IpfixOptions(t) => (3, ipfix(&t.fields)),
        };
        // The kind is part of the definition.
        sig.push((code, 0, u32::MAX));
        sig
    }

    fn compile(self, sig: Signature) -> Compiled {
        fn ipfix(fields: &[IpfixField], kind: Kind, sig: Signature) -> Compiled {
            let specs = fields.iter().map(|f| {
                (
                    super::packets::ipfix_id(&f.field_type),
                    f.field_length,
                    FieldDataType::from(f.field_type),
                )
            });
            build(kind, specs, sig)
        }
        match self {
            Def::V9Data(t) => {
                let fields = t.fields.iter().map(|f| {
                    let dt = FieldDataType::from(f.field_type);
                    (Some(u16::from(f.field_type)), f.field_length, dt)
                });
                build(Kind::Data, fields, sig)
            }
            Def::V9Options(t) => {
                // The parser keeps scope values as raw bytes; flowy ignores them.
                let scope = t
                    .scope_fields
                    .iter()
                    .map(|f| (None, f.field_length, FieldDataType::Vec));
                let opts = t.option_fields.iter().map(|f| {
                    let dt = FieldDataType::from(f.field_type);
                    (Some(u16::from(f.field_type)), f.field_length, dt)
                });
                build(Kind::Options, scope.chain(opts), sig)
            }
            Def::IpfixData(t) => ipfix(&t.fields, Kind::Data, sig),
            Def::IpfixOptions(t) => ipfix(&t.fields, Kind::Options, sig),
        }
    }
}

/// Bound on templates whose fast-path use is remembered for the parser's LRU.
const MAX_TOUCHED: usize = 1024;

/// Layouts of one exporter stream, by template id.
#[derive(Debug, Default)]
pub(super) struct LayoutCache {
    map: HashMap<u16, Layout>,
    /// Template ids used by the fast path since the parser last saw data,
    /// least recently used first (see `fastpath::sync_lru`).
    touched: Vec<u16>,
}

impl LayoutCache {
    pub(super) fn get(&self, id: u16) -> Option<&Layout> {
        self.map.get(&id)
    }

    /// The parser (re)defined template `id`: compile the new definition
    /// (unless it is unchanged: exporters re-announce templates every few
    /// packets), or forget the old layout when the new one has none.
    pub(super) fn learn(&mut self, id: u16, def: Def<'_>) {
        let sig = def.signature();
        if self.map.get(&id).is_some_and(|l| l.signature == sig) {
            return;
        }
        match def.compile(sig) {
            Some(l) => {
                self.map.insert(id, l);
            }
            None => {
                self.map.remove(&id);
            }
        }
    }

    pub(super) fn forget(&mut self, id: u16) {
        self.map.remove(&id);
    }

    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.touched.clear();
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(u16) -> bool) {
        self.map.retain(|id, _| keep(*id));
    }

    /// Remember that the fast path used template `id` now.
    pub(super) fn touch(&mut self, id: u16) {
        if self.touched.last() == Some(&id) {
            return;
        }
        self.touched.retain(|t| *t != id);
        if self.touched.len() >= MAX_TOUCHED {
            self.touched.remove(0);
        }
        self.touched.push(id);
    }

    pub(super) fn take_touched(&mut self) -> Vec<u16> {
        std::mem::take(&mut self.touched)
    }
}

/// The records of one data set, as byte slices per field.
///
/// Mirrors netflow_parser: at most `max_records` records; trailing bytes
/// shorter than a record are padding; with variable-length fields a record
/// that does not fit, or a zero length (RFC 7011 §7), ends the set.
pub(super) struct Records<'a> {
    layout: &'a Layout,
    rest: &'a [u8],
    left: usize,
}

impl<'a> Records<'a> {
    pub(super) fn new(layout: &'a Layout, body: &'a [u8], max_records: usize) -> Self {
        Self {
            layout,
            rest: body,
            left: max_records,
        }
    }

    /// Hand the next record's fields, in template order, to `each`; `false`
    /// at the end of the set. When a field does not fit, or `each` refuses a
    /// value, the record is incomplete and the set ends there.
    pub(super) fn next_record(
        &mut self,
        mut each: impl FnMut(&'a FieldSpec, &'a [u8]) -> bool,
    ) -> bool {
        if self.left == 0 || self.rest.is_empty() {
            return false;
        }
        let complete = match self.layout.fixed {
            Some(size) => self.rest.split_at_checked(size).and_then(|(rec, rest)| {
                for f in &self.layout.fields {
                    let v = rec.get(f.offset..f.offset + usize::from(f.len))?;
                    if !each(f, v) {
                        return None;
                    }
                }
                Some(rest)
            }),
            None => {
                let mut at = self.rest;
                self.layout
                    .fields
                    .iter()
                    .try_for_each(|f| {
                        let (v, after) = take_field(at, f.len)?;
                        at = after;
                        each(f, v).then_some(())
                    })
                    .map(|()| at)
            }
        };
        match complete {
            Some(rest) => {
                self.rest = rest;
                self.left -= 1;
                true
            }
            None => {
                self.left = 0;
                false
            }
        }
    }
}

/// One field value and what follows it; `None` when it does not fit or a
/// variable length is zero.
fn take_field(b: &[u8], len: u16) -> Option<(&[u8], &[u8])> {
    if len != VARLEN {
        return b.split_at_checked(usize::from(len));
    }
    let (&first, rest) = b.split_first()?;
    let (n, rest) = if first == 255 {
        let (n, rest) = rest.split_at_checked(2)?;
        (usize::from(u16::from_be_bytes([n[0], n[1]])), rest)
    } else {
        (usize::from(first), rest)
    };
    if n == 0 {
        return None;
    }
    rest.split_at_checked(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_follow_the_parser() {
        // Plain numbers and addresses are the wire bytes.
        assert_eq!(
            conv_for(FieldDataType::UnsignedDataNumber, 3),
            Some(Conv::Raw)
        );
        assert_eq!(conv_for(FieldDataType::Ip6Addr, 16), Some(Conv::Raw));
        // A two-byte TCP flag word loses bits above 0x1ff in the parser.
        assert_eq!(
            conv_for(FieldDataType::TcpControlBits, 2),
            Some(Conv::Parse(FieldDataType::TcpControlBits))
        );
        // The protocol byte round-trips, so it needs no table.
        assert_eq!(conv_for(FieldDataType::ProtocolType, 1), Some(Conv::Raw));
        assert_eq!(conv_for(FieldDataType::ApplicationId, 0), None);
        let mut buf = Vec::new();
        assert!(parser_bytes(FieldDataType::TcpControlBits, &[0xfe, 0x12], &mut buf).is_some());
        assert_eq!(buf, [0x00, 0x12]);
    }

    #[test]
    fn varlen_records() {
        let layout = build(
            Kind::Data,
            [
                (Some(4), 1, FieldDataType::UnsignedDataNumber),
                (Some(82), VARLEN, FieldDataType::String),
            ]
            .into_iter(),
            Vec::new(),
        )
        .expect("layout");
        assert_eq!((layout.fixed, layout.min_len), (None, 2));
        let body = [6, 2, b'a', b'b', 17, 255, 0, 1, b'c', 1, 0];
        let mut r = Records::new(&layout, &body, 1024);
        let mut v: Vec<&[u8]> = Vec::new();
        assert!(r.next_record(|_, x| {
            v.push(x);
            true
        }));
        assert!(r.next_record(|_, x| {
            v.push(x);
            true
        }));
        assert_eq!(v, [&[6][..], b"ab", &[17], b"c"]);
        // Zero length ends the set.
        assert!(!r.next_record(|_, _| true));
    }
}
