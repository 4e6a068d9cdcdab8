//! The first nodes, in rank order, whose free GPUs add up to a given total.

/// The lexicographically first (by rank) `m` of `pool` (rank order, values ≥ 1) whose
/// values add up to exactly `total`; `cnt` counts the pool by value.
pub(super) fn lex_first(pool: &[(usize, usize)], cnt: &[u32], m: u32, total: u64) -> Vec<usize> {
    let words = total as usize / 64 + 1;
    if pool
        .len()
        .saturating_mul(m as usize + 1)
        .saturating_mul(words)
        <= 1 << 20
    {
        lex_first_table(pool, m, total)
    } else {
        lex_first_probing(pool, cnt, m, total)
    }
}

/// `lex_first` from one table: bit s of `reach[p][j]` says whether j of `pool[p..]` add up
/// to s. O(pool · m · total / 64), for pools of a few domains.
pub(super) fn lex_first_table(pool: &[(usize, usize)], m: u32, total: u64) -> Vec<usize> {
    let (m, total) = (m as usize, total as usize);
    let words = total / 64 + 1;
    let row = (m + 1) * words;
    let mut reach = vec![0u64; (pool.len() + 1) * row];
    reach[pool.len() * row] = 1;
    for p in (0..pool.len()).rev() {
        let v = pool[p].1;
        let (here, later) = reach.split_at_mut((p + 1) * row);
        let here = &mut here[p * row..];
        here.copy_from_slice(&later[..row]);
        for j in 1..=m {
            let src = &later[(j - 1) * words..j * words];
            let dst = &mut here[j * words..(j + 1) * words];
            let (by, bits) = (v / 64, v % 64);
            for w in by..words {
                let mut x = src[w - by] << bits;
                if bits > 0 && w > by {
                    x |= src[w - by - 1] >> (64 - bits);
                }
                dst[w] |= x;
            }
        }
    }
    let has =
        |p: usize, j: usize, s: usize| reach[p * row + j * words + s / 64] >> (s % 64) & 1 == 1;
    let (mut j, mut s) = (m, total);
    let mut out = Vec::with_capacity(m);
    for (p, &(rank, v)) in pool.iter().enumerate() {
        if j == 0 {
            break;
        }
        if v <= s && has(p + 1, j - 1, s - v) {
            out.push(rank);
            j -= 1;
            s -= v;
        }
    }
    out
}

/// `lex_first` by asking, node by node, whether the rest can still be met: for pools too
/// large for the table.
pub(super) fn lex_first_probing(
    pool: &[(usize, usize)],
    cnt: &[u32],
    m: u32,
    total: u64,
) -> Vec<usize> {
    let mut suffix = cnt.to_vec();
    let (mut j, mut s) = (m, total);
    let mut dead = vec![false; cnt.len()];
    let mut out = Vec::with_capacity(m as usize);
    for &(rank, v) in pool {
        if j == 0 {
            break;
        }
        suffix[v] -= 1;
        // A later node of a value that failed here faces a smaller suffix: it fails too.
        if dead[v] || v as u64 > s {
            continue;
        }
        if crate::counts::exact(&suffix, j - 1, s - v as u64) {
            out.push(rank);
            j -= 1;
            s -= v as u64;
            dead.fill(false);
        } else {
            dead[v] = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Rng;

    /// Both ways of finding the first m nodes (in rank order) that add up to a total agree.
    #[test]
    fn lex_first_table_matches_probing() {
        let mut rng = Rng::new(5);
        for _ in 0..500 {
            // Now and then nodes of 64 GPUs and more: shifts past a whole word.
            let width = if rng.below(5) == 0 {
                60 + rng.below(40) as usize
            } else {
                2 + rng.below(8) as usize
            };
            let n = 1 + rng.below(20) as usize;
            let pool: Vec<(usize, usize)> = (0..n)
                .map(|r| (r, 1 + rng.below(width as u64 - 1) as usize))
                .collect();
            let mut cnt = vec![0u32; width];
            for &(_, v) in &pool {
                cnt[v] += 1;
            }
            let m = 1 + rng.below(n as u64) as u32;
            let total = m as u64 + rng.below(m as u64 * (width as u64 - 1));
            let a = lex_first_table(&pool, m, total);
            let b = lex_first_probing(&pool, &cnt, m, total);
            let ok = crate::counts::exact(&cnt, m, total);
            assert_eq!(a.len() == m as usize, ok, "{pool:?} m {m} total {total}");
            if ok {
                assert_eq!(a, b, "{pool:?} m {m} total {total}");
            }
        }
    }
}
