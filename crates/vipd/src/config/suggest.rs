//! "Did you mean ...?" for misspelled keys and keywords.

/// The candidate closest to `given` (ignoring ASCII case), if it is close enough to be a
/// likely typo. Ties go to the earlier candidate.
pub(crate) fn closest<'c>(given: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let given = given.to_ascii_lowercase();
    candidates
        .iter()
        .map(|&c| (edit_distance(&given, c), c))
        .filter(|&(d, c)| d <= (c.chars().count() / 2).clamp(1, 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `(expected one of a, b, c)` or `(expected one of a, b, c; did you mean X?)`, where
/// `did_you_mean` is already quoted as the caller wants.
pub(crate) fn expected(candidates: &[&str], did_you_mean: Option<String>) -> String {
    let list = candidates.join(", ");
    match did_you_mean {
        Some(s) => format!("(expected one of {list}; did you mean {s}?)"),
        None => format!("(expected one of {list})"),
    }
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let replace = prev[j] + usize::from(ca != cb);
            cur[j + 1] = replace.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("wrrr", "wrr"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_only_close_candidates() {
        let schedulers = ["rr", "wrr", "lc", "wlc", "sh", "mh"];
        assert_eq!(closest("wrrr", &schedulers), Some("wrr"));
        assert_eq!(closest("WRR", &schedulers), Some("wrr"));
        assert_eq!(closest("maglev", &schedulers), None);
        assert_eq!(
            closest("schedular", &["name", "scheduler", "vip"]),
            Some("scheduler")
        );
        assert_eq!(closest("zzzz", &["name", "vip"]), None);
    }

    #[test]
    fn expected_lists_and_suggests() {
        assert_eq!(expected(&["a", "b"], None), "(expected one of a, b)");
        assert_eq!(
            expected(&["a", "b"], Some("\"a\"".into())),
            "(expected one of a, b; did you mean \"a\"?)"
        );
    }
}
