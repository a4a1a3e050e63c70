//! The published listings (`../shared/seed-listings/`), verbatim: SPEC §2.6–2.8.
//!
//! The HTTP-download listing compiles and runs as printed. The Skype and
//! IPv6 listings are printed in pieces (`...` stands for the other
//! listings and for stages the text describes): assembled with their
//! fragments they must report every typo, each located and with a
//! suggestion, in one run; with the typos corrected they must compile.

use std::path::PathBuf;
use std::process::Command;

use flowy::query::{compile_source, explain, Diagnostics};

fn seed(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/seed-listings")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (shared/ must be beside the repo)", path.display()))
}

fn compiles(name: &str, src: &str) {
    if let Err(d) = compile_source("q", name, src) {
        panic!("{name} does not compile:\n{d}");
    }
}

fn errors(name: &str, src: &str) -> Diagnostics {
    match compile_source("q", name, src) {
        Ok(p) => panic!("{name} compiled but has typos:\n{}", explain(&p)),
        Err(d) => d,
    }
}

/// Every error as `LINE:COL message [help]`, in report order.
fn located(d: &Diagnostics) -> Vec<String> {
    d.errors
        .iter()
        .map(|e| {
            let help = e.help.as_deref().unwrap_or("");
            format!("{}:{} {} [{}]", e.line, e.col, e.message, help)
        })
        .collect()
}

fn line_col(src: &str, needle: &str, nth: usize) -> (usize, usize) {
    let at = src
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in source"))
        .0;
    let line = src[..at].matches('\n').count() + 1;
    let col = at - src[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[test]
fn http_download_listing_compiles_as_published() {
    let src = seed("http-download.flowy");
    assert!(src.contains("\"./netflow-trace.h5\" -> S"));
    assert!(src.contains("M->U->\"./ungrouped.h5\""));
    compiles("http-download.flowy", &src);
}

#[test]
fn any_string_literal_is_an_input_or_output_placeholder() {
    let body = "filter f { dstport = 80 }\nungroup U {}\n";
    for (input, output) in [
        ("\"input\"", "\"output\""),
        ("\"in\"", "\"out\""),
        ("\"./netflow-trace.h5\"", "\"./ungrouped.h5\""),
        ("\"\"", "\"/var/log/flowy/x.jsonl\""),
    ] {
        let src =
            format!("splitter S {{}}\n{body}{input} -> S\nS branch A -> f -> U -> {output}\n");
        compiles("placeholders.flowy", &src);
    }
    // A quoted name in the middle of a line is still an error, located.
    let d = errors(
        "mid.flowy",
        "filter f { dstport = 80 }\nungroup U {}\nS branch A -> f -> \"x\" -> U\n",
    );
    assert_eq!(
        located(&d)[0],
        "3:20 the output name \"x\" must end the line [a quoted name is the input at the start of a line ('\"input\" -> S') or the output at its end ('M -> U -> \"output\"')]"
    );
}

#[test]
fn http_download_listing_runs_over_a_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let query = dir.path().join("http-download.flowy");
    std::fs::write(&query, seed("http-download.flowy")).expect("write");
    let trace =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nfql-traces/trace-2012.ftz");
    let out = Command::new(env!("CARGO_BIN_EXE_flowy"))
        .arg("query")
        .arg(&query)
        .arg("--input")
        .arg(&trace)
        .arg("--no-records")
        .output()
        .expect("run flowy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let matches: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert!(!matches.is_empty(), "the published query finds no download");
    for m in &matches {
        assert_eq!(m["query"], "http-download");
        let groups = m["groups"].as_array().expect("groups");
        // B (responses) then A (requests), as the module's `branches B, A`.
        assert_eq!(groups[0]["branch"], "B");
        assert_eq!(groups[1]["branch"], "A");
        let (b, a) = (&groups[0]["fields"], &groups[1]["fields"]);
        assert_eq!(a["srcip"], b["dstip"]);
        assert_eq!(a["srcports"], b["dstports"]);
        assert!(a["bytes"].as_u64() < b["bytes"].as_u64());
        assert_eq!(b["flags"].as_u64().map(|f| f & 0x13), Some(0x13));
    }
}

/// A merger listing with its `...` replaced by the other parts.
fn assemble(merger: &str, parts: &[String]) -> String {
    let merger = seed(merger);
    assert!(merger.contains("\n...\n"));
    merger.replacen("\n...\n", &format!("\n{}\n", parts.join("\n")), 1)
}

/// Listing 4 with `...` replaced by listings 5 and 6.
fn skype_assembled() -> String {
    assemble(
        "skype-listing4-merger.flowy",
        &[
            seed("skype-listing5-branch-a.flowy"),
            seed("skype-listing6-branch-b.flowy"),
        ],
    )
}

#[test]
fn skype_listing_reports_every_typo_in_one_run() {
    let src = skype_assembled();
    let d = errors("skype.flowy", &src);
    let port = |n| line_col(&src, "port = protocol", n);
    let scrip = |n| line_col(&src, "scrip", n);
    let mut want = Vec::new();
    for (at, what, help) in [
        (port(0), "port", "did you mean "),
        (scrip(0), "scrip", "did you mean 'srcip'?"),
        (port(1), "port", "did you mean "),
        (scrip(1), "scrip", "did you mean 'srcip'?"),
    ] {
        want.push((at, format!("unknown field '{what}'"), help));
    }
    let got = &d.errors;
    assert_eq!(got.len(), want.len(), "{d}");
    for (e, (at, msg, help)) in got.iter().zip(&want) {
        assert_eq!((e.line, e.col), *at, "{d}");
        assert_eq!(&e.message, msg, "{d}");
        assert!(
            e.help.as_deref().is_some_and(|h| h.starts_with(help)),
            "{d}"
        );
    }
}

#[test]
fn skype_listing_with_typos_corrected_compiles() {
    let src = skype_assembled()
        .replace("port = protocol(\"UDP\")", "prot = protocol(\"UDP\")")
        .replace("srcip = scrip", "srcip = srcip");
    compiles("skype.flowy", &src);
    // Both groupers key on srcip, and the merger equates it (SPEC §5).
    assert_eq!(key_of("skype.flowy", &src), "srcip");
}

/// The partition key `flowy check` shows for a listing.
fn key_of(name: &str, src: &str) -> String {
    match compile_source("q", name, src) {
        Ok(p) => p.partition_key().to_string(),
        Err(d) => panic!("{name} does not compile:\n{d}"),
    }
}

#[test]
fn partition_keys_of_the_listings() {
    // A.srcip = B.dstip without A.dstip = B.srcip: the client address is
    // srcip in one branch and dstip in the other, so no record-level key.
    let http = key_of("http-download.flowy", &seed("http-download.flowy"));
    assert!(http.starts_with("global: merger 'M' module 'm1'"), "{http}");
    // g-mDNS keys on srcip, g-login* on srcport, dstip, dstport (srcip is
    // a plain aggregate there: the first member's, not shared).
    let ipv6 = key_of(
        "ipv6.flowy",
        &ipv6_assembled().replace("pckt-sum", "pkt-sum"),
    );
    assert_eq!(
        ipv6,
        "global: the branches' groupers have no key field in common (mDNS: srcip; LOGIN1: dstip, srcport, dstport; LOGIN2: dstip, srcport, dstport; LOGIN3: dstip, srcport, dstport)"
    );
}

/// The stages listing 9's `...` leaves out, written by analogy with
/// listings 7 and 8 (the text: an mDNS burst of one host, then three login
/// attempts to port 443, each a little shorter than the one before).
const IPV6_FRAGMENTS: &str = r#"
grouper g-mDNS {
 module g1 {
   srcip = srcip
   etime < stime rdelta 1 sec
}
aggregate srcip, dstip, td, count(rec_id) as n
}

groupfilter gf-mDNS {
n > 1
}

filter f-login2 {
dstport = 443
duration > 50 sec
duration < 55 sec
}

filter f-login3 {
dstport = 443
duration > 45 sec
duration < 50 sec
}

grouper g-login2 {
 module g1 {
   srcport = srcport
   dstip = dstip
   dstport = dstport
}
aggregate srcip, dstip, srcport, td,
sum(packets) as pkt-sum, count(rec_id) as n
}

grouper g-login3 {
 module g1 {
   srcport = srcport
   dstip = dstip
   dstport = dstport
}
aggregate srcip, dstip, srcport, td,
sum(packets) as pkt-sum, count(rec_id) as n
}

groupfilter gf-login1 {
n >= 1
}

groupfilter gf-login2 {
n >= 1
}

groupfilter gf-login3 {
n >= 1
}

ungroup U {}
"#;

/// Listing 9 with `...` replaced by listings 7 and 8 and the fragments.
fn ipv6_assembled() -> String {
    assemble(
        "ipv6-listing9-merger.flowy",
        &[
            seed("ipv6-listing7-branch-a.flowy"),
            seed("ipv6-listing8-branch-b.flowy"),
            IPV6_FRAGMENTS.to_string(),
        ],
    )
}

#[test]
fn ipv6_listing_reports_every_pckt_sum_typo() {
    let src = ipv6_assembled();
    // The listing's own grouper, verbatim: `td` is a plain aggregate of the
    // implicit duration and is accepted (SPEC §1.2).
    assert!(src.contains("aggregate srcip, dstip, srcport, td,\nsum(packets) as pkt-sum"));
    let d = errors("ipv6.flowy", &src);
    let got = located(&d);
    let want: Vec<String> = (0..4)
        .map(|n| {
            let (line, col) = line_col(&src, "pckt-sum", n);
            let branch = ["LOGIN1", "LOGIN2", "LOGIN2", "LOGIN3"][n];
            let grouper = ["g-login1", "g-login2", "g-login2", "g-login3"][n];
            format!(
                "{line}:{col} unknown field 'pckt-sum' of branch '{branch}' (grouper '{grouper}' does not produce it) [did you mean 'pkt-sum'?]"
            )
        })
        .collect();
    assert_eq!(got, want, "{d}");
}

#[test]
fn ipv6_listing_with_the_typo_corrected_compiles() {
    let src = ipv6_assembled().replace("pckt-sum", "pkt-sum");
    compiles("ipv6.flowy", &src);
}

#[test]
fn an_alias_that_collides_with_an_implicit_field_is_still_an_error() {
    let src = "filter f { dstport = 80 }\ngrouper g { module m { srcip = srcip }\naggregate sum(bytes) as td }\nungroup U {}\nS branch A -> f -> g -> U\n";
    let d = errors("alias.flowy", src);
    assert_eq!(
        located(&d),
        ["3:25 aggregate name 'td' is already used by an implicit group field [give it another name with 'as NAME']"]
    );
}

#[test]
fn errors_after_a_bad_grouper_are_still_reported() {
    // The grouper has an error of its own; the merger's typo further down
    // must be reported too (SPEC §2.8: every error of a file).
    let src = "filter f { dstport = 80 }\ngrouper g { module m { srcip = scrip }\naggregate srcip, sum(bytes) as bytes }\nmerger M { branches A, B\nA.srcip = B.srcip\nA.bytse > B.bytes }\nungroup U {}\nS branch A -> f -> g -> M\nS branch B -> f -> g -> M\nM -> U -> \"out\"\n";
    let d = errors("bad-grouper.flowy", src);
    let got = located(&d);
    assert_eq!(got.len(), 2, "{d}");
    assert!(got[0].starts_with("2:32 unknown field 'scrip'"), "{d}");
    assert!(
        got[1].starts_with("6:3 unknown field 'bytse' of branch 'A'"),
        "{d}"
    );
    assert!(got[1].ends_with("[did you mean 'bytes'?]"), "{d}");
}
