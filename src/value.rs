//! Values of record and group fields, and the comparison rules of SPEC §2.3–§2.4.

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
    Set(ValueSet),
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
    pub fn is_in_set(&self, set: &ValueSet) -> bool {
        match self {
            Value::Uint(_) | Value::Ip(_) | Value::Text(_) => set.contains(self),
            _ => set.iter().any(|v| v.lang_eq(self)),
        }
    }
}

/// A set value: its members sorted by the structural order and without
/// duplicates, in one shared allocation. A `BTreeSet` behind an `Arc` cost a
/// node allocation per few members and pointer chasing on every equality
/// test, hash and output; a sorted slice compares, hashes and iterates
/// contiguously and answers membership by binary search.
///
/// `Eq`/`Ord`/`Hash` are those of the sorted slice, which are the same as a
/// `BTreeSet`'s (length-prefixed hash, lexicographic order over ascending
/// members), so equal sets are equal, hash alike and order as before.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueSet(Arc<[Value]>);

impl ValueSet {
    /// The set of `values` (any order, duplicates allowed).
    pub fn from_vec(mut values: Vec<Value>) -> Self {
        sort_dedup(&mut values);
        ValueSet(values.into())
    }

    /// Structural membership (binary search).
    pub fn contains(&self, v: &Value) -> bool {
        self.0.binary_search(v).is_ok()
    }

    /// Members in ascending structural order.
    pub fn iter(&self) -> std::slice::Iter<'_, Value> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Value] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Value> for ValueSet {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Self {
        ValueSet::from_vec(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a ValueSet {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Sort `values` by the structural order and drop repeats.
pub fn sort_dedup(values: &mut Vec<Value>) {
    values.sort_unstable();
    values.dedup();
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

impl std::str::FromStr for Prefix {
    type Err = String;

    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a host prefix).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an address or prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("'{s}': prefix length must be 0..={max}"))?,
        };
        Ok(Prefix { addr, len })
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::collections::BTreeSet;
    use std::hash::{Hash, Hasher};

    fn set(vals: &[u64]) -> ValueSet {
        vals.iter().map(|&u| Value::Uint(u)).collect()
    }

    fn btree(vals: &[u64]) -> BTreeSet<Value> {
        vals.iter().map(|&u| Value::Uint(u)).collect()
    }

    fn hash_of(v: &impl Hash) -> u64 {
        let mut h = DefaultHasher::new();
        v.hash(&mut h);
        h.finish()
    }

    #[test]
    fn sorts_and_dedups_unsorted_input() {
        let s = set(&[9, 3, 7, 3, 9, 1]);
        let got: Vec<&Value> = s.iter().collect();
        let want: Vec<Value> = [1, 3, 7, 9].into_iter().map(Value::Uint).collect();
        assert_eq!(got, want.iter().collect::<Vec<_>>());
        assert_eq!(s.len(), 4);
        assert!(!s.is_empty());
        assert!(set(&[]).is_empty());
    }

    #[test]
    fn contains_by_binary_search() {
        let s = set(&[5, 80, 443, 8080]);
        for u in [5, 80, 443, 8080] {
            assert!(s.contains(&Value::Uint(u)));
        }
        for u in [0, 6, 444, 9000] {
            assert!(!s.contains(&Value::Uint(u)));
        }
        assert!(!s.contains(&Value::Float(F64(80.0))));
        assert!(Value::Float(F64(80.0)).is_in_set(&s));
        assert!(Value::Uint(443).is_in_set(&s));
    }

    #[test]
    fn equality_is_set_equality() {
        assert_eq!(set(&[1, 2, 3]), set(&[3, 2, 1, 2]));
        assert_ne!(set(&[1, 2]), set(&[1, 2, 3]));
        let a = Value::Set(set(&[4, 4, 2]));
        let b = Value::Set(set(&[2, 4]));
        assert!(a.lang_eq(&b));
        assert_eq!(hash_of(&a), hash_of(&b));
        assert_eq!(hash_of(&set(&[7, 1])), hash_of(&set(&[1, 7, 7])));
    }

    #[test]
    fn orders_like_a_btreeset() {
        let cases: [&[u64]; 7] = [&[], &[1], &[1, 2], &[1, 3], &[2], &[0, 9, 9], &[1, 2, 3]];
        for a in cases {
            for b in cases {
                assert_eq!(set(a).cmp(&set(b)), btree(a).cmp(&btree(b)), "{a:?} {b:?}");
                assert_eq!(set(a) == set(b), btree(a) == btree(b), "{a:?} {b:?}");
            }
        }
        // Nested in values, too: sets sort after the scalar variants.
        assert!(Value::Text("z".into()) < Value::Set(set(&[0])));
    }
}
