//! Tests of the Contract 2 search: each fast method against trying every choice.

use super::*;
use crate::random::Rng;

/// Every combination of `q` candidates, in rank order: the first with the best key. The
/// oracle that `spread_total` is tested against.
fn spread_enumerate(
    cand: &[(usize, Vec<u32>, u64)],
    need: Need,
    q: usize,
    width: usize,
) -> Vec<usize> {
    let mut search = Spread {
        cand,
        need,
        q,
        best: None,
        pick: Vec::new(),
        chosen: Vec::new(),
    };
    search.run(0, &vec![0u32; width], 0);
    search.pick
}

/// Enumeration of q-domain combinations in rank order (so ties keep the first).
struct Spread<'a> {
    cand: &'a [(usize, Vec<u32>, u64)],
    need: Need,
    q: usize,
    best: Option<(u32, u64, u64)>,
    pick: Vec<usize>,
    chosen: Vec<usize>,
}

impl Spread<'_> {
    fn run(&mut self, from: usize, cnt: &[u32], f: u64) {
        if self.chosen.len() == self.q {
            self.leaf(cnt, f);
            return;
        }
        let left = self.q - self.chosen.len();
        for i in from..=self.cand.len().saturating_sub(left) {
            let (_, c, fi) = &self.cand[i];
            let merged: Vec<u32> = cnt.iter().zip(c).map(|(a, b)| a + b).collect();
            self.chosen.push(i);
            self.run(i + 1, &merged, f + fi);
            self.chosen.pop();
        }
    }

    fn leaf(&mut self, cnt: &[u32], f: u64) {
        if self.need.cover(cnt) < self.need.amount() {
            return;
        }
        let (m, s) = match self.need {
            Need::Even { nodes, share } => (nodes, smallest_sum(cnt, share, nodes)),
            Need::Total(g) => {
                let Some(m) = fewest_nodes(cnt, g) else {
                    return;
                };
                if self.best.is_some_and(|b| (m, f) > (b.0, b.1)) {
                    return;
                }
                (m, min_total(cnt, m, g).unwrap_or(u64::MAX))
            }
        };
        let key = (m, f, s);
        if self.best.is_none_or(|b| key < b) {
            self.best = Some(key);
            self.pick = self.chosen.clone();
        }
    }
}

/// The dynamic programme against trying every combination, on small random sets of
/// domains (ties included: few distinct counts and free totals).
#[test]
fn even_spread_matches_every_combination() {
    let mut rng = Rng::new(11);
    for _ in 0..400 {
        let width = 2 + rng.below(4) as usize;
        let share = 1 + rng.below(width as u64 - 1) as usize;
        let count = 1 + rng.below(7) as usize;
        let cand: Vec<(usize, Vec<u32>, u64)> = (0..count)
            .map(|r| {
                let mut cnt = vec![0u32; width];
                for c in cnt.iter_mut().skip(share) {
                    *c = rng.below(3) as u32;
                }
                let f = crate::counts::capacity(&cnt) + rng.below(3);
                (r, cnt, f)
            })
            .collect();
        let cover: u64 = cand
            .iter()
            .map(|c| c.1.iter().map(|&x| u64::from(x)).sum::<u64>())
            .sum();
        if cover == 0 {
            continue;
        }
        let nodes = 1 + rng.below(cover) as u32;
        let need = Need::Even { nodes, share };
        // q: the fewest candidates that cover the nodes, largest first.
        let mut covers: Vec<u64> = cand.iter().map(|c| need.cover(&c.1)).collect();
        covers.sort_unstable_by(|a, b| b.cmp(a));
        let mut q = 0;
        let mut acc = 0;
        while acc < u64::from(nodes) {
            acc += covers[q];
            q += 1;
        }
        let dp = spread_even(&cand, q, nodes, share);
        let brute = spread_enumerate(&cand, need, q, width);
        assert_eq!(dp, brute, "{cand:?} nodes {nodes} share {share} q {q}");
    }
}

/// The dynamic programme for `gpus`-only jobs against trying every combination, on
/// small random sets of domains: few distinct counts and free totals, duplicated
/// domains and one-node domains, so that ties are frequent.
#[test]
fn total_spread_matches_every_combination() {
    let mut rng = Rng::new(23);
    let mut cases = 0;
    while cases < 600 {
        let width = 2 + rng.below(5) as usize;
        let count = 2 + rng.below(7) as usize;
        let mut cand: Vec<(usize, Vec<u32>, u64)> = Vec::new();
        for r in 0..count {
            if r > 0 && rng.below(4) == 0 {
                let mut twin = cand[rng.below(r as u64) as usize].clone();
                twin.0 = r;
                cand.push(twin);
                continue;
            }
            let mut cnt = vec![0u32; width];
            if rng.below(4) == 0 {
                cnt[1 + rng.below(width as u64 - 1) as usize] = 1;
            } else {
                // Up to 6 nodes of one count: several bundles of nodes per count.
                let most = if rng.below(2) == 0 { 3 } else { 7 };
                for c in cnt.iter_mut().skip(1) {
                    *c = rng.below(most) as u32;
                }
            }
            let f = crate::counts::capacity(&cnt) + rng.below(3);
            cand.push((r, cnt, f));
        }
        cand.retain(|c| crate::counts::capacity(&c.1) > 0);
        let total: u64 = cand.iter().map(|c| crate::counts::capacity(&c.1)).sum();
        if total == 0 {
            continue;
        }
        let g = 1 + rng.below(total);
        let mut caps: Vec<u64> = cand.iter().map(|c| crate::counts::capacity(&c.1)).collect();
        caps.sort_unstable_by(|a, b| b.cmp(a));
        let (mut q, mut acc) = (0, 0);
        while acc < g {
            acc += caps[q];
            q += 1;
        }
        let dp = spread_total(&cand, q, g, width).unwrap();
        let brute = spread_enumerate(&cand, Need::Total(g), q, width);
        assert_eq!(dp, brute, "{cand:?} gpus {g} q {q}");
        for bits in [64, 128] {
            let wide = super::super::spread::spread_total_in(&cand, q, g, width, bits);
            assert_eq!(wide.unwrap(), brute, "{bits}-bit keys");
        }
        cases += 1;
    }
}
