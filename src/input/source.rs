//! Where `flowy query`'s input comes from (SPEC §3.1 "Selecting input"):
//! files, directories of rotated flow files, standard input, and
//! gzip-compressed content.
//!
//! A directory contributes the flow files below it (recursively, like
//! `nfdump -R`) whose names say when they were rotated: nfcapd
//! `nfcapd.YYYYMMDDhhmm[ss]` and flow-tools `ft-v05.YYYY-MM-DD.HHMMSS±ZZZZ`.
//! Those names only *order* the files: a file named 06:18 holds flows that
//! started minutes earlier, so no file is ever chosen or skipped by name.

use std::cell::Cell;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use super::InputError;

/// The name `--input -` stands for.
pub const STDIN: &str = "-";

/// gzip's magic number.
const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];

/// A gzip member inflating beyond this ratio (plus a MiB) is refused as a
/// decompression bomb. Flow data compresses 5–30×; gzip cannot exceed
/// about 1 032× at all, so only crafted input comes near the bound.
const MAX_GZIP_RATIO: u64 = 256;

/// One input to read: a file, or standard input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
}

impl Source {
    /// How errors name it.
    pub fn label(&self) -> PathBuf {
        match self {
            Source::File(p) => p.clone(),
            Source::Stdin => PathBuf::from("<stdin>"),
        }
    }
}

/// Expand `--input` arguments into sources, in order: a directory becomes
/// its flow files in rotation order, `-` is standard input.
pub fn expand(args: &[PathBuf]) -> Result<Vec<Source>, InputError> {
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str() == STDIN {
            out.push(Source::Stdin);
        } else if arg.is_dir() {
            let mut files = Vec::new();
            walk(arg, &mut files)?;
            files.sort_by_key(|p| rotation_key(p));
            out.extend(files.into_iter().map(Source::File));
        } else {
            out.push(Source::File(arg.clone()));
        }
    }
    Ok(out)
}

/// Collect the flow files below `dir` (any depth).
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let open = |source| InputError::Open {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(open)? {
        let path = entry.map_err(open)?.path();
        if path.is_dir() {
            walk(&path, files)?;
        } else if rotation_stamp(&path).is_some() {
            files.push(path);
        }
    }
    Ok(())
}

/// Files sort by the time in their name, then by path.
fn rotation_key(p: &Path) -> (String, PathBuf) {
    (rotation_stamp(p).unwrap_or_default(), p.to_path_buf())
}

/// The rotation time a flow file's name carries, as `YYYYMMDDhhmmss` in
/// UTC where the name gives an offset (flow-tools), else as written
/// (nfcapd names use the collector's local time).
pub fn rotation_stamp(p: &Path) -> Option<String> {
    let name = p.file_name()?.to_str()?;
    if let Some(rest) = name.strip_prefix("nfcapd.") {
        let digits = rest.len() == 12 || rest.len() == 14;
        return (digits && rest.bytes().all(|b| b.is_ascii_digit()))
            .then(|| format!("{rest:0<14}"));
    }
    let rest = name.strip_prefix("ft-v05.")?;
    flow_tools_stamp(rest)
}

/// `2012-04-30.075126+0200` → `20120430055126`.
fn flow_tools_stamp(s: &str) -> Option<String> {
    use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(13..15)?, num(15..17)?);
    let date = Date::from_calendar_date(y as i32, Month::try_from(mo as u8).ok()?, d as u8).ok()?;
    let clock = Time::from_hms(h as u8, mi as u8, sec as u8).ok()?;
    let offset = match s.get(17..22) {
        None => UtcOffset::UTC,
        Some(tz) => {
            let sign: i32 = if tz.starts_with('-') { -1 } else { 1 };
            let hh = tz.get(1..3)?.parse::<i32>().ok()?;
            let mm = tz.get(3..5)?.parse::<i32>().ok()?;
            UtcOffset::from_whole_seconds(sign * (hh * 3600 + mm * 60)).ok()?
        }
    };
    let at = PrimitiveDateTime::new(date, clock)
        .assume_offset(offset)
        .to_offset(UtcOffset::UTC);
    Some(format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    ))
}

/// The whole content of a source, gunzipped when it starts with gzip's
/// magic (whatever its name).
pub fn load(src: &Source) -> Result<Vec<u8>, InputError> {
    let Opened {
        mut reader, fault, ..
    } = open(src)?;
    let mut out = Vec::new();
    let read = reader.read_to_end(&mut out);
    if let Some(e) = fault.take() {
        return Err(e);
    }
    read.map_err(|source| InputError::Open {
        path: src.label(),
        source,
    })?;
    Ok(out)
}

/// The first failure below a format reader (reading the file, inflating
/// gzip), kept with its real cause: the format reader only sees an
/// `io::Error` and would report it as its own.
#[derive(Clone, Default)]
pub struct Fault(Rc<Cell<Option<InputError>>>);

impl Fault {
    /// The first failure wins: later ones are its consequences.
    fn set(&self, e: InputError) {
        let first = self.0.take().unwrap_or(e);
        self.0.set(Some(first));
    }

    /// The failure, if one happened (and forget it).
    pub fn take(&self) -> Option<InputError> {
        self.0.take()
    }
}

/// A source opened for reading: its (gunzipped) content as a stream, and
/// where failures below the format reader are kept.
pub struct Opened {
    pub reader: Box<dyn Read>,
    pub fault: Fault,
    /// The content is inflated from gzip.
    pub gzip: bool,
}

/// Open a source for streaming; gzip content (found by its magic, whatever
/// the name) is inflated on the fly.
pub fn open(src: &Source) -> Result<Opened, InputError> {
    let label = src.label();
    let raw: Box<dyn Read> = match src {
        Source::File(p) => Box::new(std::fs::File::open(p).map_err(|source| InputError::Open {
            path: label.clone(),
            source,
        })?),
        Source::Stdin => Box::new(std::io::stdin().lock()),
    };
    open_reader(&label, raw)
}

/// Stream a source's bytes from `raw`, gunzipped when they start with
/// gzip's magic; `label` names the source in errors.
pub fn open_reader(label: &Path, raw: Box<dyn Read>) -> Result<Opened, InputError> {
    let fault = Fault::default();
    let mut raw = Guarded {
        inner: raw,
        label: label.to_path_buf(),
        fault: fault.clone(),
    };
    let (head, n) = peek::<2>(&mut raw).map_err(|source| InputError::Open {
        path: label.to_path_buf(),
        source,
    })?;
    let raw = std::io::Cursor::new(head).take(n as u64).chain(raw);
    let gzip = head[..n] == GZIP_MAGIC;
    let reader: Box<dyn Read> = if gzip {
        let consumed = Rc::new(Cell::new(0));
        let counted = Counted {
            inner: raw,
            count: consumed.clone(),
        };
        Box::new(Gunzip {
            inner: MultiGzDecoder::new(counted),
            consumed,
            inflated: 0,
            label: label.to_path_buf(),
            fault: fault.clone(),
        })
    } else {
        Box::new(raw)
    };
    Ok(Opened {
        reader,
        fault,
        gzip,
    })
}

/// Read up to `N` bytes (fewer only at the end of the input).
fn peek<const N: usize>(r: &mut impl Read) -> std::io::Result<([u8; N], usize)> {
    let mut head = [0u8; N];
    let mut n = 0;
    while n < N {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((head, n))
}

/// The file or standard input itself: a read error is the source's fault.
struct Guarded {
    inner: Box<dyn Read>,
    label: PathBuf,
    fault: Fault,
}

impl Read for Guarded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.fault.set(InputError::Open {
                path: self.label.clone(),
                source: std::io::Error::new(e.kind(), e.to_string()),
            })
        })
    }
}

/// Counts the compressed bytes the gzip decoder has taken.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Inflates gzip, refusing content that inflates beyond [`MAX_GZIP_RATIO`]
/// times the compressed bytes read so far (plus a MiB).
struct Gunzip<R: Read> {
    inner: MultiGzDecoder<R>,
    consumed: Rc<Cell<u64>>,
    inflated: u64,
    label: PathBuf,
    fault: Fault,
}

impl<R: Read> Gunzip<R> {
    fn fail(&self, reason: String) -> std::io::Error {
        self.fault.set(InputError::Malformed {
            path: self.label.clone(),
            offset: 0,
            reason: reason.clone(),
        });
        std::io::Error::new(std::io::ErrorKind::InvalidData, reason)
    }
}

impl<R: Read> Read for Gunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                let after = self.inflated;
                return Err(self.fail(format!("gzip: {e} (after {after} bytes of content)")));
            }
        };
        self.inflated += n as u64;
        let bound = self
            .consumed
            .get()
            .saturating_mul(MAX_GZIP_RATIO)
            .saturating_add(1 << 20);
        if self.inflated > bound {
            return Err(self.fail(format!(
                "gzip content inflates beyond {bound} bytes ({MAX_GZIP_RATIO}× the {} compressed bytes read): refused as a decompression bomb",
                self.consumed.get()
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn rotation_names_order_files() {
        let stamp = |n: &str| rotation_stamp(Path::new(n));
        assert_eq!(stamp("nfcapd.201204300750"), Some("20120430075000".into()));
        assert_eq!(
            stamp("nfcapd.20120430075012"),
            Some("20120430075012".into())
        );
        assert_eq!(stamp("nfcapd.current.1234"), None);
        assert_eq!(stamp(".nfstat"), None);
        assert_eq!(
            stamp("ft-v05.2012-04-30.075126+0200"),
            Some("20120430055126".into())
        );
        assert_eq!(
            stamp("ft-v05.2012-04-30.235959-0130"),
            Some("20120501012959".into())
        );
        assert_eq!(stamp("ft-v05.2012-04-30.0751"), None);
        assert_eq!(stamp("flows.ftz"), None);
    }

    #[test]
    fn directories_expand_recursively_in_rotation_order() {
        let dir = tempfile::tempdir().unwrap();
        let day2 = dir.path().join("2012/05/01");
        let day1 = dir.path().join("2012/04/30");
        std::fs::create_dir_all(&day2).unwrap();
        std::fs::create_dir_all(&day1).unwrap();
        for p in [
            day2.join("nfcapd.201205010000"),
            day1.join("nfcapd.201204302355"),
            day1.join("nfcapd.201204300005"),
            day1.join("nfcapd.current.77"),
            day1.join("README"),
        ] {
            std::fs::write(p, b"x").unwrap();
        }
        let got = expand(&[dir.path().to_path_buf(), PathBuf::from("-")]).unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|s| match s {
                Source::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                Source::Stdin => "-".into(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "nfcapd.201204300005",
                "nfcapd.201204302355",
                "nfcapd.201205010000",
                "-"
            ]
        );
    }

    #[test]
    fn gzip_is_detected_by_magic_and_bombs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let plain = b"{\"stime\": 1}\n".repeat(10);
        let gz = dir.path().join("no-gz-suffix");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&plain).unwrap();
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
        assert_eq!(load(&Source::File(gz)).unwrap(), plain);

        let bomb = dir.path().join("bomb.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 64 << 20]).unwrap();
        std::fs::write(&bomb, e.finish().unwrap()).unwrap();
        let err = load(&Source::File(bomb)).unwrap_err().to_string();
        assert!(err.contains("decompression bomb"), "{err}");
        // Refused on the fly, long before the 64 MiB are inflated.
        let bound: u64 = err
            .split("beyond ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX);
        assert!(bound < 16 << 20, "{err}");

        let cut = dir.path().join("cut.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&plain).unwrap();
        let full = e.finish().unwrap();
        std::fs::write(&cut, &full[..full.len() / 2]).unwrap();
        let err = load(&Source::File(cut.clone())).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: at offset 0: gzip:", cut.display())),
            "{err}"
        );
    }
}
