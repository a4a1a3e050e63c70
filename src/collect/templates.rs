//! Template persistence across restarts: a `netflow_parser::TemplateStore`
//! held in memory, shared by every exporter's parser, written to and read
//! from one file. The parser writes through every template it learns and
//! reads through on a cache miss, so templates reloaded at start are used as
//! soon as data for them arrives. Its size counts in the decoder's
//! `max_state` (a quarter of it when a store is configured): writes beyond
//! that are refused and counted, so a template flood cannot grow it.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use netflow_parser::{TemplateKind, TemplateStore, TemplateStoreError, TemplateStoreKey};

const MAGIC: &[u8; 8] = b"FLOWYTP1";

/// Bound on stored templates, so a template flood cannot grow the store.
pub const MAX_STORED_TEMPLATES: usize = 100_000;

/// Accounted bytes per stored template beyond its scope and value.
const ENTRY_BYTES: usize = 96;

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<TemplateStoreKey, Vec<u8>>,
    /// Accounted bytes of `map`.
    bytes: usize,
}

fn entry_bytes(k: &TemplateStoreKey, v: &[u8]) -> usize {
    ENTRY_BYTES + k.scope.len() + v.len()
}

#[derive(Debug)]
pub struct FileTemplateStore {
    inner: Mutex<Entries>,
    /// Writes beyond this many accounted bytes are refused (part of the
    /// decoder's `max_state`).
    max_bytes: usize,
    /// Writes refused because the store was full.
    pub refused: AtomicU64,
    /// Templates handed back to a parser (read-through after a cache miss).
    pub restored: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreFileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: at offset {offset}: {reason}")]
    Corrupt {
        path: String,
        offset: usize,
        reason: &'static str,
    },
}

fn backend(msg: &str) -> TemplateStoreError {
    TemplateStoreError::Backend(msg.to_string().into())
}

impl Default for FileTemplateStore {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            max_bytes: usize::MAX,
            refused: AtomicU64::new(0),
            restored: AtomicU64::new(0),
        }
    }
}

impl TemplateStore for FileTemplateStore {
    fn get(&self, key: &TemplateStoreKey) -> Result<Option<Vec<u8>>, TemplateStoreError> {
        let e = self
            .inner
            .lock()
            .map_err(|_| backend("template store lock poisoned"))?;
        let found = e.map.get(key).cloned();
        if found.is_some() {
            self.restored.fetch_add(1, Ordering::Relaxed);
        }
        Ok(found)
    }

    fn put(&self, key: &TemplateStoreKey, value: &[u8]) -> Result<(), TemplateStoreError> {
        let mut e = self
            .inner
            .lock()
            .map_err(|_| backend("template store lock poisoned"))?;
        let old = e.map.get(key).map_or(0, |v| entry_bytes(key, v));
        let bytes = e.bytes.saturating_sub(old) + entry_bytes(key, value);
        let full = old == 0 && e.map.len() >= MAX_STORED_TEMPLATES;
        if full || bytes > self.max_bytes {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        e.map.insert(key.clone(), value.to_vec());
        e.bytes = bytes;
        Ok(())
    }

    fn remove(&self, key: &TemplateStoreKey) -> Result<(), TemplateStoreError> {
        let mut e = self
            .inner
            .lock()
            .map_err(|_| backend("template store lock poisoned"))?;
        if let Some(v) = e.map.remove(key) {
            e.bytes = e.bytes.saturating_sub(entry_bytes(key, &v));
        }
        Ok(())
    }
}

fn kind_code(k: TemplateKind) -> u8 {
    match k {
        TemplateKind::V9Data => 0,
        TemplateKind::V9Options => 1,
        TemplateKind::IpfixData => 2,
        TemplateKind::IpfixOptions => 3,
        TemplateKind::IpfixV9Data => 4,
        TemplateKind::IpfixV9Options => 5,
        _ => 255,
    }
}

fn kind_from(c: u8) -> Option<TemplateKind> {
    Some(match c {
        0 => TemplateKind::V9Data,
        1 => TemplateKind::V9Options,
        2 => TemplateKind::IpfixData,
        3 => TemplateKind::IpfixOptions,
        4 => TemplateKind::IpfixV9Data,
        5 => TemplateKind::IpfixV9Options,
        _ => return None,
    })
}

impl FileTemplateStore {
    /// Refuse writes beyond `max_bytes` accounted bytes from now on.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Accounted bytes of the stored templates.
    /// Drop the templates of every stream of exporter `ip` (it was aged
    /// out): a full store refuses new templates, so a retired exporter's
    /// must not hold their place for ever.
    pub fn forget_exporter(&self, ip: std::net::IpAddr) {
        let Ok(mut e) = self.inner.lock() else {
            return;
        };
        let of_ip = |scope: &str| {
            scope
                .split_once('/')
                .and_then(|(addr, _)| {
                    let a = addr.parse::<std::net::SocketAddr>().map(|a| a.ip());
                    a.or_else(|_| addr.parse::<std::net::IpAddr>()).ok()
                })
                .is_some_and(|a| a == ip)
        };
        let mut freed = 0;
        e.map.retain(|k, v| {
            let keep = !of_ip(&k.scope);
            if !keep {
                freed += entry_bytes(k, v);
            }
            keep
        });
        e.bytes = e.bytes.saturating_sub(freed);
    }

    pub fn bytes(&self) -> usize {
        self.inner.lock().map(|e| e.bytes).unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|e| e.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serialise every entry: magic, then per entry scope length (u16), scope,
    /// kind (u8), template id (u16), value length (u32), value.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let Ok(e) = self.inner.lock() else {
            return out;
        };
        for (k, v) in e.map.iter() {
            let code = kind_code(k.kind);
            let (Ok(slen), Ok(vlen)) = (u16::try_from(k.scope.len()), u32::try_from(v.len()))
            else {
                continue;
            };
            if code == 255 {
                continue;
            }
            out.extend_from_slice(&slen.to_be_bytes());
            out.extend_from_slice(k.scope.as_bytes());
            out.push(code);
            out.extend_from_slice(&k.template_id.to_be_bytes());
            out.extend_from_slice(&vlen.to_be_bytes());
            out.extend_from_slice(v);
        }
        out
    }

    /// Parse a file image; all-or-nothing so a corrupt file loads nothing.
    pub fn decode(bytes: &[u8], path: &str) -> Result<Self, StoreFileError> {
        let corrupt = |offset, reason| StoreFileError::Corrupt {
            path: path.to_string(),
            offset,
            reason,
        };
        if bytes.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
            return Err(corrupt(0, "not a flowy template store"));
        }
        let mut e = Entries::default();
        let mut r = Reader {
            b: bytes,
            pos: MAGIC.len(),
        };
        while r.pos < bytes.len() {
            let at = r.pos;
            let entry = r
                .entry()
                .ok_or_else(|| corrupt(at, "truncated or invalid entry"))?;
            if e.map.len() < MAX_STORED_TEMPLATES {
                e.bytes += entry_bytes(&entry.0, &entry.1);
                if let Some(old) = e.map.insert(entry.0.clone(), entry.1) {
                    e.bytes = e.bytes.saturating_sub(entry_bytes(&entry.0, &old));
                }
            }
        }
        Ok(Self {
            inner: Mutex::new(e),
            ..Self::default()
        })
    }

    pub fn load(path: &Path) -> Result<Self, StoreFileError> {
        let p = path.display().to_string();
        match std::fs::read(path) {
            Ok(b) => Self::decode(&b, &p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(StoreFileError::Io { path: p, source }),
        }
    }

    /// Write atomically (temporary file + rename) so a crash mid-write never
    /// leaves a half file behind.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&self.encode())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn entry(&mut self) -> Option<(TemplateStoreKey, Vec<u8>)> {
        let slen = usize::from(self.u16()?);
        let scope = std::str::from_utf8(self.take(slen)?).ok()?.to_string();
        let kind = kind_from(*self.take(1)?.first()?)?;
        let id = self.u16()?;
        let vlen = usize::try_from(self.u32()?).ok()?;
        let value = self.take(vlen)?.to_vec();
        Some((TemplateStoreKey::new(scope, kind, id), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_beyond_the_byte_cap_are_refused() {
        let s = FileTemplateStore::default().with_max_bytes(2 * ENTRY_BYTES + 100);
        let key = |id| TemplateStoreKey::new("s", TemplateKind::IpfixData, id);
        s.put(&key(1), &[0; 40]).ok();
        s.put(&key(2), &[0; 40]).ok();
        s.put(&key(3), &[0; 1]).ok();
        assert_eq!((s.len(), s.refused.load(Ordering::Relaxed)), (2, 1));
        // Replacing an entry counts its new size only.
        s.put(&key(1), &[0; 50]).ok();
        assert_eq!(s.bytes(), 2 * ENTRY_BYTES + 2 + 90);
        s.remove(&key(2)).ok();
        s.put(&key(3), &[0; 1]).ok();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn an_aged_exporter_leaves_the_store() {
        let s = FileTemplateStore::default();
        let key = |scope: &str| TemplateStoreKey::new(scope, TemplateKind::V9Data, 256);
        for scope in [
            "10.0.0.1:0/9/1",
            "10.0.0.1:2055/10/0",
            "10.0.0.10:0/9/1",
            "[::1]:0/10/0",
        ] {
            s.put(&key(scope), &[0; 8]).ok();
        }
        s.forget_exporter("10.0.0.1".parse().expect("literal"));
        assert_eq!(s.len(), 2);
        assert!(s.get(&key("10.0.0.10:0/9/1")).ok().flatten().is_some());
        let left = ["10.0.0.10:0/9/1", "[::1]:0/10/0"].map(|k| entry_bytes(&key(k), &[0; 8]));
        assert_eq!(s.bytes(), left.iter().sum::<usize>());
        s.forget_exporter("::1".parse().expect("literal"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn round_trip_and_corrupt() {
        let s = FileTemplateStore::default();
        let k = TemplateStoreKey::new("10.0.0.1/10/0", TemplateKind::IpfixData, 256);
        s.put(&k, &[1, 2, 3]).ok();
        let img = s.encode();
        let back = FileTemplateStore::decode(&img, "x").ok();
        assert_eq!(
            back.and_then(|b| b.get(&k).ok().flatten()),
            Some(vec![1, 2, 3])
        );
        let cut = &img[..img.len() - 1];
        assert!(FileTemplateStore::decode(cut, "x").is_err());
        assert!(FileTemplateStore::decode(b"garbage!", "x").is_err());
    }
}
