//! "Did you mean" suggestions: nearest names by optimal-string-alignment
//! (Damerau–Levenshtein) distance, plus names that start or end with the
//! typo (`port` → `dstport`, `srcport`).

/// Edit distance counting insertions, deletions, substitutions and
/// transpositions of adjacent characters as one edit each.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// Up to three candidates close to `typo`, best first.
pub fn nearest<'a>(typo: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let limit = (typo.chars().count() / 3).max(1);
    let lower = typo.to_lowercase();
    let mut scored: Vec<(usize, usize, String)> = Vec::new();
    for (order, c) in candidates.into_iter().enumerate() {
        if c == typo || scored.iter().any(|(_, _, s)| s == c) {
            continue;
        }
        let d = distance(typo, c).min(distance(&lower, &c.to_lowercase()));
        let lc = c.to_lowercase();
        // `port` → `dstport`: a name that is the typo plus a prefix or suffix.
        let contains = lower.len() >= 3 && (lc.ends_with(&lower) || lc.starts_with(&lower));
        if d <= limit || contains {
            scored.push((d, order, c.to_string()));
        }
    }
    scored.sort();
    scored.into_iter().take(3).map(|(_, _, s)| s).collect()
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
