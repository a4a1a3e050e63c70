//! Fuzz harnesses: one function per `fuzz/` target, shared with
//! `tests/fuzz_regressions.rs`, which replays the committed seeds and every
//! crash found on stable. Not part of the public API.
//!
//! Each harness panics only when the code under test breaks an invariant
//! (or panics itself); malformed input is an `Err`, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::cluster::codec::{self, DecodeError};
use crate::collect::{Decoder, DecoderConfig, TemplateScope};
use crate::input::{self, InputError};
use crate::query::{self, Diagnostics};
use crate::record::Record;

/// The exporters a collector input may speak as: two ports of one address
/// (template scope by port matters), another IPv4 address and an IPv6 one.
const SOURCES: [SocketAddr; 4] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 2055),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 2056),
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 4739),
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        9995,
    ),
];

/// The receiving clock at the first datagram (2026-11-23T00:00:00Z).
const START_MS: i64 = 1_795_392_000_000;

/// A collector input: one configuration byte, then datagrams.
///
/// Configuration byte: bit 0 switches the decoder's fast path off, bit 1
/// scopes templates by address+port, bit 2 applies sampling, bit 3 makes the
/// limits tiny (2 exporter streams, 2 held sets) so eviction is exercised.
///
/// Each datagram is a chunk `[head, len_hi, len_lo, bytes…]`: `head & 3`
/// picks the source, `head >> 2` advances the clock by that many seconds,
/// and a length past the end of the input takes what is left.
pub struct CollectorInput<'a> {
    config: u8,
    rest: &'a [u8],
}

impl<'a> CollectorInput<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        match data.split_first() {
            Some((config, rest)) => Self {
                config: *config,
                rest,
            },
            None => Self {
                config: 0,
                rest: &[],
            },
        }
    }

    fn decoder_config(&self) -> DecoderConfig {
        let tiny = self.config & 8 != 0;
        DecoderConfig {
            template_scope: if self.config & 2 != 0 {
                TemplateScope::AddressPort
            } else {
                TemplateScope::Address
            },
            apply_sampling: self.config & 4 != 0,
            max_pending: if tiny { 2 } else { 64 },
            max_exporters: if tiny { 2 } else { 64 },
            // Tiny budgets make eviction and expiry run on short inputs.
            max_streams_per_source: if tiny { 2 } else { 16 },
            max_state: if tiny { 64 << 10 } else { 4 << 20 },
            pending_ttl_ms: 2_000,
            template_store: None,
            // Short, so that ageing runs on fuzzed timestamps too.
            exporter_idle_ms: 10_000,
        }
    }
}

impl<'a> Iterator for CollectorInput<'a> {
    /// (source, seconds to advance the clock by, datagram)
    type Item = (SocketAddr, i64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&head, rest) = self.rest.split_first()?;
        let (len, rest) = match rest {
            [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (datagram, rest) = rest.split_at(len.min(rest.len()));
        self.rest = rest;
        Some((
            SOURCES[usize::from(head & 3)],
            i64::from(head >> 2),
            datagram,
        ))
    }
}

/// Encode datagrams as a collector input (for seeds and tests).
pub fn collector_input(config: u8, datagrams: &[(usize, u8, &[u8])]) -> Vec<u8> {
    let mut out = vec![config];
    for (source, advance_s, d) in datagrams {
        let len = u16::try_from(d.len()).unwrap_or(u16::MAX);
        out.push(((advance_s & 63) << 2) | (*source as u8 & 3));
        out.extend(len.to_be_bytes());
        out.extend(&d[..usize::from(len)]);
    }
    out
}

/// Feed a sequence of datagrams from several sources to one decoder; the
/// records decoded. Checks that no datagram yields a record attributed to
/// another exporter and that every datagram is counted.
pub fn collector(data: &[u8]) -> Vec<Record> {
    let input = CollectorInput::new(data);
    let input_config = input.decoder_config();
    let mut decoder = Decoder::new(input_config.clone());
    decoder.set_fast_path(input.config & 1 == 0);
    let mut now_ms = START_MS;
    let mut out = Vec::new();
    let mut datagrams = 0u64;
    for (from, advance_s, datagram) in input {
        now_ms += advance_s * 1000;
        let before = out.len();
        decoder.decode(datagram, from, now_ms, &mut out);
        datagrams += 1;
        let limit = decoder_config_limit(&input_config);
        assert!(
            decoder.state_bytes() <= limit,
            "decoder state {} beyond its budget {limit}",
            decoder.state_bytes()
        );
        for r in &out[before..] {
            assert_eq!(
                r.exporter(),
                Some(from.ip()),
                "a datagram from {from} produced a record of another exporter"
            );
        }
    }
    assert_eq!(
        decoder.stats().datagrams,
        datagrams,
        "datagrams not counted"
    );
    // What the daemon lets through the time check is writable.
    let mut counts = crate::sanity::ImplausibleCounts::default();
    crate::sanity::TimeSanity::live(600_000).retain(&mut out, now_ms, &mut counts);
    for r in &out {
        let text = crate::output::format_time(r.stime()) + &crate::output::format_time(r.etime());
        assert!(
            !text.contains("ms"),
            "an unwritable time passed the check: {text}"
        );
    }
    out
}

/// The decoder's byte budget with slack for the one stream it may hold
/// while it decides what to evict.
fn decoder_config_limit(cfg: &DecoderConfig) -> usize {
    cfg.max_state + (1 << 20)
}

/// Where reader errors say the input came from.
fn label() -> &'static Path {
    Path::new("fuzz-input")
}

/// The flow-tools reader on a file image.
pub fn flowtools(data: &[u8]) -> Result<Vec<Record>, InputError> {
    checked_ids(input::flowtools::parse(label(), data))
}

/// The pcap/pcapng reader (captures of export datagrams) on a file image.
pub fn pcap(data: &[u8]) -> Result<Vec<Record>, InputError> {
    checked_ids(input::pcap::parse(label(), data))
}

/// The IPFIX file reader on a file image.
pub fn ipfix_file(data: &[u8]) -> Result<Vec<Record>, InputError> {
    checked_ids(input::ipfix::parse(label(), data))
}

/// The nfcapd reader on a file image.
pub fn nfcapd(data: &[u8]) -> Result<Vec<Record>, InputError> {
    checked_ids(input::nfcapd::parse(label(), data))
}

/// The `nfdump -o json` reader on a file image.
pub fn nfdump_json(data: &[u8]) -> Result<Vec<Record>, InputError> {
    checked_ids(input::nfdump_json::parse(label(), data))
}

/// The GoFlow2 JSON reader on a file image (rec_id is the line index).
pub fn goflow2(data: &[u8]) -> Result<Vec<Record>, InputError> {
    input::goflow2::parse(label(), data)
}

/// The JSON Lines reader on a file image.
pub fn jsonl(data: &[u8]) -> Result<Vec<Record>, InputError> {
    input::jsonl::from_reader(label(), data)
}

/// Every file reader numbers its records 0, 1, 2, … (SPEC: `rec_id` =
/// index in the file).
fn checked_ids(read: Result<Vec<Record>, InputError>) -> Result<Vec<Record>, InputError> {
    if let Ok(records) = &read {
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.rec_id(), i as u64, "rec_id is not the index in the file");
        }
    }
    read
}

/// Compile query source text (any bytes, read as lossy UTF-8); a compiled
/// plan is explained, and every diagnostic is rendered. Returns the plan's
/// branch count or the diagnostics.
pub fn query(data: &[u8]) -> Result<usize, Diagnostics> {
    let source = String::from_utf8_lossy(data);
    match query::compile_source("fuzz", "fuzz.flowy", &source) {
        Ok(plan) => {
            let text = query::explain(&plan);
            assert!(!text.is_empty(), "empty explanation");
            Ok(plan.branches.len())
        }
        Err(diags) => {
            assert!(!diags.is_empty(), "a failed compile without a diagnostic");
            let rendered = diags.render();
            for d in &diags.errors {
                assert!(d.line >= 1 && d.col >= 1, "diagnostic position {d:?}");
            }
            // First and last only: searching for every message is quadratic.
            // Each is looked for from its own end of the text, where it is.
            if let Some(first) = diags.errors.first() {
                assert!(rendered.contains(&first.message), "diagnostic not rendered");
            }
            if let Some(last) = diags.errors.last() {
                assert!(
                    rendered.rfind(&last.message).is_some(),
                    "diagnostic not rendered"
                );
            }
            Err(diags)
        }
    }
}

/// Decode a cluster record batch; an accepted batch must agree with its
/// peeked header, and encoding its records again must give a batch that
/// decodes to the same header and records.
pub fn cluster_batch(data: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let (header, records) = codec::decode_batch(data)?;
    assert_eq!(
        codec::peek_header(data),
        Ok(header),
        "peek and decode disagree"
    );
    assert_eq!(records.len(), header.count as usize, "record count");
    let mut again = Vec::with_capacity(data.len());
    codec::encode_marked_batch(
        header.collector,
        header.sent_ms,
        header.mark_ms,
        &records,
        &mut again,
    );
    match codec::decode_batch(&again) {
        Ok((h, r)) => {
            assert_eq!(h, header, "re-encoded header");
            assert!(r == records, "re-encoded records differ");
        }
        Err(e) => panic!("a re-encoded batch is refused: {e}"),
    }
    Ok(records)
}
