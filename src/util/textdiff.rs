//! A short unified diff of two texts, for showing what an edit did to a rendered file.
//!
//! Lines common to both ends are trimmed first (an edit usually touches one region),
//! then the middle is aligned by a longest common subsequence. Only the first hunks are
//! shown, up to a line budget: the diff explains a change, it is not a patch.

/// `@@ -a,b +c,d @@` hunks with `context` lines around each change, at most
/// `max_lines` lines in all (then `… N more changed lines`); empty when equal.
pub fn unified(old: &str, new: &str, context: usize, max_lines: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = align(&a, &b);
    let mut out = Vec::new();
    let mut shown_changes = 0;
    let total_changes = ops.iter().filter(|op| !matches!(op, Op::Same(..))).count();
    let mut i = 0;
    while i < ops.len() {
        if matches!(ops[i], Op::Same(..)) {
            i += 1;
            continue;
        }
        // A hunk: from `context` lines before this change to `context` lines after the
        // last change that is within 2 * context of the previous one.
        let start = i.saturating_sub(context);
        let mut end = i;
        let mut j = i;
        while j < ops.len() {
            if !matches!(ops[j], Op::Same(..)) {
                end = j;
                j += 1;
            } else if j - end <= 2 * context {
                j += 1;
            } else {
                break;
            }
        }
        let stop = (end + 1 + context).min(ops.len());
        let (oa, ob) = position(&ops[..start]);
        let (la, lb) = position(&ops[start..stop]);
        if out.len() + 1 >= max_lines {
            break;
        }
        out.push(format!("@@ -{},{la} +{},{lb} @@", oa + 1, ob + 1));
        for op in &ops[start..stop] {
            if out.len() >= max_lines {
                break;
            }
            out.push(match op {
                Op::Same(l) => format!(" {l}"),
                Op::Del(l) => format!("-{l}"),
                Op::Add(l) => format!("+{l}"),
            });
            if !matches!(op, Op::Same(..)) {
                shown_changes += 1;
            }
        }
        i = stop;
    }
    if shown_changes < total_changes {
        out.push(format!("… {} more changed line(s)", total_changes - shown_changes));
    }
    if out.is_empty() { String::new() } else { out.join("\n") + "\n" }
}

#[derive(Debug, PartialEq)]
enum Op<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

/// Lines of the old and the new text a run of operations covers.
fn position(ops: &[Op]) -> (usize, usize) {
    ops.iter().fold((0, 0), |(a, b), op| match op {
        Op::Same(_) => (a + 1, b + 1),
        Op::Del(_) => (a + 1, b),
        Op::Add(_) => (a, b + 1),
    })
}

/// Above this many cells the middle is shown as all removed then all added.
const MAX_CELLS: usize = 4_000_000;

fn align<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<Op> = a[..prefix].iter().map(|l| Op::Same(l)).collect();
    if ma.len() * mb.len() > MAX_CELLS {
        ops.extend(ma.iter().map(|l| Op::Del(l)));
        ops.extend(mb.iter().map(|l| Op::Add(l)));
    } else {
        // lcs[i][j]: the longest common subsequence of ma[i..] and mb[j..].
        let w = mb.len() + 1;
        let mut lcs = vec![0u32; (ma.len() + 1) * w];
        for i in (0..ma.len()).rev() {
            for j in (0..mb.len()).rev() {
                lcs[i * w + j] = if ma[i] == mb[j] { lcs[(i + 1) * w + j + 1] + 1 } else { lcs[(i + 1) * w + j].max(lcs[i * w + j + 1]) };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < ma.len() || j < mb.len() {
            if i < ma.len() && j < mb.len() && ma[i] == mb[j] {
                ops.push(Op::Same(ma[i]));
                i += 1;
                j += 1;
            } else if i < ma.len() && (j == mb.len() || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
                ops.push(Op::Del(ma[i]));
                i += 1;
            } else {
                ops.push(Op::Add(mb[j]));
                j += 1;
            }
        }
    }
    ops.extend(a[a.len() - suffix..].iter().map(|l| Op::Same(l)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_changed_line_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\n";
        let new = "a\nb\nc\nD\ne\nf\ng\n";
        assert_eq!(unified(old, new, 2, 20), "@@ -2,5 +2,5 @@\n b\n c\n-d\n+D\n e\n f\n");
        assert_eq!(unified(old, old, 2, 20), "");
    }

    #[test]
    fn insertions_deletions_and_separate_hunks() {
        let old: String = (1..=30).map(|i| format!("{i}\n")).collect();
        let new = old.replacen("\n3\n", "\n3\nthree\n", 1).replace("\n27\n", "\n");
        let d = unified(&old, &new, 1, 40);
        assert_eq!(d, "@@ -3,2 +3,3 @@\n 3\n+three\n 4\n@@ -26,3 +27,2 @@\n 26\n-27\n 28\n");
    }

    #[test]
    fn long_diffs_are_cut_and_say_how_much_is_left() {
        let old: String = (0..100).map(|i| format!("{i}\n")).collect();
        let new: String = (0..100).map(|i| format!("x{i}\n")).collect();
        let d = unified(&old, &new, 2, 10);
        assert_eq!(d.lines().count(), 11, "{d}");
        assert!(d.ends_with("… 191 more changed line(s)\n"), "{d}");
    }
}
