//! Values of record and group fields, and the comparison rules of SPEC §2.3–§2.4.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

/// One field value. Times and durations are `Uint` milliseconds.
///
/// `Eq`/`Ord`/`Hash` are structural (a total order, so values can key hash
/// maps and sets); query comparisons go through [`Value::compare`], which
/// applies the language's rules (IPv4 vs IPv6 never equal, numbers across
/// `Uint`/`Float` compare numerically).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Uint(u64),
    Ip(IpAddr),
    Float(F64),
    Text(Arc<str>),
    Set(Arc<BTreeSet<Value>>),
}

/// An `f64` with a total order, so that `avg` values can live in sets and keys.
#[derive(Clone, Copy, Debug)]
pub struct F64(pub f64);

impl PartialEq for F64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for F64 {}
impl PartialOrd for F64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for F64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl std::hash::Hash for F64 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

impl Value {
    /// Ordering under the language's rules, or `None` where the values are
    /// incomparable (different address families, address vs number, …):
    /// every ordered comparison with an incomparable pair is false, `=` is
    /// false and `!=` is true.
    pub fn compare(&self, other: &Value) -> Option<std::cmp::Ordering> {
        use Value::*;
        match (self, other) {
            (Uint(a), Uint(b)) => Some(a.cmp(b)),
            (Float(a), Float(b)) => a.0.partial_cmp(&b.0),
            (Uint(a), Float(b)) => (*a as f64).partial_cmp(&b.0),
            (Float(a), Uint(b)) => a.0.partial_cmp(&(*b as f64)),
            (Ip(IpAddr::V4(a)), Ip(IpAddr::V4(b))) => Some(a.cmp(b)),
            (Ip(IpAddr::V6(a)), Ip(IpAddr::V6(b))) => Some(a.cmp(b)),
            (Text(a), Text(b)) => Some(a.cmp(b)),
            (Set(a), Set(b)) if a == b => Some(std::cmp::Ordering::Equal),
            _ => None,
        }
    }

    /// `self = other` under the language's rules (set equality for sets).
    pub fn lang_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Set(a), Value::Set(b)) => a == b,
            _ => self.compare(other) == Some(std::cmp::Ordering::Equal),
        }
    }

    /// The value as a signed number for delta arithmetic (`r.y − ref.x`).
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Uint(u) => Some(*u as f64),
            Value::Float(f) => Some(f.0),
            _ => None,
        }
    }

    /// Integer view, for `bitAND`/`bitOR` and exact deltas.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Uint(u) => Some(*u),
            _ => None,
        }
    }

    /// Set membership: `self in set` (addresses only match their own family).
    pub fn is_in_set(&self, set: &BTreeSet<Value>) -> bool {
        match self {
            Value::Uint(_) | Value::Ip(_) | Value::Text(_) => set.contains(self),
            _ => set.iter().any(|v| v.lang_eq(self)),
        }
    }
}

/// An address prefix for `in` tests (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// True when `ip` is of the prefix's family and inside it.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.len.min(32)))
                    .unwrap_or(0);
                u32::from(p) & mask == u32::from(*a) & mask
            }
            (IpAddr::V6(p), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len.min(128)))
                    .unwrap_or(0);
                u128::from(p) & mask == u128::from(*a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}
