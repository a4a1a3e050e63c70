//! Partition keys (SPEC §5): record-level values that every record of one
//! match shares, so that a cluster can split records by a hash of them and
//! run each partition on its own with exactly the matches of a single run.
//!
//! The rule:
//! - The branches that matter are those of the exported merger module and
//!   of every difference module sharing a branch with it (a difference's
//!   extension must sit in the tuple's partition, or the tuple survives
//!   there wrongly).
//! - Per branch, E_b is the fields with a plain `x = x` grouper rule (no
//!   delta) in every module: every member of a group has the first member's
//!   value. Without a grouper, or with one without modules, groups are
//!   single records and every field qualifies. A module without rules puts
//!   no constraint, so E_b is empty.
//! - A field `x` is a key part if it is in every E_b and, for the exported
//!   module and for each difference module together with it, the top-level
//!   (ANDed, not under `OR`/`NOT`) delta-less `=` field rules connect
//!   `b.x` of all their branches (union-find, so chains count).
//! - A pair `{x, y}` of the remaining fields is an unordered part if both
//!   are in every E_b and every branch has, against the module's first
//!   branch, `x, y` equated straight or swapped (`A.srcip = B.dstip`,
//!   `A.dstip = B.srcip`): the sorted pair of values is shared.
//! - One relevant branch: its E_b, or `Any` when its groups are single
//!   records. Nothing found: `Global`.
//! - Measurements and record ids (`stime`, `etime`, `duration`, `bytes`,
//!   `packets`, `rec_id`) are never parts: equal values of them are
//!   coincidence rather than identity, a key over them is heavily skewed
//!   (most flows are a few packets), and leaving a part out only coarsens
//!   the key, which never changes a result.
//!
//! Groupers' windows and time rules only split groups further; they never
//! join records of different keys, so they do not matter here.
//!
//! Key names ([`KeySpec::name`]): parts joined by `-`; a field part is its
//! canonical name (IANA elements beyond the table: `ie<id>`), an unordered
//! part is `u-<a>-<b>` in canonical field order, e.g. `srcip`,
//! `prot-u-srcip-dstip`. No field token is `u` or contains `-`, so names
//! are unambiguous.
//!
//! Hash ([`KeySpec::hash`]): FNV-1a 64 over a canonical encoding of the
//! parts' values in order (an unordered pair's two encodings sorted; an
//! absent field a marker of its own; a whole float as the integer it
//! equals, so values the language calls equal encode alike), then the
//! murmur3 `fmix64` finaliser so that `hash % n` uses well-mixed bits.
//! Both are fixed by definition: the same in every process and version.

use std::hash::Hasher as _;

use fnv::FnvHasher;
use std::fmt;
use std::net::IpAddr;

use smallvec::SmallVec;

use crate::query::plan::{
    BranchPlan, CmpOp, GroupField, GrouperPlan, MergeOperand, MergeRule, MergerPlan, Plan,
};
use crate::record::{Field, Record};
use crate::value::Value;

/// Where the records of a query may be split.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PartitionKey {
    /// Every match is exactly one record (no grouper with modules, no
    /// merger): any partition will do.
    Any,
    /// All records of one match share these values.
    Keyed(KeySpec),
    /// No key: the query must run on one worker. The string says why.
    Global(String),
}

/// An ordered, non-empty list of key parts in canonical order: field parts
/// by field, then unordered pairs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeySpec {
    parts: Vec<KeyPart>,
}

/// One component of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPart {
    /// The field's value.
    Field(Field),
    /// The sorted pair of the two fields' values (`{srcip, dstip}`); the
    /// fields are in canonical order.
    Unordered(Field, Field),
}

impl KeySpec {
    /// A key of these parts, put in canonical order; `None` when empty.
    pub fn new(mut parts: Vec<KeyPart>) -> Option<Self> {
        for p in &mut parts {
            if let KeyPart::Unordered(a, b) = *p {
                if b < a {
                    *p = KeyPart::Unordered(b, a);
                }
            }
        }
        parts.sort();
        parts.dedup();
        (!parts.is_empty()).then_some(KeySpec { parts })
    }

    pub fn parts(&self) -> &[KeyPart] {
        &self.parts
    }

    /// A NATS-subject-safe token naming the key (`[a-z0-9_-]` only), stable
    /// across versions; see the module documentation.
    pub fn name(&self) -> String {
        let tokens: Vec<String> = self
            .parts
            .iter()
            .map(|p| match p {
                KeyPart::Field(f) => token(*f),
                KeyPart::Unordered(a, b) => format!("u-{}-{}", token(*a), token(*b)),
            })
            .collect();
        tokens.join("-")
    }

    /// Stable 64-bit hash of the record's key values (see the module
    /// documentation): the same in every process, platform and run.
    pub fn hash(&self, rec: &Record) -> u64 {
        let mut h = FnvHasher::default();
        let mut a = Encoding::new();
        let mut b = Encoding::new();
        for p in &self.parts {
            match p {
                KeyPart::Field(f) => {
                    h.write(&[1]);
                    a.clear();
                    encode(rec.get(*f).as_ref(), &mut a);
                    h.write(&a);
                }
                KeyPart::Unordered(x, y) => {
                    h.write(&[2]);
                    a.clear();
                    b.clear();
                    encode(rec.get(*x).as_ref(), &mut a);
                    encode(rec.get(*y).as_ref(), &mut b);
                    let (lo, hi) = if b < a { (&b, &a) } else { (&a, &b) };
                    h.write(lo);
                    h.write(hi);
                }
            }
        }
        fmix64(h.finish())
    }

    /// The partition of `rec` among `partitions` (0 is read as 1).
    pub fn partition(&self, rec: &Record, partitions: u32) -> u32 {
        let n = u64::from(partitions.max(1));
        // The remainder is below `n`, which fits in u32.
        u32::try_from(self.hash(rec) % n).unwrap_or(0)
    }
}

/// A field's token in key names.
fn token(f: Field) -> String {
    match f {
        Field::Extra(id) => format!("ie{id}"),
        f => f.name().to_ascii_lowercase(),
    }
}

impl fmt::Display for KeyPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyPart::Field(x) => write!(f, "{x}"),
            KeyPart::Unordered(a, b) => write!(f, "{{{a}, {b}}}"),
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionKey::Any => f.write_str("any partition (every match is one record)"),
            PartitionKey::Keyed(k) => write!(f, "{k}"),
            PartitionKey::Global(why) => write!(f, "global: {why}"),
        }
    }
}

impl Plan {
    /// The query's partition key (SPEC §5; the rule is in
    /// [`crate::query::partition`]).
    pub fn partition_key(&self) -> PartitionKey {
        partition_key(self)
    }
}

// ------------------------------------------------------------------ hashing

type Encoding = SmallVec<[u8; 32]>;

/// Canonical bytes of a value: equal values under the language's `=`
/// encode alike (IPv4 and IPv6 never are equal, so they differ by tag).
fn encode(v: Option<&Value>, out: &mut Encoding) {
    let Some(v) = v else {
        out.push(0);
        return;
    };
    match v {
        Value::Uint(u) => {
            out.push(1);
            out.extend_from_slice(&u.to_le_bytes());
        }
        Value::Float(x) => match whole(x.0) {
            Some(u) => {
                out.push(1);
                out.extend_from_slice(&u.to_le_bytes());
            }
            None => {
                out.push(2);
                out.extend_from_slice(&x.0.to_bits().to_le_bytes());
            }
        },
        Value::Ip(IpAddr::V4(a)) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        Value::Ip(IpAddr::V6(a)) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
        Value::Text(t) => {
            out.push(3);
            out.extend_from_slice(&(t.len() as u64).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        Value::Set(s) => {
            out.push(5);
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            for m in s.iter() {
                encode(Some(m), out);
            }
        }
    }
}

/// The integer a float equals, if any (`-0.0` is 0).
fn whole(x: f64) -> Option<u64> {
    // 2^64 as f64; below it every whole float converts exactly.
    const LIMIT: f64 = 18_446_744_073_709_551_616.0;
    (x.fract() == 0.0 && (0.0..LIMIT).contains(&x)).then_some(x as u64)
}

/// murmur3's 64-bit finaliser: FNV's low bits alone split poorly.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

// --------------------------------------------------------------- derivation

/// Fields never used as key parts (see the module documentation).
fn is_measurement(f: Field) -> bool {
    matches!(
        f,
        Field::Stime
            | Field::Etime
            | Field::Duration
            | Field::Bytes
            | Field::Packets
            | Field::RecId
    )
}

/// The fields constant within any group of a branch.
#[derive(Clone, Debug, PartialEq)]
enum Constant {
    /// Groups are single records.
    All,
    /// Sorted, without measurements.
    Fields(Vec<Field>),
}

fn constant_fields(b: &BranchPlan) -> Constant {
    match &b.grouper {
        Some(g) if !g.modules.is_empty() => Constant::Fields(grouper_constants(g)),
        _ => Constant::All,
    }
}

/// Fields with a delta-less `x = x` rule in every module, measurements
/// left out.
fn grouper_constants(g: &GrouperPlan) -> Vec<Field> {
    let mut out = every_module_keys(g);
    out.retain(|f| !is_measurement(*f));
    out
}

/// Fields with a delta-less `x = x` rule in every module (SPEC §1.2).
fn every_module_keys(g: &GrouperPlan) -> Vec<Field> {
    let keyed = |rules: &[crate::query::plan::GroupRule], f: Field| {
        rules
            .iter()
            .any(|r| r.left == f && r.right == f && r.op == CmpOp::Eq && r.delta.is_none())
    };
    let mut out: Vec<Field> = g
        .modules
        .first()
        .map(|m| m.rules.iter().map(|r| r.left).collect())
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out.retain(|f| g.modules.iter().all(|m| keyed(&m.rules, *f)));
    out
}

/// The record field a group field of branch `b` always equals in every
/// member, if any: an implicit key slot, or any field of a single-record
/// group.
fn record_field(b: &BranchPlan, f: GroupField) -> Option<Field> {
    match f {
        GroupField::Record(x) => Some(x),
        GroupField::Slot(i) => b
            .grouper
            .as_ref()
            .filter(|g| !g.modules.is_empty())
            .and_then(|g| g.keys.get(i).copied()),
        _ => None,
    }
}

/// One join whose groups must share the key: the exported module alone, or
/// it together with one difference module (whose extension groups decide
/// the tuple's fate).
struct Context<'a> {
    /// "module 'm1'" or "difference module 'veto'", for reasons.
    label: String,
    branches: Vec<usize>,
    rules: Vec<&'a MergeRule>,
}

fn contexts(m: &MergerPlan) -> Vec<Context<'_>> {
    let Some(export) = m.modules.get(m.export) else {
        return Vec::new();
    };
    let label = if m.modules.len() == 1 && export.name == m.name {
        format!("merger '{}'", m.name)
    } else {
        format!("merger '{}' module '{}'", m.name, export.name)
    };
    let mut out = vec![Context {
        label,
        branches: export.branches.clone(),
        rules: export.rules.iter().collect(),
    }];
    for (i, d) in m.modules.iter().enumerate() {
        if i == m.export || !d.branches.iter().any(|b| export.branches.contains(b)) {
            continue;
        }
        let mut branches = export.branches.clone();
        branches.extend(d.branches.iter().filter(|b| !export.branches.contains(b)));
        out.push(Context {
            label: format!("merger '{}' difference module '{}'", m.name, d.name),
            branches,
            rules: export.rules.iter().chain(&d.rules).collect(),
        });
    }
    out
}

/// Top-level conjuncts (lines and `AND`s, not under `OR`/`NOT`).
fn conjuncts<'a>(rules: &[&'a MergeRule], out: &mut Vec<&'a MergeRule>) {
    for r in rules {
        match r {
            MergeRule::And(v) => conjuncts(&v.iter().collect::<Vec<_>>(), out),
            other => out.push(other),
        }
    }
}

/// Union-find over (branch, field) nodes equated by a context's rules.
struct Equalities {
    nodes: Vec<(usize, Field)>,
    parent: Vec<usize>,
    /// Delta-less `=` rules between fields of two different branches, and
    /// how many of them are between key fields.
    cross_any: usize,
    cross: usize,
}

impl Equalities {
    fn of(plan: &Plan, ctx: &Context<'_>) -> Self {
        let mut eq = Equalities {
            nodes: Vec::new(),
            parent: Vec::new(),
            cross_any: 0,
            cross: 0,
        };
        let mut flat = Vec::new();
        conjuncts(&ctx.rules, &mut flat);
        for r in flat {
            let MergeRule::Field(f) = r else { continue };
            if f.op != CmpOp::Eq || f.delta.is_some() {
                continue;
            }
            let side = |o: &MergeOperand| match o {
                MergeOperand::Field { branch, field } => plan
                    .branches
                    .get(*branch)
                    .and_then(|b| record_field(b, *field))
                    .map(|x| (*branch, x)),
                _ => None,
            };
            if let (MergeOperand::Field { branch: x, .. }, MergeOperand::Field { branch: y, .. }) =
                (&f.lhs, &f.rhs)
            {
                eq.cross_any += usize::from(x != y);
            }
            if let (Some(l), Some(r)) = (side(&f.lhs), side(&f.rhs)) {
                if l.0 != r.0 {
                    eq.cross += 1;
                }
                let (a, b) = (eq.node(l), eq.node(r));
                eq.union(a, b);
            }
        }
        eq
    }

    fn node(&mut self, n: (usize, Field)) -> usize {
        if let Some(i) = self.nodes.iter().position(|x| *x == n) {
            return i;
        }
        self.nodes.push(n);
        self.parent.push(self.parent.len());
        self.parent.len() - 1
    }

    fn root(&self, mut i: usize) -> usize {
        while self.parent[i] != i {
            i = self.parent[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        self.parent[ra] = rb;
    }

    /// Are `a` and `b` known equal? A node is equal to itself even when no
    /// rule mentions it.
    fn same(&self, a: (usize, Field), b: (usize, Field)) -> bool {
        if a == b {
            return true;
        }
        let find = |n| self.nodes.iter().position(|x| *x == n);
        match (find(a), find(b)) {
            (Some(i), Some(j)) => self.root(i) == self.root(j),
            _ => false,
        }
    }

    /// Fields mentioned by the rules (the candidates when every branch has
    /// single-record groups).
    fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.nodes.iter().map(|(_, f)| *f)
    }
}

/// Does `x` connect every branch of the context?
fn ordered_in(eq: &Equalities, branches: &[usize], x: Field) -> bool {
    let Some(&r) = branches.first() else {
        return false;
    };
    branches.iter().all(|&b| eq.same((r, x), (b, x)))
}

/// Is `{x, y}` shared, straight or swapped, by every branch of the context?
fn pair_in(eq: &Equalities, branches: &[usize], x: Field, y: Field) -> bool {
    let Some(&r) = branches.first() else {
        return false;
    };
    branches.iter().all(|&b| {
        (eq.same((r, x), (b, x)) && eq.same((r, y), (b, y)))
            || (eq.same((r, x), (b, y)) && eq.same((r, y), (b, x)))
    })
}

/// The key parts every context allows among `candidates`: ordered fields
/// first, then greedily pairs of the rest.
fn parts(ctxs: &[(&Context<'_>, &Equalities)], candidates: &[Field]) -> Vec<KeyPart> {
    let ordered: Vec<Field> = candidates
        .iter()
        .copied()
        .filter(|x| ctxs.iter().all(|(c, eq)| ordered_in(eq, &c.branches, *x)))
        .collect();
    let mut rest: Vec<Field> = candidates
        .iter()
        .copied()
        .filter(|x| !ordered.contains(x))
        .collect();
    let mut out: Vec<KeyPart> = ordered.into_iter().map(KeyPart::Field).collect();
    while let Some(x) = rest.first().copied() {
        rest.remove(0);
        let partner = rest
            .iter()
            .position(|y| ctxs.iter().all(|(c, eq)| pair_in(eq, &c.branches, x, *y)));
        if let Some(i) = partner {
            out.push(KeyPart::Unordered(x, rest.remove(i)));
        }
    }
    out
}

/// The partition key of a compiled query (see the module documentation).
pub fn partition_key(plan: &Plan) -> PartitionKey {
    match (&plan.merger, plan.branches.as_slice()) {
        (Some(m), _) => merged_key(plan, m),
        (None, [b]) => single_branch(b),
        (None, _) => PartitionKey::Global("the query has no merger to join its branches".into()),
    }
}

fn merged_key(plan: &Plan, m: &MergerPlan) -> PartitionKey {
    let ctxs = contexts(m);
    let mut relevant: Vec<usize> = ctxs.iter().flat_map(|c| c.branches.clone()).collect();
    relevant.sort_unstable();
    relevant.dedup();
    let branches: Option<Vec<&BranchPlan>> =
        relevant.iter().map(|i| plan.branches.get(*i)).collect();
    let Some(branches) = branches.filter(|b| !b.is_empty()) else {
        return PartitionKey::Global(format!("merger '{}' exports no known branch", m.name));
    };
    if let [only] = branches[..] {
        return single_branch(only);
    }
    let mut constants = Vec::new();
    for b in branches {
        match constant_fields(b) {
            Constant::Fields(f) if f.is_empty() => {
                return PartitionKey::Global(ungrouped_reason(b));
            }
            c => constants.push((b, c)),
        }
    }
    let eqs: Vec<Equalities> = ctxs.iter().map(|c| Equalities::of(plan, c)).collect();
    let with_eq: Vec<(&Context<'_>, &Equalities)> = ctxs.iter().zip(&eqs).collect();
    let candidates = intersect(&constants, &with_eq);
    if candidates.is_empty() {
        return PartitionKey::Global(no_shared_field(&constants));
    }
    match KeySpec::new(parts(&with_eq, &candidates)) {
        Some(k) => PartitionKey::Keyed(k),
        None => PartitionKey::Global(merger_reason(plan, m, &with_eq, &candidates)),
    }
}

fn single_branch(b: &BranchPlan) -> PartitionKey {
    match constant_fields(b) {
        Constant::All => PartitionKey::Any,
        Constant::Fields(f) => match KeySpec::new(f.into_iter().map(KeyPart::Field).collect()) {
            Some(k) => PartitionKey::Keyed(k),
            None => PartitionKey::Global(ungrouped_reason(b)),
        },
    }
}

/// The fields constant in every relevant branch; when every branch has
/// single-record groups, those the merger's equalities mention.
fn intersect(
    constants: &[(&BranchPlan, Constant)],
    ctxs: &[(&Context<'_>, &Equalities)],
) -> Vec<Field> {
    let mut out: Option<Vec<Field>> = None;
    for (_, c) in constants {
        if let Constant::Fields(f) = c {
            out = Some(match out {
                None => f.clone(),
                Some(o) => o.into_iter().filter(|x| f.contains(x)).collect(),
            });
        }
    }
    let mut out = out.unwrap_or_else(|| {
        ctxs.iter()
            .flat_map(|(_, eq)| eq.fields())
            .filter(|f| !is_measurement(*f))
            .collect()
    });
    out.sort();
    out.dedup();
    out
}

/// Why a branch's groups share no usable field.
fn ungrouped_reason(b: &BranchPlan) -> String {
    let Some(g) = &b.grouper else {
        return format!("branch {} has no key field", b.name);
    };
    if let Some(m) = g.modules.iter().find(|m| m.rules.is_empty()) {
        return format!(
            "grouper '{}' of branch {} has module '{}' without rules, so a group may hold any records of a window",
            g.name, b.name, m.name
        );
    }
    let all = every_module_keys(g);
    if !all.is_empty() {
        let names: Vec<&str> = all.iter().map(|f| f.name()).collect();
        return format!(
            "grouper '{}' of branch {} keys only on {} (measurements are not partition keys)",
            g.name,
            b.name,
            names.join(", ")
        );
    }
    format!(
        "grouper '{}' of branch {} has no plain 'x = x' rule (without delta) in every module",
        g.name, b.name
    )
}

fn no_shared_field(constants: &[(&BranchPlan, Constant)]) -> String {
    let each: Vec<String> = constants
        .iter()
        .filter_map(|(b, c)| match c {
            Constant::Fields(f) => {
                let names: Vec<&str> = f.iter().map(|x| x.name()).collect();
                Some(format!("{}: {}", b.name, names.join(", ")))
            }
            Constant::All => None,
        })
        .collect();
    format!(
        "the branches' groupers have no key field in common ({})",
        each.join("; ")
    )
}

/// Why the merger's equalities give no key although the groupers share
/// fields: the first context that allows nothing on its own.
fn merger_reason(
    plan: &Plan,
    m: &MergerPlan,
    ctxs: &[(&Context<'_>, &Equalities)],
    candidates: &[Field],
) -> String {
    let name = |i: usize| plan.branches.get(i).map_or("?", |b| b.name.as_str());
    for &(c, eq) in ctxs {
        let alone = parts(&[(c, eq)], candidates);
        if !alone.is_empty() {
            continue;
        }
        let names: Vec<&str> = c.branches.iter().map(|b| name(*b)).collect();
        if eq.cross_any == 0 {
            return format!(
                "{} relates {} by time and comparisons only (no 'A.x = B.x' rule outside OR)",
                c.label,
                names.join(", ")
            );
        }
        if eq.cross == 0 {
            return format!(
                "{} equates only fields that are not group keys (a key field has a plain 'x = x' rule in every module of its grouper)",
                c.label
            );
        }
        let first = c.branches.first().copied().unwrap_or(0);
        let loose = c.branches.iter().skip(1).find(|&&b| {
            !candidates.iter().any(|x| {
                eq.same((first, *x), (b, *x))
                    || candidates
                        .iter()
                        .any(|y| eq.same((first, *x), (b, *y)) && eq.same((first, *y), (b, *x)))
            })
        });
        if let Some(&b) = loose {
            let hint = swap_hint(eq, first, b, candidates).map_or(String::new(), |(x, y)| {
                format!(
                    " ({0}.{2} = {1}.{3} alone is no key: a swapped pair needs {0}.{3} = {1}.{2} too)",
                    name(first),
                    name(b),
                    x.name(),
                    y.name()
                )
            });
            return format!(
                "{} equates no key field of branch {} with the same field of {}{hint}",
                c.label,
                name(b),
                name(first)
            );
        }
        return format!(
            "{} equates no key field across all of {} (a swapped pair needs both A.x = B.y and A.y = B.x)",
            c.label,
            names.join(", ")
        );
    }
    format!(
        "merger '{}': its modules share no key field (each allows a key, but not the same one)",
        m.name
    )
}

/// A cross-field equality `first.x = b.y` (x ≠ y) over key fields, for the
/// hint that a swapped pair needs its mirror rule.
fn swap_hint(
    eq: &Equalities,
    first: usize,
    b: usize,
    candidates: &[Field],
) -> Option<(Field, Field)> {
    candidates.iter().find_map(|&x| {
        candidates
            .iter()
            .find(|&&y| y != x && eq.same((first, x), (b, y)))
            .map(|&y| (x, y))
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    use super::*;
    use crate::query::compile_source;
    use crate::record::RecordFields;

    fn key(src: &str) -> PartitionKey {
        compile_source("q", "q.flowy", src)
            .unwrap_or_else(|d| panic!("does not compile:\n{d}\n{src}"))
            .partition_key()
    }

    fn keyed(src: &str) -> KeySpec {
        match key(src) {
            PartitionKey::Keyed(k) => k,
            other => panic!("expected a key, got {other}\n{src}"),
        }
    }

    fn global(src: &str) -> String {
        match key(src) {
            PartitionKey::Global(why) => why,
            other => panic!("expected global, got {other}\n{src}"),
        }
    }

    const F: KeyPart = KeyPart::Field(Field::SrcIp);
    const PAIR: KeyPart = KeyPart::Unordered(Field::SrcIp, Field::DstIp);

    /// Two grouped branches A and B (both grouped by `g`) and a merger with
    /// `rules` (one module).
    fn two(g: &str, rules: &str) -> String {
        format!(
            "filter f {{ prot = 6 }}\ngrouper g {{ {g} aggregate sum(bytes) as b }}\n\
             merger M {{ branches A, B\n{rules}\n}}\nungroup U {{}}\n\
             S branch A -> f -> g -> M\nS branch B -> f -> g -> M\nM -> U -> \"out\"\n"
        )
    }

    const SRC_DST: &str = "module g1 { srcip = srcip dstip = dstip etime < stime rdelta 1s }";

    #[test]
    fn http_download_is_the_unordered_address_pair() {
        let k = keyed(include_str!("../../config/queries/http-download.flowy"));
        assert_eq!(k.parts(), [PAIR]);
        assert_eq!(k.to_string(), "{srcip, dstip}");
        assert_eq!(k.name(), "u-srcip-dstip");
    }

    #[test]
    fn shipped_examples() {
        let ipv6 = keyed(include_str!("../../config/queries/ipv6-failure.flowy"));
        assert_eq!(ipv6.parts(), [F]);
        let skype = keyed(include_str!("../../config/queries/skype.flowy"));
        assert_eq!(skype.parts(), [F]);
    }

    #[test]
    fn single_branch_grouper_keys_on_every_module_key() {
        let k = keyed(include_str!("../../tests/data/udp-by-srcip.flowy"));
        assert_eq!(k.parts(), [F]);
        // Both modules key on srcip and prot; only one on dstip.
        let src = "filter f { prot = 6 }\ngrouper g {\n module a { srcip = srcip dstip = dstip prot = prot }\n module b { prot = prot srcip = srcip }\n}\nS branch A -> f -> g\n";
        let k = keyed(src);
        assert_eq!(
            k.parts(),
            [KeyPart::Field(Field::SrcIp), KeyPart::Field(Field::Prot)]
        );
        assert_eq!(k.name(), "srcip-prot");
        assert_eq!(k.to_string(), "srcip, prot");
        // A delta makes values differ: not a key.
        let why = global("grouper g { module a { srcport = srcport delta 2 } }\nS branch A -> g\n");
        assert!(why.contains("no plain 'x = x' rule"), "{why}");
    }

    #[test]
    fn a_module_without_rules_makes_a_query_global() {
        let src = "grouper g { module a { srcip = srcip } module all { } }\nS branch A -> g\n";
        let why = global(src);
        assert!(why.contains("module 'all' without rules"), "{why}");
    }

    #[test]
    fn measurements_are_never_keys() {
        let why = global("grouper g { module a { bytes = bytes } }\nS branch A -> g\n");
        assert!(why.contains("keys only on bytes"), "{why}");
        let k =
            keyed("grouper g { module a { bytes = bytes dstport = dstport } }\nS branch A -> g\n");
        assert_eq!(k.parts(), [KeyPart::Field(Field::DstPort)]);
    }

    #[test]
    fn filter_only_and_modules_free_groupers_go_anywhere() {
        let src = include_str!("../../tests/data/tcp-port80.flowy");
        assert_eq!(key(src), PartitionKey::Any);
        assert_eq!(
            key(src).to_string(),
            "any partition (every match is one record)"
        );
        assert_eq!(
            key("grouper g { aggregate sum(bytes) as b }\nS branch A -> g\n"),
            PartitionKey::Any
        );
        // A merger over one ungrouped branch: still one record per match.
        let one = "filter f { prot = 6 }\nmerger M { branches A\n A.bytes > 10 }\nungroup U {}\nS branch A -> f -> M\nM -> U -> \"o\"\n";
        assert_eq!(key(one), PartitionKey::Any);
    }

    #[test]
    fn a_time_only_merger_is_global() {
        let why = global(&two(SRC_DST, "A < B"));
        assert!(why.contains("by time and comparisons only"), "{why}");
        let shown = PartitionKey::Global(why).to_string();
        assert!(
            shown.starts_with("global: merger 'M' relates A, B by time"),
            "{shown}"
        );
    }

    #[test]
    fn rules_under_or_do_not_count() {
        let why = global(&two(
            SRC_DST,
            "A.srcip = B.srcip OR A.dstip = B.dstip\nA < B",
        ));
        assert!(why.contains("by time and comparisons only"), "{why}");
        // The ANDed line counts, the OR line does not: a smaller key.
        let k = keyed(&two(
            SRC_DST,
            "A.srcip = B.srcip\nA.dstip = B.dstip OR A.b > B.b",
        ));
        assert_eq!(k.parts(), [F]);
        // AND inside a line counts.
        let k = keyed(&two(SRC_DST, "A.srcip = B.srcip AND A.dstip = B.dstip"));
        assert_eq!(
            k.parts(),
            [KeyPart::Field(Field::SrcIp), KeyPart::Field(Field::DstIp)]
        );
        assert_eq!(k.name(), "srcip-dstip");
        // Not `!=`, not a delta, not NOT.
        for rules in [
            "A.srcip != B.srcip",
            "NOT A.srcip != B.srcip",
            "A.b = B.b delta 3",
        ] {
            global(&two(SRC_DST, rules));
        }
    }

    #[test]
    fn swapped_pairs_are_unordered_parts() {
        let k = keyed(&two(SRC_DST, "A.srcip = B.dstip\nA.dstip = B.srcip"));
        assert_eq!(k.parts(), [PAIR]);
        // Written the other way round, and with `dstip` first in the grouper.
        let g = "module g1 { dstip = dstip srcip = srcip }";
        let k = keyed(&two(g, "B.srcip = A.dstip\nB.dstip = A.srcip"));
        assert_eq!(k.parts(), [PAIR]);
        // Half a swap is no key; the reason says what is missing.
        let why = global(&two(SRC_DST, "A.srcip = B.dstip"));
        assert!(
            why.contains("a swapped pair needs A.dstip = B.srcip"),
            "{why}"
        );
        // A straight field next to a swapped pair.
        let g = "module g1 { srcip = srcip dstip = dstip prot = prot }";
        let k = keyed(&two(
            g,
            "A.srcip = B.dstip\nA.dstip = B.srcip\nA.prot = B.prot",
        ));
        assert_eq!(k.parts(), [KeyPart::Field(Field::Prot), PAIR]);
        assert_eq!(k.name(), "prot-u-srcip-dstip");
        assert_eq!(k.to_string(), "prot, {srcip, dstip}");
    }

    /// Three branches A, B, C with `rules`, all grouped by srcip and dstip.
    fn three(rules: &str) -> String {
        format!(
            "grouper g {{ {SRC_DST} }}\nmerger M {{ branches A, B, C\n{rules}\n}}\nungroup U {{}}\n\
             S branch A -> g -> M\nS branch B -> g -> M\nS branch C -> g -> M\nM -> U -> \"o\"\n"
        )
    }

    #[test]
    fn transitive_chains_across_three_branches() {
        let k = keyed(&three("A.srcip = B.srcip\nB.srcip = C.srcip"));
        assert_eq!(k.parts(), [F]);
        let k = keyed(&three("A.srcip = B.srcip\nC.srcip = A.srcip"));
        assert_eq!(k.parts(), [F]);
        // Two swaps in a row: A and C straight, B swapped against both.
        let k = keyed(&three(
            "A.srcip = B.dstip\nA.dstip = B.srcip\nB.srcip = C.dstip\nB.dstip = C.srcip",
        ));
        assert_eq!(k.parts(), [PAIR]);
        // A chain that leaves C out.
        let why = global(&three("A.srcip = B.srcip\nB.dstip = C.dstip"));
        assert!(why.contains("branch C"), "{why}");
    }

    #[test]
    fn difference_modules_must_share_the_key() {
        let src = |veto: &str| {
            format!(
                "grouper g {{ {SRC_DST} }}\nmerger M {{\n module found {{ branches A, B\n A.srcip = B.srcip\n A.dstip = B.dstip }}\n module veto {{ branches A, C\n {veto} }}\n export found\n}}\nungroup U {{}}\n\
                 S branch A -> g -> M\nS branch B -> g -> M\nS branch C -> g -> M\nM -> U -> \"o\"\n"
            )
        };
        let k = keyed(&src("A.srcip = C.srcip"));
        assert_eq!(k.parts(), [F]);
        let why = global(&src("A < C"));
        assert!(why.contains("difference module 'veto'"), "{why}");
        // The exported module's equalities carry over to the shared branch.
        let k = keyed(&src("A.srcip = C.srcip\nA.dstip = C.dstip"));
        assert_eq!(
            k.parts(),
            [KeyPart::Field(Field::SrcIp), KeyPart::Field(Field::DstIp)]
        );
    }

    #[test]
    fn plain_aggregates_of_non_keys_are_not_keys() {
        // `dstip` is the first member's value, not shared by the group.
        let src = "grouper g { module g1 { srcip = srcip } aggregate dstip }\nmerger M { branches A, B\n A.dstip = B.dstip }\nungroup U {}\nS branch A -> g -> M\nS branch B -> g -> M\nM -> U -> \"o\"\n";
        let why = global(src);
        assert!(
            why.contains("equates only fields that are not group keys"),
            "{why}"
        );
    }

    #[test]
    fn ungrouped_branches_take_the_merger_fields() {
        let src = "filter f { prot = 6 }\nmerger M { branches A, B\n A.srcip = B.dstip\n A.dstip = B.srcip\n A.dstport = B.srcport\n A.srcport = B.dstport\n A.bytes = B.bytes }\nungroup U {}\nS branch A -> f -> M\nS branch B -> f -> M\nM -> U -> \"o\"\n";
        let k = keyed(src);
        assert_eq!(
            k.parts(),
            [PAIR, KeyPart::Unordered(Field::SrcPort, Field::DstPort)]
        );
    }

    fn rec(src: IpAddr, dst: IpAddr, prot: Option<u8>) -> Record {
        Record::from(RecordFields {
            srcip: Some(src),
            dstip: Some(dst),
            prot,
            ..RecordFields::default()
        })
    }

    fn v4(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn hashes_are_pinned_symmetric_for_pairs_and_tell_absent_apart() {
        let pair = KeySpec::new(vec![KeyPart::Unordered(Field::DstIp, Field::SrcIp)]).unwrap();
        assert_eq!(pair.parts(), [PAIR], "pairs are put in canonical order");
        let (a, b) = (rec(v4(1), v4(2), Some(6)), rec(v4(2), v4(1), None));
        assert_eq!(pair.hash(&a), pair.hash(&b));
        assert_ne!(pair.hash(&a), pair.hash(&rec(v4(1), v4(3), Some(6))));
        // Pinned (computed independently: FNV-1a of 02 04 0a000001 04
        // 0a000002, then fmix64): collectors and workers of every version
        // agree.
        assert_eq!(pair.hash(&a), 0x99ad_07f6_ddba_6b0e);
        let prot = KeySpec::new(vec![KeyPart::Field(Field::Prot)]).unwrap();
        assert_ne!(prot.hash(&a), prot.hash(&b), "absent is not 6");
        let zero = rec(v4(1), v4(2), Some(0));
        assert_ne!(prot.hash(&zero), prot.hash(&b), "absent is not 0");
        // IPv4 and IPv6 are never equal.
        let mapped = rec(
            IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
            v4(2),
            None,
        );
        let src = KeySpec::new(vec![F]).unwrap();
        assert_ne!(src.hash(&a), src.hash(&mapped));
        let v6 = rec(IpAddr::V6(Ipv6Addr::LOCALHOST), v4(2), None);
        assert_ne!(src.hash(&v6), src.hash(&mapped));
        for n in 1..=7 {
            assert!(pair.partition(&a, n) < n);
        }
        assert_eq!(pair.partition(&a, 0), 0);
    }

    #[test]
    fn equal_values_encode_alike() {
        let enc = |v: Value| {
            let mut e = Encoding::new();
            encode(Some(&v), &mut e);
            e
        };
        let f = |x: f64| Value::Float(crate::value::F64(x));
        assert_eq!(enc(f(3.0)), enc(Value::Uint(3)));
        assert_eq!(enc(f(-0.0)), enc(Value::Uint(0)));
        assert_ne!(enc(f(3.5)), enc(Value::Uint(3)));
        assert_ne!(enc(Value::Text(Arc::from("a"))), enc(Value::Uint(1)));
        let mut absent = Encoding::new();
        encode(None, &mut absent);
        assert_ne!(absent, enc(Value::Uint(0)));
    }

    #[test]
    fn names_are_subject_safe() {
        let k = KeySpec::new(vec![
            KeyPart::Field(Field::Extra(58)),
            KeyPart::Field(Field::SrcAs),
            KeyPart::Unordered(Field::DstPort, Field::SrcPort),
        ])
        .unwrap();
        assert_eq!(k.name(), "src_as-ie58-u-srcport-dstport");
        assert!(k
            .name()
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-'));
        assert!(KeySpec::new(Vec::new()).is_none());
    }
}
