//! Edits survive re-filling: when the incident changes and a template is filled again, the
//! lines the person edited are kept and the lines they did not touch take the new values.
//! A line-based three-way merge of the hunks base -> edited and base -> re-filled, found
//! with a longest common subsequence; conflicts are resolved in the person's favour.

use std::collections::HashMap;

/// A message being edited: the text as filled (`base`) and as the person has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// The filled template the person started from.
    pub base: String,
    /// The text in the editor.
    pub edited: String,
}

impl Draft {
    /// The draft after the template was filled again with `new_base`.
    pub fn refilled(&self, new_base: &str) -> Draft {
        Draft { edited: refill(self, new_base), base: new_base.to_string() }
    }
}

/// Merges the person's edits (`draft.base` -> `draft.edited`) with the re-filled template
/// (`draft.base` -> `new_base`). Unchanged lines take the new base; edited lines keep the
/// edit; where both changed the same lines differently, the person's edit wins.
pub fn refill(draft: &Draft, new_base: &str) -> String {
    if draft.edited == draft.base {
        return new_base.to_string();
    }
    if new_base == draft.base {
        return draft.edited.clone();
    }
    // `split` (not `lines`) keeps a trailing empty piece, so joining restores the text exactly.
    let base: Vec<&str> = draft.base.split('\n').collect();
    let edited: Vec<&str> = draft.edited.split('\n').collect();
    let new: Vec<&str> = new_base.split('\n').collect();
    merge3(&base, &edited, &new).join("\n")
}

/// One change to the base: base lines `start..end` replaced by `lines` (an insertion when
/// the range is empty).
#[derive(Debug, Clone)]
struct Hunk<'a> {
    start: usize,
    end: usize,
    lines: Vec<&'a str>,
    edited: bool,
}

/// Merges the hunks of base -> edited and base -> new. Hunks touching different base lines
/// both apply; overlapping ones form a conflict, resolved in the person's favour.
fn merge3<'a>(base: &[&'a str], edited: &[&'a str], new: &[&'a str]) -> Vec<&'a str> {
    let mut all = hunks(base, edited, true);
    all.extend(hunks(base, new, false));
    // By start, insertions before changes at the same point (they go before them).
    all.sort_by_key(|h| (h.start, h.end));
    let hunks = all;
    let mut out = Vec::with_capacity(edited.len().max(new.len()));
    let mut pos = 0;
    let mut i = 0;
    while i < hunks.len() {
        // The cluster of hunks that conflict with each other, transitively.
        let (cs, mut ce) = (hunks[i].start, hunks[i].end);
        let mut j = i + 1;
        while j < hunks.len() && conflicts(cs, ce, &hunks[j]) {
            ce = ce.max(hunks[j].end);
            j += 1;
        }
        out.extend_from_slice(&base[pos..cs]);
        resolve(&base[cs..ce], cs, &hunks[i..j], &mut out);
        pos = ce;
        i = j;
    }
    out.extend_from_slice(&base[pos..]);
    out
}

/// Whether hunk `h` (sorted after the cluster's first) conflicts with the cluster covering
/// base lines `cs..ce`.
fn conflicts(cs: usize, ce: usize, h: &Hunk<'_>) -> bool {
    match (cs == ce, h.start == h.end) {
        // Two insertions at the same point.
        (true, true) => h.start == cs,
        // A change after an insertion: sorted order puts the insertion first; no conflict.
        (true, false) => false,
        // An insertion strictly inside a changed range (at its edges it goes before/after).
        (false, true) => cs < h.start && h.start < ce,
        // Two changes sharing a base line.
        (false, false) => h.start < ce,
    }
}

/// Emits one cluster. A single hunk (or hunks of one side) apply as they are; where both
/// sides changed the same lines: identical results are taken once, two insertions are both
/// kept (the person's first), same-shaped changes are decided line by line, and anything
/// else keeps the person's version.
fn resolve<'a>(base: &[&'a str], offset: usize, cluster: &[Hunk<'a>], out: &mut Vec<&'a str>) {
    let apply = |side: bool| -> Vec<&'a str> {
        let mut v = Vec::new();
        let mut pos = 0;
        for h in cluster.iter().filter(|h| h.edited == side) {
            v.extend_from_slice(&base[pos..h.start - offset]);
            v.extend_from_slice(&h.lines);
            pos = h.end - offset;
        }
        v.extend_from_slice(&base[pos..]);
        v
    };
    let has_edit = cluster.iter().any(|h| h.edited);
    let has_new = cluster.iter().any(|h| !h.edited);
    let e = apply(true);
    match (has_edit, has_new) {
        (true, false) => out.extend(e),
        (false, _) => out.extend(apply(false)),
        (true, true) => {
            let n = apply(false);
            if e == n {
                out.extend(e);
            } else if base.is_empty() {
                out.extend(e);
                out.extend(n);
            } else if e.len() == base.len() && n.len() == base.len() {
                for ((b, e), n) in base.iter().zip(&e).zip(&n) {
                    out.push(if e == b { n } else { e });
                }
            } else {
                out.extend(e);
            }
        }
    }
}

/// The hunks turning `base` into `other`, from an LCS matching. A block of k lines replaced
/// by k lines is k one-line changes: that is what re-filling a template does to values, and
/// it lets an edit on one line leave its neighbours to the re-fill.
fn hunks<'a>(base: &[&'a str], other: &[&'a str], edited: bool) -> Vec<Hunk<'a>> {
    let m = matching(base, other);
    let mut pairs: Vec<(usize, usize)> = m.iter().enumerate().filter_map(|(i, j)| j.map(|j| (i, j))).collect();
    pairs.push((base.len(), other.len()));
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    for (bi, oj) in pairs {
        if bi - i == oj - j && bi > i {
            for k in 0..bi - i {
                out.push(Hunk { start: i + k, end: i + k + 1, lines: vec![other[j + k]], edited });
            }
        } else if bi > i || oj > j {
            out.push(Hunk { start: i, end: bi, lines: other[j..oj].to_vec(), edited });
        }
        (i, j) = (bi + 1, oj + 1);
    }
    out
}

/// For each line of `a`, the index of the line of `b` it is matched with in a longest
/// common subsequence.
fn matching<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Option<usize>> {
    // Lines become small integers so comparisons in the O(n·m) core are cheap.
    let mut ids: HashMap<&'a str, u32> = HashMap::new();
    let mut intern = |s: &'a str| -> u32 {
        let next = ids.len() as u32;
        *ids.entry(s).or_insert(next)
    };
    let ai: Vec<u32> = a.iter().map(|s| intern(s)).collect();
    let bi: Vec<u32> = b.iter().map(|s| intern(s)).collect();
    let mut out = vec![None; a.len()];
    // Common prefix and suffix are matched directly; they are most of a typical re-fill.
    let prefix = ai.iter().zip(&bi).take_while(|(x, y)| x == y).count();
    for (i, slot) in out.iter_mut().enumerate().take(prefix) {
        *slot = Some(i);
    }
    let suffix = ai[prefix..].iter().rev().zip(bi[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    for k in 0..suffix {
        out[a.len() - 1 - k] = Some(b.len() - 1 - k);
    }
    let mut pairs = Vec::new();
    hirschberg(&ai[prefix..a.len() - suffix], &bi[prefix..b.len() - suffix], prefix, prefix, &mut pairs);
    for (i, j) in pairs {
        out[i] = Some(j);
    }
    out
}

/// LCS in linear space (Hirschberg), so a long report cannot make the editor allocate
/// gigabytes. Pushes matched (a index, b index) pairs in increasing order.
fn hirschberg(a: &[u32], b: &[u32], a_off: usize, b_off: usize, out: &mut Vec<(usize, usize)>) {
    if a.is_empty() || b.is_empty() {
        return;
    }
    if a.len() == 1 {
        if let Some(j) = b.iter().position(|&x| x == a[0]) {
            out.push((a_off, b_off + j));
        }
        return;
    }
    let mid = a.len() / 2;
    let forward = lcs_row(a[..mid].iter(), b.iter(), b.len());
    let backward = lcs_row(a[mid..].iter().rev(), b.iter().rev(), b.len());
    // Split b where the two halves together keep the most common lines.
    let mut split = 0;
    let mut best = 0;
    for j in 0..=b.len() {
        let total = forward[j] + backward[b.len() - j];
        if total > best {
            best = total;
            split = j;
        }
    }
    if best == 0 {
        return;
    }
    hirschberg(&a[..mid], &b[..split], a_off, b_off, out);
    hirschberg(&a[mid..], &b[split..], a_off + mid, b_off + split, out);
}

/// The last row of the LCS table: entry j = LCS length of all of `a` and the first j of `b`.
fn lcs_row<'x>(a: impl Iterator<Item = &'x u32>, b: impl Iterator<Item = &'x u32> + Clone, m: usize) -> Vec<usize> {
    let mut prev = vec![0usize; m + 1];
    let mut cur = vec![0usize; m + 1];
    for x in a {
        for (j, y) in b.clone().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn draft(base: &str, edited: &str) -> Draft {
        Draft { base: base.to_string(), edited: edited.to_string() }
    }

    #[test]
    fn untouched_draft_takes_the_new_fill() {
        let d = draft("Time: 07:48\nImpact: x\n", "Time: 07:48\nImpact: x\n");
        assert_eq!(refill(&d, "Time: 08:03\nImpact: y\n"), "Time: 08:03\nImpact: y\n");
    }

    #[test]
    fn same_line_count_edited_lines_kept_others_refilled() {
        let d =
            draft("Time: 07:48\nImpact: [to fill]\nNext: 08:03", "Time: 07:48\nImpact: orders delayed\nNext: 08:03");
        assert_eq!(
            refill(&d, "Time: 08:05\nImpact: [to fill]\nNext: 08:20"),
            "Time: 08:05\nImpact: orders delayed\nNext: 08:20"
        );
    }

    #[test]
    fn alternating_changes_without_anchors_still_merge_per_line() {
        let d = draft("a\nb\nc", "a\nX\nc");
        assert_eq!(refill(&d, "A\nb\nC"), "A\nX\nC");
    }

    #[test]
    fn inserted_lines_survive_and_shifted_lines_refill() {
        let base = "Title\nTime: 07:48\nStatus: Investigating\nNext: 08:03\nTeam: Ann";
        let edited =
            "Title\nTime: 07:48\nA line the person added.\nAnother one.\nStatus: Investigating\nNext: 08:03\nTeam: Ann";
        let new = "Title\nTime: 08:10\nStatus: Recovering\nNext: 08:25\nTeam: Ann";
        assert_eq!(
            refill(&draft(base, edited), new),
            "Title\nTime: 08:10\nA line the person added.\nAnother one.\nStatus: Recovering\nNext: 08:25\nTeam: Ann"
        );
    }

    #[test]
    fn deleted_lines_stay_deleted() {
        let base = "Header\nRollbacks: 1\nMaintenance: on\nFooter";
        let edited = "Header\nRollbacks: 1\nFooter";
        let new = "Header\nRollbacks: 2\nMaintenance: on\nFooter";
        assert_eq!(refill(&draft(base, edited), new), "Header\nRollbacks: 2\nFooter");
    }

    #[test]
    fn new_lines_from_the_template_appear() {
        let base = "Team:\n- IC: Ann\nEnd";
        let edited = "Team (edited):\n- IC: Ann\nEnd";
        let new = "Team:\n- IC: Ann\n- DBA: Bob\nEnd";
        assert_eq!(refill(&draft(base, edited), new), "Team (edited):\n- IC: Ann\n- DBA: Bob\nEnd");
    }

    #[test]
    fn conflict_keeps_the_persons_edit() {
        let base = "x\nImpact: a\nb\ny";
        let edited = "x\nImpact: my words\ny";
        let new = "x\nImpact: c\nd\ne\ny";
        assert_eq!(refill(&draft(base, edited), new), "x\nImpact: my words\ny");
    }

    #[test]
    fn trailing_newline_is_preserved() {
        let d = draft("a\nb\n", "a\nB\n");
        assert_eq!(refill(&d, "A\nb\n"), "A\nB\n");
        assert_eq!(d.refilled("A\nb\n"), draft("A\nb\n", "A\nB\n"));
    }

    #[test]
    fn lcs_matching_is_a_longest_common_subsequence() {
        let a = ["a", "b", "c", "d", "e", "f"];
        let b = ["x", "b", "c", "y", "e", "z", "f"];
        let m = matching(&a, &b);
        assert_eq!(m, vec![None, Some(1), Some(2), None, Some(4), Some(6)]);
    }

    proptest! {
        #[test]
        fn identities(base in "[abc\n]{0,30}", other in "[abc\n]{0,30}") {
            // Nothing edited: the new fill. Nothing re-filled: the edit.
            prop_assert_eq!(refill(&draft(&base, &base), &other), other.clone());
            prop_assert_eq!(refill(&draft(&base, &other), &base), other.clone());
            // The merge itself, without the shortcuts, agrees.
            let (bl, ol): (Vec<&str>, Vec<&str>) = (base.split('\n').collect(), other.split('\n').collect());
            prop_assert_eq!(merge3(&bl, &bl, &ol), ol.clone());
            prop_assert_eq!(merge3(&bl, &ol, &bl), ol.clone());
        }

        #[test]
        fn matching_is_monotone_and_correct(a in proptest::collection::vec("[abc]", 0..25), b in proptest::collection::vec("[abc]", 0..25)) {
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let b: Vec<&str> = b.iter().map(String::as_str).collect();
            let m = matching(&a, &b);
            let pairs: Vec<(usize, usize)> = m.iter().enumerate().filter_map(|(i, j)| j.map(|j| (i, j))).collect();
            for w in pairs.windows(2) {
                prop_assert!(w[0].1 < w[1].1);
            }
            for &(i, j) in &pairs {
                prop_assert_eq!(a[i], b[j]);
            }
            // Its length equals the textbook DP answer.
            let mut dp = vec![vec![0usize; b.len() + 1]; a.len() + 1];
            for i in 0..a.len() {
                for j in 0..b.len() {
                    dp[i + 1][j + 1] = if a[i] == b[j] { dp[i][j] + 1 } else { dp[i][j + 1].max(dp[i + 1][j]) };
                }
            }
            prop_assert_eq!(pairs.len(), dp[a.len()][b.len()]);
        }
    }
}
