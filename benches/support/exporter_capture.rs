//! A real exporter's NetFlow v9 capture (e.g. softflowd's export of a packet
//! capture, see benches/cluster.sh), looped to any number of records as if
//! one exporter had kept running: loop k is the capture with its clock moved
//! k × span forward (header unix_secs and sysUptime, and the
//! FIRST/LAST_SWITCHED fields of every data record, which are sysUptime
//! times) and its package sequence continued. Templates, options templates
//! and options data stay exactly where the exporter put them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};

const V9_HEADER: usize = 20;
const FIRST_SWITCHED: u16 = 22;
const LAST_SWITCHED: u16 = 21;

/// What the walker needs of a template: record length, and for data
/// templates where the two sysUptime times sit.
#[derive(Clone, Debug)]
struct Template {
    len: usize,
    /// Offsets of 4-byte FIRST/LAST_SWITCHED fields (empty for options).
    times: Vec<usize>,
    options: bool,
}

/// The capture's datagrams and what the loops need to know about them.
pub struct ExporterCapture {
    pub grams: Vec<Vec<u8>>,
    /// Flow records (data records of data templates) per datagram.
    pub records: Vec<u64>,
    /// How far loop k+1 is moved past loop k, ms (whole seconds).
    pub span_ms: u32,
    /// Package sequence numbers one loop uses.
    pub seq_span: u32,
    pub templates: usize,
    pub options_records: u64,
    pub template_datagrams: usize,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn add32(b: &mut [u8], at: usize, delta: u32) {
    if let Some(v) = be32(b, at) {
        b[at..at + 4].copy_from_slice(&v.wrapping_add(delta).to_be_bytes());
    }
}

/// One data set: template id, body range.
type Set = (u16, usize, usize);

/// The data sets of a v9 datagram, learning templates on the way.
/// Also says whether it held a template or options template set.
fn walk(g: &[u8], templates: &mut HashMap<u16, Template>) -> anyhow::Result<(Vec<Set>, bool)> {
    if be16(g, 0) != Some(9) {
        bail!("not a NetFlow v9 datagram (version {:?})", be16(g, 0));
    }
    let (mut sets, mut had_templates) = (Vec::new(), false);
    let mut at = V9_HEADER;
    while at + 4 <= g.len() {
        let (id, len) = (
            be16(g, at).unwrap_or(0),
            usize::from(be16(g, at + 2).unwrap_or(0)),
        );
        if len < 4 || at + len > g.len() {
            bail!("bad flowset length {len} at {at}");
        }
        let body = &g[at + 4..at + len];
        match id {
            0 => {
                had_templates = true;
                learn_templates(body, templates)
            }
            1 => {
                had_templates = true;
                learn_options(body, templates)
            }
            2..=255 => {}
            _ => sets.push((id, at + 4, at + len)),
        }
        at += len;
    }
    Ok((sets, had_templates))
}

fn learn_templates(mut b: &[u8], templates: &mut HashMap<u16, Template>) {
    while let (Some(id), Some(n)) = (be16(b, 0), be16(b, 2)) {
        let n = usize::from(n);
        let Some(fields) = b.get(4..4 + 4 * n) else {
            return;
        };
        let (mut len, mut times) = (0, Vec::new());
        for f in fields.chunks_exact(4) {
            let (ty, flen) = (
                u16::from_be_bytes([f[0], f[1]]),
                usize::from(u16::from_be_bytes([f[2], f[3]])),
            );
            if (ty == FIRST_SWITCHED || ty == LAST_SWITCHED) && flen == 4 {
                times.push(len);
            }
            len += flen;
        }
        templates.insert(
            id,
            Template {
                len,
                times,
                options: false,
            },
        );
        b = &b[4 + 4 * n..];
    }
}

fn learn_options(mut b: &[u8], templates: &mut HashMap<u16, Template>) {
    while let (Some(id), Some(scope), Some(opts)) = (be16(b, 0), be16(b, 2), be16(b, 4)) {
        let bytes = usize::from(scope) + usize::from(opts);
        let Some(fields) = b.get(6..6 + bytes) else {
            return;
        };
        let len = fields
            .chunks_exact(4)
            .map(|f| usize::from(u16::from_be_bytes([f[2], f[3]])))
            .sum();
        templates.insert(
            id,
            Template {
                len,
                times: Vec::new(),
                options: true,
            },
        );
        // Options template records are padded to 4 bytes only at the set's end.
        b = &b[6 + bytes..];
        if b.len() < 6 {
            return;
        }
    }
}

/// Records of a data set body of `t` (trailing padding is shorter than a record).
fn set_records(t: &Template, body_len: usize) -> u64 {
    body_len.checked_div(t.len).unwrap_or(0) as u64
}

/// Flow time of a sysUptime field in a datagram with this header, ms.
fn flow_ms(secs: u32, uptime: u32, t: u32) -> i64 {
    i64::from(secs) * 1000 - i64::from(uptime.wrapping_sub(t) as i32)
}

impl ExporterCapture {
    /// Read the UDP payloads of `path` (a pcap of one exporter's v9 export).
    pub fn read(path: &Path) -> anyhow::Result<ExporterCapture> {
        let grams: Vec<Vec<u8>> = flowy::input::pcap::datagrams(path)
            .with_context(|| format!("read {}", path.display()))?
            .into_iter()
            .map(|d| d.payload)
            .collect();
        Self::from_grams(grams)
    }

    pub fn from_grams(grams: Vec<Vec<u8>>) -> anyhow::Result<ExporterCapture> {
        let mut templates = HashMap::new();
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        let (mut secs_lo, mut secs_hi) = (u32::MAX, 0);
        let (mut seq_first, mut seq_last) = (None, 0u32);
        let (mut options_records, mut template_datagrams) = (0, 0);
        let mut records = Vec::with_capacity(grams.len());
        for (i, g) in grams.iter().enumerate() {
            let (sets, had_templates) =
                walk(g, &mut templates).with_context(|| format!("datagram {i}"))?;
            template_datagrams += usize::from(had_templates);
            let (uptime, secs, seq) = (
                be32(g, 4).unwrap_or(0),
                be32(g, 8).unwrap_or(0),
                be32(g, 12).unwrap_or(0),
            );
            seq_first.get_or_insert(seq);
            seq_last = seq;
            secs_lo = secs_lo.min(secs);
            secs_hi = secs_hi.max(secs);
            let mut n = 0;
            for (id, start, end) in sets {
                let Some(t) = templates.get(&id) else {
                    continue;
                };
                let k = set_records(t, end - start);
                if t.options {
                    options_records += k;
                    continue;
                }
                n += k;
                for r in 0..k as usize {
                    for &off in &t.times {
                        let v = be32(g, start + r * t.len + off).unwrap_or(uptime);
                        let ms = flow_ms(secs, uptime, v);
                        lo = lo.min(ms);
                        hi = hi.max(ms);
                    }
                }
            }
            records.push(n);
        }
        let Some(seq_first) = seq_first else {
            bail!("the capture holds no datagram");
        };
        let flow_span = if lo <= hi { hi - lo } else { 0 };
        let header_span = i64::from(secs_hi - secs_lo) * 1000;
        // Whole seconds (the header's clock), strictly past the last flow.
        let span_ms = (flow_span.max(header_span) / 1000 + 1) * 1000;
        Ok(ExporterCapture {
            records,
            span_ms: u32::try_from(span_ms).context("capture spans more than 49 days")?,
            seq_span: seq_last.wrapping_sub(seq_first).wrapping_add(1),
            templates: templates.len(),
            options_records,
            template_datagrams,
            grams,
        })
    }

    pub fn total_records(&self) -> u64 {
        self.records.iter().sum()
    }

    /// Loop the capture until at least `want` flow records: the datagrams
    /// and their flow record counts.
    pub fn looped(&self, want: u64) -> (Vec<Vec<u8>>, Vec<u64>) {
        let per_loop = self.total_records().max(1);
        let loops = want.div_ceil(per_loop).max(1);
        let mut grams = Vec::with_capacity(self.grams.len() * loops as usize);
        let mut counts = Vec::with_capacity(grams.capacity());
        for k in 0..loops as u32 {
            let mut templates = HashMap::new();
            for (g, &n) in self.grams.iter().zip(&self.records) {
                let mut g = g.clone();
                if k > 0 {
                    shift(&mut g, k, self.span_ms, self.seq_span, &mut templates);
                }
                grams.push(g);
                counts.push(n);
            }
        }
        (grams, counts)
    }
}

/// Move one datagram of loop `k` forward: clock by k × span, sequence by
/// k × the loop's sequence numbers.
fn shift(
    g: &mut [u8],
    k: u32,
    span_ms: u32,
    seq_span: u32,
    templates: &mut HashMap<u16, Template>,
) {
    let dt = span_ms.wrapping_mul(k);
    let Ok((sets, _)) = walk(g, templates) else {
        return;
    };
    add32(g, 4, dt);
    add32(g, 8, dt / 1000);
    add32(g, 12, seq_span.wrapping_mul(k));
    for (id, start, end) in sets {
        let Some(t) = templates.get(&id) else {
            continue;
        };
        for r in 0..set_records(t, end - start) as usize {
            for &off in &t.times {
                add32(g, start + r * t.len + off, dt);
            }
        }
    }
}
