//! The core's compact node topology: pair scores, path labels and NUMA keys by GPU
//! position, plus the threshold graphs that the Contract 1 search walks.

use crate::bitset::{self, Mask, MAX_GPUS};
use crate::error::{Error, Result};
use crate::score::{PairPath, PathClass, MAX_NVLINKS};

/// Nodes up to this many GPUs keep their pairs sorted (see [`Topology::weakest_first`]).
pub const SMALL_NODE: usize = 24;

/// One recorded GPU pair, by position (`a != b`). Unrecorded pairs are `SYS` without NVLink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairSpec {
    /// Position of one GPU.
    pub a: usize,
    /// Position of the other GPU.
    pub b: usize,
    /// Working NVLinks between them.
    pub nvlinks: u32,
    /// PCIe path class.
    pub class: PathClass,
}

/// One node's GPUs as the search needs them. Build once per node, share freely.
///
/// Construction is O(n² · d) for n GPUs and d distinct pair scores (d ≤ n²/2, a handful on
/// real machines); every later query reads precomputed rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    ids: Vec<i64>,
    generations: Vec<u8>,
    scores: Vec<u32>,
    paths: Vec<PairPath>,
    numa: Vec<usize>,
    key_gpus: Vec<Mask>,
    max_key_size: u32,
    partners: Vec<u8>,
    thresholds: Vec<u32>,
    adj: Vec<Mask>,
    others: Vec<Mask>,
    mates: Vec<Mask>,
    weakest_first: Vec<(u32, u8, u8)>,
}

impl Topology {
    /// Build a topology.
    ///
    /// `ids` are the GPU ids (NVML indices), strictly ascending; `generations` the NVLink
    /// generation of each GPU (0 = unknown); `pairs` the recorded pairs by position;
    /// `numa_keys` an id of each GPU's NUMA key (equal ids = same key).
    pub fn new(
        ids: Vec<i64>,
        generations: &[u8],
        pairs: &[PairSpec],
        numa_keys: &[u32],
    ) -> Result<Topology> {
        let n = ids.len();
        if n == 0 {
            return Err(Error::Topology("a node needs at least one GPU".into()));
        }
        if n > MAX_GPUS {
            return Err(Error::Topology(format!(
                "a node has at most {MAX_GPUS} GPUs in the core, got {n}"
            )));
        }
        if ids.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Topology(
                "GPU ids must be unique and ascending".into(),
            ));
        }
        if generations.len() != n || numa_keys.len() != n {
            return Err(Error::Topology(format!(
                "{n} GPUs but {} NVLink generations and {} NUMA keys",
                generations.len(),
                numa_keys.len()
            )));
        }
        let mut paths = vec![PairPath::DEFAULT; n * n];
        for p in pairs {
            if p.a >= n || p.b >= n || p.a == p.b {
                return Err(Error::Topology(format!(
                    "pair ({}, {}) does not name two GPU positions of a {n}-GPU node",
                    p.a, p.b
                )));
            }
            if p.nvlinks > MAX_NVLINKS {
                return Err(Error::Topology(format!(
                    "pair ({}, {}) has {} NVLinks; a pair has at most {MAX_NVLINKS}",
                    p.a, p.b, p.nvlinks
                )));
            }
            let path = PairPath {
                nvlinks: p.nvlinks,
                class: p.class,
            };
            paths[p.a * n + p.b] = path;
            paths[p.b * n + p.a] = path;
        }
        let mut scores = vec![0u32; n * n];
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    // The pair's generation: the lower GPU's, else the higher one's (as
                    // `NodeTopology.pair_bandwidth(a, b)` reads it for a < b), so the
                    // score is symmetric.
                    let (lo, hi) = (a.min(b), a.max(b));
                    let gen = if generations[lo] != 0 {
                        generations[lo]
                    } else {
                        generations[hi]
                    };
                    scores[a * n + b] = paths[a * n + b].score(gen);
                }
            }
        }
        // NUMA keys renumbered densely so that a key set fits a mask.
        let mut key_ids: Vec<u32> = Vec::new();
        let mut numa = Vec::with_capacity(n);
        for &k in numa_keys {
            let pos = match key_ids.iter().position(|&x| x == k) {
                Some(p) => p,
                None => {
                    key_ids.push(k);
                    key_ids.len() - 1
                }
            };
            numa.push(pos);
        }
        let mut key_gpus = vec![0 as Mask; key_ids.len()];
        for (p, &k) in numa.iter().enumerate() {
            key_gpus[k] |= 1 << p;
        }
        let max_key_size = key_gpus.iter().map(|m| bitset::len(*m)).max().unwrap_or(1);
        let mut thresholds: Vec<u32> = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                thresholds.push(scores[a * n + b]);
            }
        }
        thresholds.sort_unstable_by(|x, y| y.cmp(x));
        thresholds.dedup();
        // Small nodes keep their pairs weakest first, for the by-rule answers that look for
        // the weakest pair a set leaves.
        let mut weakest_first = Vec::new();
        if n <= SMALL_NODE {
            for a in 0..n {
                for b in a + 1..n {
                    weakest_first.push((scores[a * n + b], a as u8, b as u8));
                }
            }
            weakest_first.sort_unstable();
        }
        let mut adj = vec![0 as Mask; thresholds.len() * n];
        for (ti, &t) in thresholds.iter().enumerate() {
            for a in 0..n {
                let mut row: Mask = 0;
                for b in 0..n {
                    if a != b && scores[a * n + b] >= t {
                        row |= 1 << b;
                    }
                }
                adj[ti * n + a] = row;
            }
        }
        // partners[v·n ..]: the other positions, highest score with v first, so that the
        // best partners of v inside any candidate set are found by one ordered scan.
        let mut partners = Vec::with_capacity(n * n);
        for v in 0..n {
            let mut row: Vec<usize> = (0..n).filter(|&u| u != v).collect();
            row.sort_by(|&x, &y| scores[v * n + y].cmp(&scores[v * n + x]).then(x.cmp(&y)));
            partners.extend(row.iter().map(|&u| u as u8));
            partners.push(v as u8); // pad to n entries; never read
        }
        let all = bitset::full(n);
        let others = (0..n).map(|a| all & !(1 << a)).collect();
        // Interchangeable GPUs: the same NUMA key and the same score to every third GPU.
        // The relation is an equivalence (scores inside a class are all equal), so each
        // position's row is its class.
        let mut mates = vec![0 as Mask; n];
        for a in 0..n {
            if mates[a] != 0 {
                continue;
            }
            let mut class: Mask = 1 << a;
            for b in a + 1..n {
                if mates[b] == 0
                    && numa[a] == numa[b]
                    && (0..n).all(|x| x == a || x == b || scores[a * n + x] == scores[b * n + x])
                {
                    class |= 1 << b;
                }
            }
            for p in bitset::iter(class) {
                mates[p] = class;
            }
        }
        Ok(Topology {
            ids,
            generations: generations.to_vec(),
            scores,
            paths,
            numa,
            key_gpus,
            max_key_size,
            partners,
            thresholds,
            adj,
            others,
            mates,
            weakest_first,
        })
    }

    /// A node whose every pair has the same path (an NVSwitch box, or a PCIe box).
    pub fn uniform(n: usize, path: PairPath, generation: u8, numa_keys: &[u32]) -> Result<Self> {
        let mut pairs = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                pairs.push(PairSpec {
                    a,
                    b,
                    nvlinks: path.nvlinks,
                    class: path.class,
                });
            }
        }
        Topology::new(
            (0..n as i64).collect(),
            &vec![generation; n],
            &pairs,
            numa_keys,
        )
    }

    /// Number of GPUs.
    #[inline]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always false: a topology has at least one GPU.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// GPU ids by position.
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    /// NVLink generation of each GPU (0 = unknown), by position.
    pub fn generations(&self) -> &[u8] {
        &self.generations
    }

    /// The mask of every GPU.
    pub fn all(&self) -> Mask {
        bitset::full(self.len())
    }

    /// Position of GPU `id`, if the node has it.
    pub fn position(&self, id: i64) -> Option<usize> {
        let n = self.ids.len();
        // Ids are usually 0..n; check that first, then search.
        if id >= 0 && (id as usize) < n && self.ids[id as usize] == id {
            return Some(id as usize);
        }
        self.ids.binary_search(&id).ok()
    }

    /// The GPU ids in `mask`, ascending.
    pub fn ids_of(&self, mask: Mask) -> Vec<i64> {
        let mut ids = Vec::with_capacity(bitset::len(mask) as usize);
        ids.extend(bitset::iter(mask).map(|p| self.ids[p]));
        ids
    }

    /// The mask of GPU ids `ids`; an unknown or repeated id is an `UnknownGpu` error that
    /// names `what` (say, "available").
    pub fn mask_of(&self, ids: &[i64], what: &str) -> Result<Mask> {
        let mut m: Mask = 0;
        for &id in ids {
            let Some(p) = self.position(id) else {
                let known: Vec<String> = self.ids.iter().map(|i| i.to_string()).collect();
                return Err(Error::UnknownGpu(format!(
                    "GPU {id} in {what} is not on this node (GPUs: {})",
                    known.join(", ")
                )));
            };
            if m & (1 << p) != 0 {
                return Err(Error::UnknownGpu(format!(
                    "GPU {id} is listed twice in {what}"
                )));
            }
            m |= 1 << p;
        }
        Ok(m)
    }

    /// Contract 1 scores of position `a` to every position (0 to itself).
    #[inline]
    pub fn row(&self, a: usize) -> &[u32] {
        let n = self.len();
        &self.scores[a * n..a * n + n]
    }

    /// Contract 1 score of positions `a != b`.
    #[inline]
    pub fn score(&self, a: usize, b: usize) -> u32 {
        self.scores[a * self.len() + b]
    }

    /// Path of positions `a != b`.
    pub fn path(&self, a: usize, b: usize) -> PairPath {
        self.paths[a * self.len() + b]
    }

    /// Dense NUMA key id of position `p`.
    #[inline]
    pub fn numa_key(&self, p: usize) -> usize {
        self.numa[p]
    }

    /// GPUs that share NUMA key `key`.
    #[inline]
    pub fn key_gpus(&self, key: usize) -> Mask {
        self.key_gpus[key]
    }

    /// Σ of the `j` highest scores between `v` and positions of `within`.
    ///
    /// O(n): one scan of v's partners, best first.
    #[inline]
    pub fn best_partners(&self, v: usize, within: Mask, j: usize) -> u64 {
        let n = self.len();
        if n <= 64 {
            // Small nodes: one 64-bit word, and a scan without a branch on membership.
            let w = within as u64;
            let row = &self.partners[v * n..v * n + n - 1];
            let scores = &self.scores[v * n..v * n + n];
            let mut left = j as u64;
            let mut sum = 0u64;
            for &u in row {
                if left == 0 {
                    break;
                }
                let bit = (w >> u) & 1;
                sum += bit * u64::from(scores[u as usize]);
                left -= bit;
            }
            return sum;
        }
        let mut left = j;
        let mut sum = 0u64;
        for &u in &self.partners[v * n..v * n + n - 1] {
            if left == 0 {
                break;
            }
            if within & (1 << u) != 0 {
                sum += u64::from(self.scores[v * n + u as usize]);
                left -= 1;
            }
        }
        sum
    }

    /// GPUs in the largest NUMA key.
    pub fn max_key_size(&self) -> u32 {
        self.max_key_size
    }

    /// Distinct pair scores, highest first.
    pub fn thresholds(&self) -> &[u32] {
        &self.thresholds
    }

    /// Rows of the graph "score ≥ `thresholds()[ti]`" (one mask per position).
    pub fn adjacency(&self, ti: usize) -> &[Mask] {
        let n = self.len();
        &self.adj[ti * n..(ti + 1) * n]
    }

    /// The GPUs interchangeable with `p` (itself included): same NUMA key, same score to
    /// every other GPU. Swapping one for another changes no measure of a set.
    #[inline]
    pub fn mates(&self, p: usize) -> Mask {
        self.mates[p]
    }

    /// Rows of the complete graph (every other GPU).
    pub fn complete(&self) -> &[Mask] {
        &self.others
    }

    /// Number of distinct NUMA keys among `mask`.
    pub fn numa_count(&self, mask: Mask) -> u32 {
        let mut keys: Mask = 0;
        for p in bitset::iter(mask) {
            keys |= 1 << self.numa[p];
        }
        bitset::len(keys)
    }

    /// Σ score over the pairs of `mask`.
    pub fn total(&self, mask: Mask) -> u64 {
        let mut t = 0u64;
        for a in bitset::iter(mask) {
            for b in bitset::iter(mask & !((2u128 << a).wrapping_sub(1))) {
                t += u64::from(self.score(a, b));
            }
        }
        t
    }

    /// Every pair (score, a, b) with a < b, weakest first, on nodes of at most
    /// [`SMALL_NODE`] GPUs (empty on larger ones).
    pub fn weakest_first(&self) -> &[(u32, u8, u8)] {
        &self.weakest_first
    }

    /// Σ score(i, j) for i in `mask`, j in `other` (disjoint from `mask`).
    pub fn cut(&self, mask: Mask, other: Mask) -> u64 {
        let mut t = 0u64;
        for a in bitset::iter(mask) {
            for b in bitset::iter(other) {
                t += u64::from(self.score(a, b));
            }
        }
        t
    }

    /// The weakest pair of `mask` (lowest score, then smallest positions) and its score.
    pub fn weakest_pair(&self, mask: Mask) -> Option<(usize, usize, u32)> {
        let mut best: Option<(usize, usize, u32)> = None;
        for a in bitset::iter(mask) {
            for b in bitset::iter(mask & !((2u128 << a).wrapping_sub(1))) {
                let s = self.score(a, b);
                if best.is_none_or(|(_, _, bs)| s < bs) {
                    best = Some((a, b, s));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nv(a: usize, b: usize, n: u32) -> PairSpec {
        PairSpec {
            a,
            b,
            nvlinks: n,
            class: PathClass::Sys,
        }
    }

    #[test]
    fn scores_thresholds_and_adjacency() {
        let t = Topology::new(
            vec![0, 1, 2],
            &[4, 4, 4],
            &[
                nv(0, 1, 2),
                PairSpec {
                    a: 1,
                    b: 2,
                    nvlinks: 0,
                    class: PathClass::Pix,
                },
            ],
            &[0, 0, 1],
        )
        .unwrap();
        assert_eq!(t.score(0, 1), 1050);
        assert_eq!(t.score(1, 0), 1050);
        assert_eq!(t.score(1, 2), 50);
        assert_eq!(t.score(0, 2), 10);
        assert_eq!(t.thresholds(), &[1050, 50, 10]);
        assert_eq!(t.adjacency(0), &[0b010, 0b001, 0]);
        assert_eq!(t.adjacency(2), &[0b110, 0b101, 0b011]);
        assert_eq!(t.numa_count(0b111), 2);
        assert_eq!(t.total(0b111), 1110);
        assert_eq!(t.cut(0b001, 0b110), 1060);
        assert_eq!(t.weakest_pair(0b111), Some((0, 2, 10)));
        assert_eq!(t.path(0, 1).label(), "NV2");
    }

    #[test]
    fn scores_are_symmetric_across_generations() {
        // GPU 0 has NVLink 5, GPU 1 an unknown generation, GPU 2 NVLink 1.
        let t = Topology::new(
            vec![0, 1, 2],
            &[5, 0, 1],
            &[nv(0, 2, 1), nv(1, 2, 1)],
            &[0, 0, 0],
        )
        .unwrap();
        assert_eq!((t.score(0, 2), t.score(2, 0)), (1050, 1050));
        assert_eq!((t.score(1, 2), t.score(2, 1)), (1020, 1020));
    }

    #[test]
    fn positions_of_sparse_ids() {
        let t = Topology::new(vec![0, 2, 5], &[0; 3], &[], &[0; 3]).unwrap();
        assert_eq!(t.position(5), Some(2));
        assert_eq!(t.position(2), Some(1));
        assert_eq!(t.position(1), None);
        assert_eq!(t.position(-1), None);
        assert_eq!(t.ids_of(0b101), vec![0, 5]);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Topology::new(vec![], &[], &[], &[]).is_err());
        assert!(Topology::new(vec![1, 0], &[0, 0], &[], &[0, 0]).is_err());
        assert!(Topology::new(vec![0, 1], &[0, 0], &[nv(0, 0, 1)], &[0, 0]).is_err());
        assert!(Topology::new(vec![0, 1], &[0], &[], &[0, 0]).is_err());
        // A corrupted NVLink count would overflow the u32 scores; it is refused instead.
        assert!(Topology::new(vec![0, 1], &[5, 5], &[nv(0, 1, MAX_NVLINKS)], &[0, 0]).is_ok());
        let huge = Topology::new(vec![0, 1], &[5, 5], &[nv(0, 1, u32::MAX)], &[0, 0]);
        assert!(huge.is_err());
    }
}
