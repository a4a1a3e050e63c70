//! Streaming input (SPEC §3.1 "Bounded memory"): the readers decode block
//! by block and hand records out as they go.
//!
//! `streaming_reads_what_the_whole_file_readers_read` replays every test
//! input of the repository — each format, gzip, and truncated, corrupted and
//! lying variants — against `tests/data/streaming-golden.txt`, which holds
//! what the whole-buffer readers produced before the readers streamed
//! (record count and a hash of the records, or the error). Regenerate it
//! only on purpose: `FLOWY_BLESS_GOLDEN=1 cargo test --test input_streaming`.

#[path = "daemon_support/packets.rs"]
#[allow(dead_code)]
mod packets;
mod support;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use flowy::input::{self, InputError, InputFormat, InputOptions, ReadSummary};
use flowy::record::Record;
use support::{repo, trace};

const GOLDEN: &str = "tests/data/streaming-golden.txt";

/// Deterministic xorshift, so the variants are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// FNV-1a: a hash that is the same on every platform and toolchain.
fn fnv(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Hashes records as they come, in order.
struct RecordHash {
    hash: u64,
    count: u64,
    line: String,
}

impl RecordHash {
    fn new() -> Self {
        RecordHash {
            hash: FNV_START,
            count: 0,
            line: String::new(),
        }
    }

    fn add(&mut self, r: &Record) {
        self.line.clear();
        writeln!(self.line, "{r:?}").expect("format");
        self.hash = fnv(self.hash, self.line.as_bytes());
        self.count += 1;
    }

    fn describe(&self, s: &ReadSummary) -> String {
        format!(
            "ok n={} h={:016x} files={} skipped={} read={}",
            self.count, self.hash, s.files, s.skipped, s.records
        )
    }
}

/// A run's outcome as one line, with the temporary directory written `<dir>`.
fn outcome(result: Result<String, InputError>, dir: &Path) -> String {
    match result {
        Ok(s) => s,
        Err(e) => format!(
            "err {}",
            e.to_string().replace(&dir.display().to_string(), "<dir>")
        ),
    }
}

fn via_read_inputs(paths: &[PathBuf], opts: &InputOptions) -> Result<String, InputError> {
    let (recs, summary) = input::read_inputs(paths, opts, |_| {})?;
    let mut h = RecordHash::new();
    recs.iter().for_each(|r| h.add(r));
    Ok(h.describe(&summary))
}

/// One input: a name for the golden file, its bytes, its format (`None`
/// when no reader is meant to accept it).
struct Sample {
    name: String,
    bytes: Vec<u8>,
    format: Option<InputFormat>,
    /// Also run truncated, corrupted and lying versions of it.
    variants: bool,
}

fn sample(name: &str, bytes: Vec<u8>, format: Option<InputFormat>, variants: bool) -> Sample {
    Sample {
        name: name.to_string(),
        bytes,
        format,
        variants,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// The IPFIX trace's first messages, one per datagram.
fn ipfix_datagrams() -> Vec<(i64, Vec<u8>)> {
    let ipfix = std::fs::read(trace("trace-2009.ipfix")).expect("trace");
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 4 <= ipfix.len() && out.len() < 40 {
        let len = usize::from(u16::from_be_bytes([ipfix[at + 2], ipfix[at + 3]]));
        out.push((1_260_000_000_000 + at as i64, ipfix[at..at + len].to_vec()));
        at += len;
    }
    out
}

fn pcapng_of(datagrams: &[(i64, Vec<u8>)]) -> Vec<u8> {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;
    let exporter = "192.0.2.1:4739".parse().expect("addr");
    let collector = "192.0.2.9:4739".parse().expect("addr");
    let mut w = PcapNgWriter::new(Vec::new()).expect("pcapng");
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 65535,
        options: vec![],
    })
    .expect("idb");
    for (at, d) in datagrams {
        let frame = packets::udp_frame(exporter, collector, d);
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_millis(*at as u64),
            original_len: frame.len() as u32,
            data: Cow::Owned(frame),
            options: vec![],
        })
        .expect("epb");
    }
    w.into_inner()
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every test input of the repository, each format at least once.
fn samples(dir: &Path) -> Vec<Sample> {
    use InputFormat::*;
    let mut out = vec![
        sample(
            "trace-2009.ftz",
            read(&trace("trace-2009.ftz")),
            Some(FlowTools),
            true,
        ),
        sample(
            "trace-2012.ftz",
            read(&trace("trace-2012.ftz")),
            Some(FlowTools),
            false,
        ),
        sample(
            "trace-2009.ipfix",
            read(&trace("trace-2009.ipfix")),
            Some(Ipfix),
            true,
        ),
        sample(
            "trace-2009.silk.gz",
            read(&trace("trace-2009.silk.gz")),
            None,
            false,
        ),
        sample(
            "bad-line.jsonl",
            read(&repo("tests/data/bad-line.jsonl")),
            Some(Jsonl),
            false,
        ),
    ];
    for name in [
        "v9",
        "v9-lz4",
        "v9-lzo",
        "v9-zstd",
        "v9-bz2",
        "v5-sampled",
        "ipfix-ext",
        "ipfix-sampled",
    ] {
        let p = repo(&format!("tests/data/nfcapd/{name}.nfcapd"));
        out.push(sample(
            &format!("{name}.nfcapd"),
            read(&p),
            Some(Nfcapd),
            true,
        ));
    }
    for name in ["v9", "v5-sampled", "ipfix-ext", "ipfix-sampled"] {
        let p = repo(&format!("tests/data/nfcapd/{name}.json"));
        out.push(sample(
            &format!("{name}.json"),
            read(&p),
            Some(NfdumpJson),
            true,
        ));
    }
    for (target, format) in [
        ("flowtools", FlowTools),
        ("pcap", Pcap),
        ("ipfix_file", Ipfix),
        ("jsonl", Jsonl),
        ("nfcapd", Nfcapd),
        ("nfdump_json", NfdumpJson),
        ("goflow2", Goflow2),
    ] {
        let corpus = repo(&format!("fuzz/corpus/{target}"));
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(&corpus)
            .expect("corpus")
            .map(|e| e.expect("entry").path())
            .collect();
        seeds.sort();
        for s in seeds {
            let name = s.file_name().expect("name").to_string_lossy();
            out.push(sample(
                &format!("fuzz/{target}/{name}"),
                read(&s),
                Some(format),
                true,
            ));
        }
    }
    let datagrams = ipfix_datagrams();
    let pcap_path = dir.join("gen.pcap");
    packets::write_export_pcap(
        &pcap_path,
        "192.0.2.1:4739".parse().expect("addr"),
        "192.0.2.9:4739".parse().expect("addr"),
        &datagrams,
    );
    out.push(sample("gen.pcap", read(&pcap_path), Some(Pcap), true));
    out.push(sample(
        "gen.pcapng",
        pcapng_of(&datagrams),
        Some(Pcap),
        true,
    ));
    let jsonl = "{\"srcip\":\"10.0.0.1\",\"dstip\":\"10.0.0.2\",\"prot\":6,\"dstport\":80,\"stime\":1700000000000,\"etime\":1700000001000}\n\r\n{\"stime\":\"2026-11-23T08:59:41.003Z\",\"srcport\":53}\r\n".repeat(10);
    out.push(sample(
        "gen.jsonl",
        jsonl.clone().into_bytes(),
        Some(Jsonl),
        true,
    ));
    let goflow2 = "{\"type\":\"IPFIX\",\"time_received_ns\":1,\"sampler_address\":\"192.0.2.1\",\"time_flow_start_ns\":1767324720000000000,\"time_flow_end_ns\":1767324721000000000,\"bytes\":143,\"proto\":\"UDP\",\"src_addr\":\"10.0.0.1\",\"src_net\":\"10.0.0.0/8\"}\n\n".repeat(5);
    out.push(sample(
        "gen.goflow2",
        goflow2.into_bytes(),
        Some(Goflow2),
        true,
    ));
    let nfdump_log = "{\"type\":\"FLOW\",\"first\":\"2026-12-04T23:34:47.000\",\"proto\":17}\n\n{\"type\":\"EXPORTER\"}\n{\"type\":\"FLOW\",\"first\":\"2026-12-04T23:34:48.000\",\"last\":\"2026-12-04T23:34:49.000\",\"proto\":1,\"icmp_type\":8,\"icmp_code\":0}\n".repeat(4);
    out.push(sample(
        "gen-log.nfdump.json",
        nfdump_log.into_bytes(),
        Some(NfdumpJson),
        true,
    ));
    let ft = read(&trace("trace-2009.ftz"));
    out.push(sample(
        "trace-2009.ftz.gz",
        gzip(&ft),
        Some(FlowTools),
        true,
    ));
    out.push(sample(
        "gen.jsonl.gz",
        gzip(jsonl.as_bytes()),
        Some(Jsonl),
        true,
    ));
    out.push(sample("empty", Vec::new(), None, false));
    out
}

fn variants(data: &[u8], rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let n = data.len();
    for cut in [
        1,
        2,
        3,
        4,
        7,
        8,
        12,
        16,
        24,
        40,
        52,
        n / 3,
        n / 2,
        n.saturating_sub(1),
    ] {
        if cut < n {
            out.push((format!("cut at {cut}"), data[..cut].to_vec()));
        }
    }
    for i in 0..30 {
        let mut d = data.to_vec();
        let flips = 1 + (rng.next() % 4) as usize;
        for _ in 0..flips {
            let at = (rng.next() % n as u64) as usize;
            d[at] = rng.next() as u8;
        }
        out.push((format!("corruption #{i}"), d));
    }
    for at in [2, 4, 6, 8, 16, 20, 42, 44] {
        if at + 2 <= n {
            let mut d = data.to_vec();
            d[at] = 0xff;
            d[at + 1] = 0xff;
            out.push((format!("0xffff at {at}"), d));
        }
    }
    out
}

/// A way of reading inputs, its outcome as one line.
type Runner = dyn Fn(&[PathBuf], &InputOptions) -> Result<String, InputError>;

/// One golden line per (input, forced format or detection).
fn golden_lines(run: &Runner) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(0x5eed_57ea);
    let mut lines = Vec::new();
    let mut one = |name: &str, bytes: &[u8], format: Option<InputFormat>| {
        let path = dir.path().join("input");
        std::fs::write(&path, bytes).expect("write");
        let formats: Vec<Option<InputFormat>> = match format {
            Some(f) => vec![None, Some(f)],
            None => vec![None],
        };
        for forced in formats {
            let opts = InputOptions {
                format: forced,
                ..InputOptions::default()
            };
            let how = forced.map_or("detect".to_string(), |f| f.to_string());
            let got = outcome(run(std::slice::from_ref(&path), &opts), dir.path());
            lines.push(format!("{name}\t{how}\t{got}"));
        }
    };
    for s in samples(dir.path()) {
        one(&s.name, &s.bytes, s.format);
        if s.variants {
            for (what, bad) in variants(&s.bytes, &mut rng) {
                one(&format!("{} / {what}", s.name), &bad, s.format);
            }
        }
    }
    // Several sources with --from/--to: rec_ids continue, the summary counts.
    let several = [
        trace("trace-2009.ftz"),
        repo("tests/data/nfcapd/v9.nfcapd"),
        repo("tests/data/nfcapd/v5-sampled.json"),
        trace("trace-2009.ftz"),
    ];
    for (from, to) in [
        (None, None),
        (Some(1_260_226_734_835), None),
        (None, Some(1_260_226_734_835)),
        (Some(1_260_226_700_000), Some(1_796_427_287_000)),
    ] {
        let opts = InputOptions {
            format: None,
            from,
            to,
        };
        let got = outcome(run(&several, &opts), dir.path());
        lines.push(format!("several from={from:?} to={to:?}\tdetect\t{got}"));
    }
    lines
}

/// `stream_inputs` itself, records taken as they are emitted.
fn via_stream_inputs(paths: &[PathBuf], opts: &InputOptions) -> Result<String, InputError> {
    let mut h = RecordHash::new();
    let mut heard = 0;
    let summary = input::stream_inputs(paths, opts, |_| heard += 1, |r| h.add(&r))?;
    assert_eq!(
        heard,
        summary.files + summary.skipped,
        "progress hears each source"
    );
    Ok(h.describe(&summary))
}

/// The whole-buffer entry point `parse` on the (gunzipped) bytes, the
/// format detected as `read_source` does.
fn via_parse(paths: &[PathBuf], opts: &InputOptions) -> Result<String, InputError> {
    let [path] = paths else {
        return via_read_inputs(paths, opts);
    };
    let bytes = input::source::load(&input::Source::File(path.clone()))?;
    let format = match opts.format {
        Some(f) => f,
        None => InputFormat::detect(&bytes[..bytes.len().min(4096)])
            .ok_or_else(|| InputError::UnknownFormat { path: path.clone() })?,
    };
    let recs = input::parse(format, path, &bytes)?;
    let mut h = RecordHash::new();
    recs.iter().for_each(|r| h.add(r));
    let read = recs.len() as u64;
    Ok(h.describe(&ReadSummary {
        files: 1,
        skipped: 0,
        records: read,
    }))
}

fn compare(want: &[&str], got: &[String], what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: number of cases");
    let differing: Vec<String> = want
        .iter()
        .zip(got)
        .filter(|(w, g)| *w != *g)
        .map(|(w, g)| format!("want {w}\n got {g}"))
        .collect();
    assert!(
        differing.is_empty(),
        "{what}: {} differ:\n{}",
        differing.len(),
        differing.join("\n")
    );
}

#[test]
fn streaming_reads_what_the_whole_file_readers_read() {
    let golden_path = repo(GOLDEN);
    if std::env::var_os("FLOWY_BLESS_GOLDEN").is_some() {
        let got = golden_lines(&via_read_inputs);
        std::fs::write(&golden_path, got.join("\n") + "\n").expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&golden_path).expect("the golden file");
    let want: Vec<&str> = want.lines().collect();
    assert!(want.len() > 4000, "the golden file covers the inputs");
    compare(&want, &golden_lines(&via_stream_inputs), "stream_inputs");
    compare(&want, &golden_lines(&via_read_inputs), "read_inputs");
    // Errors of a gzip source name offset 0 (the gzip layer), which a
    // parse of the gunzipped bytes cannot know: compare the rest.
    let gz_free = |lines: Vec<String>| -> Vec<String> {
        lines.into_iter().filter(|l| !l.contains(".gz")).collect()
    };
    let want_plain: Vec<String> = gz_free(want.iter().map(|s| s.to_string()).collect());
    let want_plain: Vec<&str> = want_plain.iter().map(String::as_str).collect();
    compare(&want_plain, &gz_free(golden_lines(&via_parse)), "parse");
}

/// A reader that counts the bytes it has handed out.
struct Counting {
    inner: std::io::Cursor<Vec<u8>>,
    handed: std::rc::Rc<std::cell::Cell<usize>>,
}

impl std::io::Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.handed.set(self.handed.get() + n);
        Ok(n)
    }
}

/// The most input a reader may take before its first record: a few
/// buffers, far less than the inputs below.
const FIRST_RECORD_WITHIN: usize = 1 << 20;

/// Stream `bytes` (gunzipped when they are gzip) as `format` (`None`:
/// detected) and return how many bytes had been read when the first record
/// came out, and how many records came out.
fn first_record_after(bytes: Vec<u8>, format: Option<InputFormat>) -> (usize, u64) {
    let handed = std::rc::Rc::new(std::cell::Cell::new(0));
    let raw = Counting {
        inner: std::io::Cursor::new(bytes),
        handed: handed.clone(),
    };
    let label = Path::new("counted");
    let opened = input::source::open_reader(label, Box::new(raw)).expect("open");
    let (mut first, mut count) = (None, 0u64);
    input::stream::stream_opened(label, opened, format, &mut |_| {
        first.get_or_insert(handed.get());
        count += 1;
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (first.expect("a record"), count)
}

fn assert_incremental(name: &str, bytes: Vec<u8>, format: InputFormat, records: u64) {
    assert_incremental_as(name, bytes, &[Some(format), None], records);
}

/// As [`assert_incremental`], with the format forced or detected as given.
fn assert_incremental_as(
    name: &str,
    bytes: Vec<u8>,
    formats: &[Option<InputFormat>],
    records: u64,
) {
    let len = bytes.len();
    assert!(len >= 2 * FIRST_RECORD_WITHIN, "{name}: only {len} bytes");
    for &forced in formats {
        let (first, count) = first_record_after(bytes.clone(), forced);
        eprintln!("{name} ({forced:?}): first record after {first} of {len} bytes");
        assert_eq!(count, records, "{name}: every record is read");
        assert!(
            first <= FIRST_RECORD_WITHIN,
            "{name} ({forced:?}): first record after {first} of {len} bytes"
        );
    }
}

/// Pseudo-random flows, so compressed copies stay large.
fn flows(n: usize) -> impl Iterator<Item = (u32, u16, u64, i64)> {
    let mut rng = Rng(0xf10e_5eed);
    (0..n).map(move |i| {
        let v = rng.next();
        (
            v as u32,
            (v >> 32) as u16,
            v >> 48,
            1_700_000_000_000 + i as i64 * 7,
        )
    })
}

fn jsonl_text(n: usize) -> String {
    flows(n)
        .map(|(ip, port, bytes, t)| {
            format!(
                "{{\"srcip\":\"{}\",\"dstip\":\"10.0.0.2\",\"prot\":6,\"dstport\":{port},\"bytes\":{bytes},\"stime\":{t},\"etime\":{}}}\n",
                std::net::Ipv4Addr::from(ip),
                t + 1000
            )
        })
        .collect()
}

#[test]
fn json_dialects_emit_before_reading_far() {
    let n = 40_000;
    let jsonl = jsonl_text(n);
    assert_incremental(
        "jsonl",
        jsonl.clone().into_bytes(),
        InputFormat::Jsonl,
        n as u64,
    );
    // gzip inflates on the fly: the compressed input is still multi-MB.
    let gz = gzip(jsonl_text(4 * n).as_bytes());
    assert_incremental("jsonl.gz", gz, InputFormat::Jsonl, 4 * n as u64);

    let goflow2: String = flows(n)
        .map(|(ip, port, bytes, t)| {
            format!(
                "{{\"type\":\"IPFIX\",\"time_received_ns\":1,\"sampler_address\":\"192.0.2.1\",\"time_flow_start_ns\":{},\"bytes\":{bytes},\"proto\":\"TCP\",\"src_addr\":\"{}\",\"dst_port\":{port}}}\n",
                t * 1_000_000,
                std::net::Ipv4Addr::from(ip)
            )
        })
        .collect();
    assert_incremental(
        "goflow2",
        goflow2.into_bytes(),
        InputFormat::Goflow2,
        n as u64,
    );

    let objects: Vec<String> = flows(n)
        .map(|(ip, port, bytes, _)| {
            format!(
                "{{\n\t\"type\" : \"FLOW\",\n\t\"first\" : \"2026-12-04T23:34:47.000\",\n\t\"last\" : \"2026-12-04T23:34:49.000\",\n\t\"in_bytes\" : {bytes},\n\t\"proto\" : 6,\n\t\"dst_port\" : {port},\n\t\"src4_addr\" : \"{}\"\n}}",
                std::net::Ipv4Addr::from(ip)
            )
        })
        .collect();
    let array = format!("[\n{}]\n", objects.join(",\n"));
    assert_incremental(
        "nfdump array",
        array.into_bytes(),
        InputFormat::NfdumpJson,
        n as u64,
    );
    let log: String = objects
        .iter()
        .map(|o| o.replace(['\n', '\t'], "") + "\n")
        .collect();
    // Detection knows nfdump's JSON by its array only.
    assert_incremental_as(
        "nfdump json-log",
        log.into_bytes(),
        &[Some(InputFormat::NfdumpJson)],
        n as u64,
    );
}

#[test]
fn flow_tools_emits_before_reading_far() {
    // Compressed: the large trace as it is.
    let big = read(&trace("trace-2012.ftz"));
    assert_incremental("trace-2012.ftz", big, InputFormat::FlowTools, 276_449);
    // Uncompressed: a header, then the same 24 records many times over.
    let small = read(&repo(
        "fuzz/corpus/flowtools/ok-trace-2009-first-24-uncompressed.ft",
    ));
    let header_len = u32::from_le_bytes([small[4], small[5], small[6], small[7]]) as usize;
    let (header, records) = small.split_at(header_len);
    assert_eq!(records.len(), 24 * 64);
    let copies = 2000;
    let mut file = header.to_vec();
    file.extend(records.repeat(copies));
    assert_incremental(
        "uncompressed",
        file,
        InputFormat::FlowTools,
        24 * copies as u64,
    );
}

#[test]
fn captures_and_ipfix_files_emit_before_reading_far() {
    let ipfix = read(&trace("trace-2009.ipfix"));
    let copies = 40;
    assert_incremental(
        "ipfix",
        ipfix.repeat(copies),
        InputFormat::Ipfix,
        556 * copies as u64,
    );
    let once = ipfix_datagrams();
    let per_copy = input::parse(InputFormat::Pcap, Path::new("p"), &pcapng_of(&once))
        .expect("pcapng")
        .len() as u64;
    let many: Vec<(i64, Vec<u8>)> = (0..100)
        .flat_map(|k| once.iter().map(move |(at, d)| (at + k * 60_000, d.clone())))
        .collect();
    assert_incremental(
        "pcapng",
        pcapng_of(&many),
        InputFormat::Pcap,
        100 * per_copy,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("many.pcap");
    packets::write_export_pcap(
        &path,
        "192.0.2.1:4739".parse().expect("addr"),
        "192.0.2.9:4739".parse().expect("addr"),
        &many,
    );
    assert_incremental("pcap", read(&path), InputFormat::Pcap, 100 * per_copy);
}

#[test]
fn nfcapd_emits_before_reading_far() {
    // One data block repeated: the header's block count and appendix
    // offset follow.
    let v9 = read(&repo("tests/data/nfcapd/v9.nfcapd"));
    let once = input::parse(InputFormat::Nfcapd, Path::new("v9"), &v9)
        .expect("v9")
        .len() as u64;
    assert_eq!(u32::from_le_bytes([v9[36], v9[37], v9[38], v9[39]]), 1);
    let appendix_at = u64::from_le_bytes(v9[24..32].try_into().expect("8 bytes")) as usize;
    let (blocks, appendix) = (&v9[40..appendix_at], &v9[appendix_at..]);
    let copies = 1000;
    let mut file = v9[..40].to_vec();
    file[36..40].copy_from_slice(&(copies as u32).to_le_bytes());
    file[24..32].copy_from_slice(&((40 + blocks.len() * copies) as u64).to_le_bytes());
    file.extend(blocks.repeat(copies));
    file.extend_from_slice(appendix);
    assert_incremental("nfcapd", file, InputFormat::Nfcapd, once * copies as u64);
}

/// A first pass (e.g. to measure disorder) and the real one read the same.
#[test]
fn inputs_can_be_streamed_twice() {
    let args = [trace("trace-2009.ftz"), repo("tests/data/nfcapd/v9.nfcapd")];
    let opts = InputOptions::default();
    let pass = || {
        let mut h = RecordHash::new();
        let summary = input::stream_inputs(&args, &opts, |_| {}, |r| h.add(&r)).expect("read");
        h.describe(&summary)
    };
    let first = pass();
    assert!(first.starts_with("ok n="), "{first}");
    assert_eq!(first, pass());
}

/// A capture record said to be huge is refused once the window would
/// exceed its bound, not read to the end of the file.
#[test]
fn a_huge_capture_record_is_refused_at_the_window_bound() {
    let mut cap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    cap.extend([0; 8]);
    cap.extend(u32::MAX.to_le_bytes()); // snaplen
    cap.extend(1u32.to_le_bytes()); // Ethernet
    let header_len = cap.len();
    cap.extend([0; 8]); // timestamp
    cap.extend((64u32 << 20).to_le_bytes()); // incl_len
    cap.extend((64u32 << 20).to_le_bytes()); // orig_len
    cap.resize(header_len + (20 << 20), 0);
    let e = input::parse(InputFormat::Pcap, Path::new("huge.pcap"), &cap)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "huge.pcap: at offset {header_len}: capture record larger than"
        )),
        "{e}"
    );
}
