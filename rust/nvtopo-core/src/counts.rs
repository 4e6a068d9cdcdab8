//! Arithmetic on "how many nodes have v free GPUs" vectors (`cnt[v]`), the per-clique
//! aggregates that let Contract 2 reason about a rack without visiting its nodes.
//!
//! Sums are small (free GPUs per node ≤ 128, nodes per request modest), so the subset-sum
//! questions below are answered with bit-set dynamic programming: O(V · m² · S/64) for V
//! distinct values, m nodes and sums up to S.

/// Fewest nodes whose free GPUs add up to `need`, taking the fullest first; None if even
/// all of them fall short.
pub fn fewest_nodes(cnt: &[u32], need: u64) -> Option<u32> {
    let mut got = 0u64;
    let mut m = 0u32;
    for v in (1..cnt.len()).rev() {
        for _ in 0..cnt[v] {
            if got >= need {
                return Some(m);
            }
            got += v as u64;
            m += 1;
        }
    }
    (got >= need).then_some(m)
}

/// Σ v · `cnt[v]`.
pub fn capacity(cnt: &[u32]) -> u64 {
    cnt.iter()
        .enumerate()
        .map(|(v, &c)| v as u64 * u64::from(c))
        .sum()
}

/// Bit set of sums: bit s set when some choice reaches s.
#[derive(Clone)]
struct Sums(Vec<u64>);

impl Sums {
    fn new(max: usize) -> Sums {
        Sums(vec![0; max / 64 + 1])
    }

    fn get(&self, s: usize) -> bool {
        self.0.get(s / 64).is_some_and(|w| w >> (s % 64) & 1 == 1)
    }

    /// self |= other << by (bits past the end dropped).
    fn or_shifted(&mut self, other: &Sums, by: usize) {
        let (words, bits) = (by / 64, by % 64);
        let len = self.0.len();
        for i in (words..len).rev() {
            let src = i - words;
            let mut w = other.0[src] << bits;
            if bits > 0 && src > 0 {
                w |= other.0[src - 1] >> (64 - bits);
            }
            self.0[i] |= w;
        }
    }
}

/// `reach[j]`: the sums reachable with exactly j nodes (values ≥ 1), up to `max`.
///
/// The `c` nodes of one value are taken in bundles of 1, 2, 4, ... nodes (the last one
/// what is left), whose subsets add up to every count from 0 to `c` and to no other:
/// O(log c) passes per value instead of `c`.
fn reachable(cnt: &[u32], m: usize, max: usize) -> Vec<Sums> {
    let mut reach = vec![Sums::new(max); m + 1];
    reach[0].0[0] = 1;
    for (v, &c) in cnt.iter().enumerate().skip(1) {
        let mut left = (c as usize).min(m);
        let mut bundle = 1;
        while left > 0 {
            let b = bundle.min(left);
            left -= b;
            bundle *= 2;
            for j in (b..=m).rev() {
                let (lo, hi) = reach.split_at_mut(j);
                hi[0].or_shifted(&lo[j - b], b * v);
            }
        }
    }
    reach
}

/// The fullest value held, and the nodes below it by shortfall: `short[d]` nodes have
/// `top - d` free. None when no node has a free GPU.
///
/// Exactly m nodes add up to `total` iff some k of the nodes below `top` fall short of it
/// by `m · top - total` together and the other m - k are nodes of `top`. Large jobs take
/// mostly the fullest nodes, so the shortfall, and the table over it, is small.
fn shortfalls(cnt: &[u32]) -> Option<(u64, Vec<u32>)> {
    let top = (1..cnt.len()).rev().find(|&v| cnt[v] > 0)?;
    let short = (0..top)
        .map(|d| if d == 0 { 0 } else { cnt[top - d] })
        .collect();
    Some((top as u64, short))
}

/// Whether exactly `m` nodes (`k` of them below the fullest value, `full` of it held) fall
/// short by `d` for some allowed k, from the table `reach` over shortfalls.
fn short_by(reach: &[Sums], m: u64, full: u64, d: u64) -> bool {
    let lo = m.saturating_sub(full);
    let hi = m.min(d).min(reach.len() as u64 - 1);
    (lo..=hi).any(|k| reach[k as usize].get(d as usize))
}

/// The smallest total of exactly `m` nodes that reaches `need` (best fit), if any, looked
/// for up to `need` plus the widest value.
pub fn min_total(cnt: &[u32], m: u32, need: u64) -> Option<u64> {
    if m == 0 {
        return (need == 0).then_some(0);
    }
    let vmax = cnt.len().saturating_sub(1) as u64;
    let (top, short) = shortfalls(cnt)?;
    let most = u64::from(m) * top;
    let hi = most.checked_sub(need)?;
    let lo = most.saturating_sub(need + vmax);
    let reach = reachable(&short, (m as u64).min(hi) as usize, hi as usize);
    let full = u64::from(cnt[top as usize]);
    (lo..=hi)
        .rev()
        .find(|&d| short_by(&reach, u64::from(m), full, d))
        .map(|d| most - d)
}

/// Whether exactly `m` nodes of `cnt` add up to exactly `total`.
pub fn exact(cnt: &[u32], m: u32, total: u64) -> bool {
    if m == 0 {
        return total == 0;
    }
    let Some((top, short)) = shortfalls(cnt) else {
        return false;
    };
    let Some(d) = (u64::from(m) * top).checked_sub(total) else {
        return false;
    };
    let reach = reachable(&short, (m as u64).min(d) as usize, d as usize);
    short_by(&reach, u64::from(m), u64::from(cnt[top as usize]), d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewest_nodes_takes_fullest_first() {
        // two nodes with 4 free, one with 3, one with 1
        let cnt = [0, 1, 0, 1, 2];
        assert_eq!(fewest_nodes(&cnt, 8), Some(2));
        assert_eq!(fewest_nodes(&cnt, 9), Some(3));
        assert_eq!(fewest_nodes(&cnt, 12), Some(4));
        assert_eq!(fewest_nodes(&cnt, 13), None);
        assert_eq!(fewest_nodes(&cnt, 0), Some(0));
        assert_eq!(capacity(&cnt), 12);
    }

    #[test]
    fn min_total_is_best_fit() {
        let cnt = [0, 1, 0, 1, 2];
        // 7 GPUs on 2 nodes: 4 + 3 = 7 beats 4 + 4 = 8
        assert_eq!(min_total(&cnt, 2, 7), Some(7));
        assert_eq!(min_total(&cnt, 2, 8), Some(8));
        assert_eq!(min_total(&cnt, 3, 9), Some(9));
        assert_eq!(min_total(&cnt, 2, 9), None);
        // {1, 4} twice: two nodes reach 5 or 8 but never 6
        assert_eq!(min_total(&[0, 2, 0, 0, 2], 2, 6), Some(8));
    }

    #[test]
    fn exact_sums() {
        let cnt = [0, 1, 0, 1, 2];
        assert!(exact(&cnt, 2, 5));
        assert!(!exact(&cnt, 2, 6));
        assert!(exact(&cnt, 0, 0));
        assert!(exact(&cnt, 4, 12));
    }

    /// A count vector: mostly narrow (up to 7 values), now and then wide and sparse (values
    /// past a word), up to `most` - 1 nodes of a value.
    fn random_counts(rng: &mut crate::random::Rng, most: u64) -> Vec<u32> {
        if rng.below(5) == 0 {
            let mut cnt = vec![0u32; 2 + rng.below(90) as usize];
            for _ in 0..1 + rng.below(3) {
                let v = 1 + rng.below(cnt.len() as u64 - 1) as usize;
                cnt[v] = rng.below(6) as u32;
            }
            return cnt;
        }
        let mut cnt = vec![0u32; 1 + rng.below(7) as usize];
        for c in cnt.iter_mut().skip(1) {
            let many = rng.below(2) == 0;
            *c = rng.below(if many { most } else { 3 }) as u32;
        }
        cnt
    }

    /// The sums of exactly j nodes, adding one node at a time: what the bundles must match.
    fn reachable_by_node(cnt: &[u32], m: usize, max: usize) -> Vec<Vec<bool>> {
        let mut reach = vec![vec![false; max + 1]; m + 1];
        reach[0][0] = true;
        for (v, &c) in cnt.iter().enumerate().skip(1) {
            for _ in 0..c {
                for j in (1..=m).rev() {
                    for s in (v..=max).rev() {
                        if reach[j - 1][s - v] {
                            reach[j][s] = true;
                        }
                    }
                }
            }
        }
        reach
    }

    /// Bundles of nodes reach the same sums as nodes one at a time, for every count of
    /// nodes, across word boundaries and with more nodes of a value than `m`.
    #[test]
    fn bundles_reach_the_same_sums() {
        let mut rng = crate::random::Rng::new(3);
        for _ in 0..300 {
            let cnt = random_counts(&mut rng, 20);
            let nodes: u64 = cnt.iter().map(|&c| u64::from(c)).sum();
            let m = rng.below(nodes + 2) as usize;
            let max = rng.below(capacity(&cnt) + 70) as usize;
            let want = reachable_by_node(&cnt, m, max);
            let got = reachable(&cnt, m, max);
            for (j, row) in want.iter().enumerate() {
                for (s, &w) in row.iter().enumerate() {
                    assert_eq!(got[j].get(s), w, "{cnt:?} m {m} j {j} s {s}");
                }
            }
        }
    }

    /// `min_total` and `exact` over the sums themselves: what the shortfall tables must match.
    fn min_total_by_sums(cnt: &[u32], m: u32, need: u64) -> Option<u64> {
        let max = need as usize + cnt.len().saturating_sub(1);
        let reach = reachable(cnt, m as usize, max);
        (need as usize..=max)
            .find(|&s| reach[m as usize].get(s))
            .map(|s| s as u64)
    }

    fn exact_by_sums(cnt: &[u32], m: u32, total: u64) -> bool {
        reachable(cnt, m as usize, total as usize)[m as usize].get(total as usize)
    }

    /// Shortfalls below the fullest value answer as sums do: every m, need and total,
    /// empty and one-value vectors, values past a word.
    #[test]
    fn shortfalls_answer_as_sums() {
        let mut rng = crate::random::Rng::new(17);
        for _ in 0..2000 {
            let cnt = random_counts(&mut rng, 30);
            let nodes: u64 = cnt.iter().map(|&c| u64::from(c)).sum();
            let m = rng.below(nodes + 2) as u32;
            let need = rng.below(capacity(&cnt) + 8);
            let total = rng.below(capacity(&cnt) + 8);
            assert_eq!(
                min_total(&cnt, m, need),
                min_total_by_sums(&cnt, m, need),
                "{cnt:?} m {m} need {need}"
            );
            assert_eq!(
                exact(&cnt, m, total),
                exact_by_sums(&cnt, m, total),
                "{cnt:?} m {m} total {total}"
            );
        }
    }

    #[test]
    fn wide_sums_cross_words() {
        let mut cnt = vec![0u32; 100];
        cnt[99] = 3;
        cnt[1] = 1;
        assert_eq!(min_total(&cnt, 2, 150), Some(198));
        assert!(exact(&cnt, 3, 199));
    }
}
