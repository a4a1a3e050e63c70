//! Selecting `flowy query`'s input (SPEC §3.1): directories of rotated
//! files, `--from`/`--to`, standard input, gzip, the peers' JSON dialects,
//! the summary line.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value as Json;
use support::{flowy, repo, trace};

const EVERY_PORT80: &str = "tests/data/tcp-port80.flowy";

fn run(args: &[&str]) -> (Vec<Json>, String) {
    let o = flowy(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{args:?}: {err}");
    let out = String::from_utf8(o.stdout).expect("utf-8");
    let matches = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (matches, err)
}

fn query(inputs: &[&Path], extra: &[&str]) -> (Vec<Json>, String) {
    let q = repo(EVERY_PORT80);
    let mut args = vec!["query", q.to_str().expect("utf-8")];
    args.push("--input");
    for i in inputs {
        args.push(i.to_str().expect("utf-8"));
    }
    args.extend_from_slice(extra);
    run(&args)
}

/// (rec_id, stime) of each match's one record.
fn records(matches: &[Json]) -> Vec<(u64, String)> {
    matches
        .iter()
        .map(|m| {
            let r = &m["records"][0];
            (
                r["rec_id"].as_u64().expect("rec_id"),
                r["stime"].as_str().expect("stime").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_directory_is_read_recursively_in_rotation_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = trace("trace-2009.ftz");
    // Rotation order differs from name order across days and offsets.
    let late = dir.path().join("2009/12/08/ft-v05.2009-12-08.000000+0000");
    let early = dir.path().join("2009/12/07/ft-v05.2009-12-08.003000+0100");
    for p in [&late, &early] {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&src, p).expect("copy");
    }
    std::fs::write(dir.path().join("2009/README"), "not a flow file").expect("write");
    let (by_dir, err) = query(&[dir.path()], &[]);
    let (by_files, _) = query(&[&early, &late], &[]);
    assert_eq!(records(&by_dir), records(&by_files));
    assert!(err.starts_with("flowy query: 2 inputs, "), "{err}");
    let (one, _) = query(&[&src], &[]);
    assert_eq!(by_dir.len(), 2 * one.len());
}

#[test]
fn from_and_to_keep_a_half_open_range_of_start_times() {
    let src = trace("trace-2009.ftz");
    let (all, _) = query(&[&src], &[]);
    let all = records(&all);
    assert!(all.len() > 10);
    let mut times: Vec<&String> = all.iter().map(|(_, t)| t).collect();
    times.sort();
    let (from, to) = (
        times[times.len() / 4].clone(),
        times[times.len() * 3 / 4].clone(),
    );
    let (some, err) = query(&[&src], &["--from", &from, "--to", &to]);
    let want: Vec<(u64, String)> = all
        .iter()
        .filter(|(_, t)| *t >= from && *t < to)
        .cloned()
        .collect();
    assert!(!want.is_empty() && want.len() < all.len());
    // rec_ids stay those of the whole file.
    assert_eq!(records(&some), want);
    assert!(err.contains(" records read, "), "{err}");
    // The same range written in the query with time literals.
    let dir = tempfile::tempdir().expect("tempdir");
    let q = dir.path().join("range.flowy");
    std::fs::write(
        &q,
        format!("filter f {{\n prot = 6\n dstport = 80\n stime >= {from}\n stime < {to}\n}}\nS branch A -> f\n"),
    )
    .expect("write");
    let (in_query, _) = run(&[
        "query",
        q.to_str().expect("utf-8"),
        "--input",
        src.to_str().expect("utf-8"),
    ]);
    assert_eq!(records(&in_query), want);
    // Epoch milliseconds work too, and --to is exclusive.
    let ms = support::parse_ms(&from);
    let (same, _) = query(
        &[&src],
        &["--from", &ms.to_string(), "--to", &ms.to_string()],
    );
    assert!(same.is_empty());
    let o = flowy(&[
        "query",
        repo(EVERY_PORT80).to_str().expect("utf-8"),
        "--input",
        src.to_str().expect("utf-8"),
        "--from",
        "yesterday",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a time"));
}

/// flow-tools headers with CAP_END let `--from` skip a whole file unread.
#[test]
fn files_that_end_before_from_are_skipped_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = std::fs::read(trace("trace-2009.ftz")).expect("trace");
    let old = dir.path().join("old.ft");
    // CAP_END 1 000 000 000 s (2001): every flow of the file started before.
    std::fs::write(&old, with_cap_end(&data, 1_000_000_000)).expect("write");
    let (none, err) = query(&[&old], &["--from", "2005-01-01T00:00:00Z"]);
    assert!(none.is_empty());
    assert!(
        err.starts_with("flowy query: 0 inputs (1 skipped by --from/--to), 0 records read"),
        "{err}"
    );
    // Without --from, the same file is read whole.
    let (all, _) = query(&[&old], &[]);
    let (plain, _) = query(&[&trace("trace-2009.ftz")], &[]);
    assert_eq!(records(&all), records(&plain));
}

/// Insert a CAP_END TLV after the header's last TLV (before its padding).
fn with_cap_end(data: &[u8], end_secs: u32) -> Vec<u8> {
    let little = data[2] == 1;
    let u16_at = |at: usize| {
        let b = [data[at], data[at + 1]];
        if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    let hl = {
        let b = [data[4], data[5], data[6], data[7]];
        (if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }) as usize
    };
    let mut pos = 8;
    while pos + 4 <= hl && u16_at(pos) != 0 {
        pos += 4 + usize::from(u16_at(pos + 2));
    }
    let enc16 = |v: u16| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let enc32 = |v: u32| {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    };
    let mut out = data[..pos].to_vec();
    out.extend_from_slice(&enc16(7));
    out.extend_from_slice(&enc16(4));
    out.extend_from_slice(&enc32(end_secs));
    out.extend_from_slice(&data[pos..]);
    out[4..8].copy_from_slice(&enc32((hl + 8) as u32));
    out
}

#[test]
fn standard_input_and_gzip_are_read_like_files() {
    let src = trace("trace-2012.ftz");
    let (plain, _) = query(&[&src], &["--no-records"]);
    // A gzip-compressed JSON Lines file named without .gz.
    let dir = tempfile::tempdir().expect("tempdir");
    let jsonl = dir.path().join("flows");
    let lines = "{\"srcip\":\"10.0.0.1\",\"dstip\":\"10.0.0.2\",\"prot\":6,\"dstport\":80,\"stime\":1700000000000}\n".repeat(3);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines.as_bytes()).expect("gzip");
    std::fs::write(&jsonl, gz.finish().expect("gzip")).expect("write");
    let (three, _) = query(&[&jsonl], &[]);
    assert_eq!(three.len(), 3);

    let q = repo(EVERY_PORT80);
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowy"))
        .args([
            "query",
            q.to_str().expect("utf-8"),
            "--input",
            "-",
            "--no-records",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let bytes = std::fs::read(&src).expect("trace");
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || stdin.write_all(&bytes));
    let o = child.wait_with_output().expect("wait");
    feeder.join().expect("feeder").expect("write stdin");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let from_stdin: Vec<Json> = String::from_utf8(o.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(without_emitted(&from_stdin), without_emitted(&plain));
}

#[test]
fn nfdump_and_goflow2_json_are_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nf = dir.path().join("nfdump.json");
    std::fs::write(
        &nf,
        "[\n{\n\t\"type\" : \"FLOW\",\n\t\"export_sysid\" : 1,\n\t\"first\" : \"2026-12-04T23:34:47.000\",\n\t\"last\" : \"2026-12-04T23:34:49.000\",\n\t\"in_packets\" : 3,\n\t\"in_bytes\" : 612,\n\t\"proto\" : 6,\n\t\"tcp_flags\" : \"...AP.SF\",\n\t\"src_port\" : 1234,\n\t\"dst_port\" : 80,\n\t\"src4_addr\" : \"10.0.0.1\",\n\t\"dst4_addr\" : \"10.0.0.2\",\n\t\"ip4_router\" : \"127.0.0.1\"\n}]\n",
    )
    .expect("write");
    let (m, _) = query(&[&nf], &[]);
    assert_eq!(m.len(), 1);
    let r = &m[0]["records"][0];
    assert_eq!(r["stime"], "2026-12-04T23:34:47.000Z");
    assert_eq!(
        (r["bytes"].as_u64(), r["tcp_flags"].as_u64()),
        (Some(612), Some(0x1b))
    );
    assert_eq!(r["exporter"], "127.0.0.1");

    let gf = dir.path().join("goflow2.json");
    std::fs::write(
        &gf,
        "{\"type\":\"NETFLOW_V9\",\"time_received_ns\":1767324721000000000,\"sampler_address\":\"192.0.2.1\",\"time_flow_start_ns\":1767324720000000000,\"time_flow_end_ns\":1767324720500000000,\"bytes\":143,\"packets\":1,\"src_addr\":\"10.0.0.1\",\"dst_addr\":\"10.0.0.2\",\"etype\":\"IPv4\",\"proto\":\"TCP\",\"src_port\":40000,\"dst_port\":80}\n",
    )
    .expect("write");
    let (m, _) = query(&[&gf], &[]);
    assert_eq!(m.len(), 1);
    let r = &m[0]["records"][0];
    assert_eq!(r["etime"], "2026-01-02T03:32:00.500Z");
    assert_eq!(r["exporter"], "192.0.2.1");
    // The canonical dialect stays strict: a GoFlow2 key is unknown there.
    let o = flowy(&[
        "query",
        repo(EVERY_PORT80).to_str().expect("utf-8"),
        "--input",
        gf.to_str().expect("utf-8"),
        "--input-format",
        "jsonl",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown field"));
}

/// An nfcapd archive directory as nfcapd rotates it: read in rotation
/// order, and files outside `--from`/`--to` skipped by the time range their
/// statistics record stores.
#[test]
fn an_nfcapd_directory_with_a_time_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = dir.path().join("2026/12/04");
    std::fs::create_dir_all(&day).expect("mkdir");
    let v5 = repo("tests/data/nfcapd/v5-sampled.nfcapd");
    let v9 = repo("tests/data/nfcapd/v9.nfcapd");
    let (a, b) = (
        day.join("nfcapd.202612040000"),
        day.join("nfcapd.202612040005"),
    );
    std::fs::copy(&v5, &a).expect("copy");
    std::fs::copy(&v9, &b).expect("copy");
    let range = |p: &Path| {
        flowy::input::nfcapd::stored_time_range(p)
            .expect("readable")
            .expect("a statistics record")
    };
    let (first_a, last_a) = range(&a);
    let (first_b, last_b) = range(&b);
    let q = repo("tests/data/udp-by-srcip.flowy");
    let run_q = |extra: &[&str]| {
        let mut args = vec![
            "query",
            q.to_str().expect("utf-8"),
            "--input",
            dir.path().to_str().expect("utf-8"),
            "--no-records",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (all, err) = run_q(&[]);
    assert!(err.starts_with("flowy query: 2 inputs, "), "{err}");
    assert!(!all.is_empty());
    let (by_files, _) = run(&[
        "query",
        q.to_str().expect("utf-8"),
        "--input",
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
        "--no-records",
    ]);
    assert_eq!(without_emitted(&all), without_emitted(&by_files));
    // A range that one file's statistics record puts wholly outside.
    let (lo, hi) = if last_a < first_b {
        ((last_a + 1).to_string(), (last_b + 1).to_string())
    } else {
        ((last_b + 1).to_string(), (last_a + 1).to_string())
    };
    assert!(
        last_a < first_b || last_b < first_a,
        "the two captures overlap"
    );
    let (_, err) = run_q(&["--from", &lo, "--to", &hi]);
    assert!(
        err.starts_with("flowy query: 1 input (1 skipped by --from/--to), "),
        "{err}"
    );
}

/// The two readers of nfdump's worlds agree: an nfcapd file read directly
/// and the `nfdump -o json` that Debian's nfdump printed for it.
#[test]
fn nfdump_json_agrees_with_the_nfcapd_file_it_came_from() {
    for name in ["v9", "v5-sampled", "ipfix-ext", "ipfix-sampled"] {
        let file = repo(&format!("tests/data/nfcapd/{name}.nfcapd"));
        let json = repo(&format!("tests/data/nfcapd/{name}.json"));
        let direct = flowy::input::read_file(&file, None).expect("nfcapd");
        let via_json = flowy::input::read_file(&json, None).expect("nfdump json detected");
        assert_eq!(direct.len(), via_json.len(), "{name}");
        for (a, b) in direct.iter().zip(&via_json) {
            let key = |r: &flowy::record::Record| {
                (
                    r.rec_id(),
                    (r.stime(), r.etime()),
                    (r.srcip(), r.dstip(), r.nexthop(), r.exporter()),
                    // nfdump prints no flags for ICMP; the file stores 0.
                    (
                        r.srcport(),
                        r.dstport(),
                        r.prot(),
                        r.tcp_flags().unwrap_or(0),
                        r.tos(),
                    ),
                    (r.bytes(), r.packets(), r.input(), r.output()),
                    (r.src_as(), r.dst_as(), r.src_mask(), r.dst_mask()),
                )
            };
            assert_eq!(key(a), key(b), "{name}");
        }
    }
}

/// Matches without their wall-clock `emitted` stamp and their `run` id,
/// for comparing runs.
fn without_emitted(v: &[Json]) -> Vec<Json> {
    v.iter()
        .map(|m| {
            let mut m = m.clone();
            m["emitted"] = Json::Null;
            m["run"] = Json::Null;
            m
        })
        .collect()
}
