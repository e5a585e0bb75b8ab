//! Redis glob-style matching (the `MATCH` of `SCAN`) for the in-process store:
//! `*`, `?`, `[abc]`, `[^a-z]` and `\` escapes, over bytes.

/// Whether `s` matches the Redis glob pattern `p`. Linear backtracking
/// (only to the last `*`), so no pattern can make it exponential: at most
/// `(p.len() + 1) × (s.len() + 1)` steps.
pub(crate) fn matches(p: &[u8], s: &[u8]) -> bool {
    matches_counting(p, s).0
}

/// [`matches`], and the steps it took.
fn matches_counting(p: &[u8], s: &[u8]) -> (bool, usize) {
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    let mut steps = 0usize;
    while si < s.len() {
        steps += 1;
        if p.get(pi) == Some(&b'*') {
            while p.get(pi) == Some(&b'*') {
                pi += 1;
            }
            star = Some((pi, si));
            continue;
        }
        if pi < p.len() {
            let (ok, len) = one(p, pi, s[si]);
            if ok {
                pi += len;
                si += 1;
                continue;
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return (false, steps),
        }
    }
    while p.get(pi) == Some(&b'*') {
        pi += 1;
    }
    (pi == p.len(), steps)
}

/// Whether the single-character pattern item at `p[pi..]` matches `c`, and its length.
fn one(p: &[u8], pi: usize, c: u8) -> (bool, usize) {
    match p[pi] {
        b'?' => (true, 1),
        b'\\' if pi + 1 < p.len() => (p[pi + 1] == c, 2),
        b'[' => class(p, pi, c),
        lit => (lit == c, 1),
    }
}

fn class(p: &[u8], start: usize, c: u8) -> (bool, usize) {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    while i < p.len() && p[i] != b']' {
        if p[i] == b'\\' && i + 1 < p.len() {
            hit |= p[i + 1] == c;
            i += 2;
        } else if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            let (lo, hi) = if p[i] <= p[i + 2] {
                (p[i], p[i + 2])
            } else {
                (p[i + 2], p[i])
            };
            hit |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            hit |= p[i] == c;
            i += 1;
        }
    }
    // An unclosed class runs to the end of the pattern, as in Redis.
    let len = if i < p.len() {
        i + 1 - start
    } else {
        i - start
    };
    (hit != negate, len)
}

#[cfg(test)]
mod tests {
    use super::{matches, matches_counting};

    #[test]
    fn redis_glob_semantics() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("user:*", "user:42", true),
            ("user:*", "users:42", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("h[ae]llo", "hello", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("*a*b*c*", "xxaxxbxxcxx", true),
            ("*a*b*c*", "xxaxxcxxbxx", false),
            ("p:{s%2A*}*", "p:{s%2Afoo}", true),
            ("p:{s%2A*}*", "p:{sfoo}", false),
        ];
        for (p, s, want) in cases {
            assert_eq!(matches(p.as_bytes(), s.as_bytes()), *want, "{p:?} ~ {s:?}");
        }
    }

    #[test]
    fn many_stars_take_at_most_pattern_times_subject_steps() {
        // A backtracking matcher that retries every star takes exponential
        // time here (C(30, 6) ≈ 600 000 ways for the small case).
        for (stars, len) in [(6, 30), (50, 5000)] {
            let p = "*a".repeat(stars) + "b";
            let s = "a".repeat(len);
            let (hit, steps) = matches_counting(p.as_bytes(), s.as_bytes());
            assert!(!hit);
            let bound = (p.len() + 1) * (s.len() + 1);
            assert!(
                steps <= bound,
                "{steps} steps for {stars} stars and {len} bytes"
            );
        }
    }
}
