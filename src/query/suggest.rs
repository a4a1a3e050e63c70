//! "Did you mean" suggestions: nearest names by optimal-string-alignment
//! (Damerau–Levenshtein) distance, plus names that start or end with the
//! typo (`port` → `dstport`, `srcport`).

/// Edit distance counting insertions, deletions, substitutions and
/// transpositions of adjacent characters as one edit each.
pub fn distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

/// Up to three candidates close to `typo`, best first.
pub fn nearest<'a>(typo: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let len = typo.chars().count();
    let limit = (len / 3).max(1);
    let lower = typo.to_lowercase();
    let mut scored: Vec<(usize, usize, String)> = Vec::new();
    for (order, c) in candidates.into_iter().enumerate() {
        if c == typo || scored.iter().any(|(_, _, s)| s == c) {
            continue;
        }
        // `port` → `dstport`: a name that is the typo plus a prefix or suffix.
        let contains = lower.len() >= 3 && affix_of(&lower, c);
        // The distance is at least the length difference: most of the
        // hundreds of IANA names are ruled out without computing it.
        if !contains && c.chars().count().abs_diff(len) > limit {
            continue;
        }
        let d = distance(typo, c).min(distance(&lower, &c.to_lowercase()));
        if d <= limit || contains {
            scored.push((d, order, c.to_string()));
        }
    }
    scored.sort();
    scored.into_iter().take(3).map(|(_, _, s)| s).collect()
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
pub fn did_you_mean<'a>(
    typo: &str,
    candidates: impl IntoIterator<Item = &'a str>,
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
