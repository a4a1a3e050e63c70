//! "Did you mean" suggestions: nearest names by optimal-string-alignment
//! (Damerau–Levenshtein) distance, plus names that start or end with the
//! typo (`port` → `dstport`, `srcport`).

use std::borrow::Cow;
use std::sync::LazyLock;

use crate::record::Field;

/// Edit distance counting insertions, deletions, substitutions and
/// transpositions of adjacent characters as one edit each.
pub fn distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

/// A name to suggest, with what [`nearest`] derives from it.
pub trait Candidate<'a> {
    fn name(&self) -> &'a str;
    fn chars(&self) -> usize;
    fn lower(&self) -> Cow<'a, str>;
}

impl<'a> Candidate<'a> for &'a str {
    fn name(&self) -> &'a str {
        self
    }

    fn chars(&self) -> usize {
        str::chars(self).count()
    }

    fn lower(&self) -> Cow<'a, str> {
        lowercase(self)
    }
}

/// A name of a fixed table, its length and lower case worked out once.
pub struct Prepared {
    name: &'static str,
    chars: usize,
    lower: Cow<'static, str>,
}

impl Prepared {
    pub fn new(name: &'static str) -> Prepared {
        Prepared {
            name,
            chars: name.chars().count(),
            lower: lowercase(name),
        }
    }
}

impl<'a> Candidate<'a> for &'a Prepared {
    fn name(&self) -> &'a str {
        self.name
    }

    fn chars(&self) -> usize {
        self.chars
    }

    fn lower(&self) -> Cow<'a, str> {
        Cow::Borrowed(&self.lower)
    }
}

/// Every name a query may use for a record field, prepared once: unknown
/// field names are the most common error in fuzzed (and typed) queries.
pub fn field_names() -> &'static [Prepared] {
    static NAMES: LazyLock<Vec<Prepared>> =
        LazyLock::new(|| Field::all_names().map(Prepared::new).collect());
    &NAMES
}

/// Up to three candidates close to `typo`, best first.
pub fn nearest<'a, C: Candidate<'a>>(
    typo: &str,
    candidates: impl IntoIterator<Item = C>,
) -> Vec<String> {
    let len = typo.chars().count();
    let limit = (len / 3).max(1);
    let lower = typo.to_lowercase();
    let (typo_bag, lower_bag) = (Bag::of(typo), Bag::of(&lower));
    let mut scored: Vec<(usize, usize, String)> = Vec::new();
    for (order, cand) in candidates.into_iter().enumerate() {
        let c = cand.name();
        if c == typo || scored.iter().any(|(_, _, s)| s == c) {
            continue;
        }
        // `port` → `dstport`: a name that is the typo plus a prefix or suffix.
        let contains = lower.len() >= 3 && affix_of(&lower, c);
        // The distance is at least the length difference: most of the
        // hundreds of IANA names are ruled out without computing it.
        if !contains && cand.chars().abs_diff(len) > limit {
            continue;
        }
        let c_lower = cand.lower();
        // And at least the characters one has and the other lacks: this
        // rules out most of the rest, at a fraction of the cost.
        let same_case = lower == typo && c_lower == c;
        if !contains
            && typo_bag.distance(c) > limit
            && (same_case || lower_bag.distance(&c_lower) > limit)
        {
            continue;
        }
        let exact = distance(typo, c);
        let d = if same_case {
            exact
        } else {
            exact.min(distance(&lower, &c_lower))
        };
        if d <= limit || contains {
            scored.push((d, order, c.to_string()));
        }
    }
    scored.sort();
    scored.into_iter().take(3).map(|(_, _, s)| s).collect()
}

/// `s.to_lowercase()`, without allocating when it changes nothing.
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| !b.is_ascii() || b.is_ascii_uppercase()) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Character counts of a word, characters folded into 128 classes.
/// `max(|A − B|, |B − A|)` of two such multisets is at most their edit
/// distance: an insertion or deletion changes one side by one, a
/// substitution each side by at most one, a transposition neither, and
/// folding classes together only shrinks the differences.
struct Bag {
    counts: [u32; 128],
    total: usize,
}

impl Bag {
    fn of(word: &str) -> Bag {
        let mut counts = [0u32; 128];
        let mut total = 0;
        for c in word.chars() {
            counts[class(c)] += 1;
            total += 1;
        }
        Bag { counts, total }
    }

    /// The multiset difference bound between this bag and `other`.
    fn distance(&self, other: &str) -> usize {
        let mut counts = self.counts;
        let (mut matched, mut extra) = (0usize, 0usize);
        for c in other.chars() {
            let slot = &mut counts[class(c)];
            match slot.checked_sub(1) {
                Some(n) => {
                    *slot = n;
                    matched += 1;
                }
                None => extra += 1,
            }
        }
        extra.max(self.total - matched)
    }
}

fn class(c: char) -> usize {
    (u32::from(c) & 127) as usize
}

/// True when `name` starts or ends with `lower` (ASCII case ignored).
fn affix_of(lower: &str, name: &str) -> bool {
    let n = lower.len();
    let head = name.get(..n).is_some_and(|h| h.eq_ignore_ascii_case(lower));
    let tail = name
        .len()
        .checked_sub(n)
        .and_then(|at| name.get(at..))
        .is_some_and(|t| t.eq_ignore_ascii_case(lower));
    head || tail
}

/// `did you mean 'a'?`, `did you mean 'a' or 'b'?`, or `None`.
pub fn did_you_mean<'a, C: Candidate<'a>>(
    typo: &str,
    candidates: impl IntoIterator<Item = C>,
) -> Option<String> {
    let found = nearest(typo, candidates);
    let quoted: Vec<String> = found.iter().map(|s| format!("'{s}'")).collect();
    match quoted.as_slice() {
        [] => None,
        [one] => Some(format!("did you mean {one}?")),
        [init @ .., last] => Some(format!("did you mean {} or {last}?", init.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposition_is_one_edit() {
        assert_eq!(distance("scrip", "srcip"), 1);
        assert_eq!(distance("port", "prot"), 1);
        assert_eq!(distance("pckt-sum", "pkt-sum"), 1);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn suggestions() {
        let names = ["srcip", "dstip", "srcport", "dstport", "prot"];
        assert_eq!(
            did_you_mean("scrip", names).as_deref(),
            Some("did you mean 'srcip'?")
        );
        assert_eq!(
            did_you_mean("port", names).as_deref(),
            Some("did you mean 'prot', 'srcport' or 'dstport'?")
        );
        assert_eq!(did_you_mean("zzzzzz", names), None);
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The prefilter may only skip what the distance would reject.
        #[test]
        fn bag_distance_is_a_lower_bound(a in "[a-dA-D\u{e9}\u{169}_-]{0,12}", b in "[a-dA-D\u{e9}\u{169}_-]{0,12}") {
            prop_assert!(Bag::of(&a).distance(&b) <= distance(&a, &b));
        }
    }

    #[test]
    fn lowercase_borrows_only_when_nothing_changes() {
        assert!(matches!(lowercase("srcip"), Cow::Borrowed("srcip")));
        assert_eq!(lowercase("dOctets"), "doctets");
        assert_eq!(lowercase("\u{c9}t\u{e9}"), "\u{e9}t\u{e9}");
    }
}
