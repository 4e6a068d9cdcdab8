//! Pair scores of Contract 1: how well two GPUs of one node talk to each other.
//!
//! `pair_score = 1000 + nvlinks × per-link GB/s` with working NVLinks, else by PCIe path
//! class (`PIX 50, PXB 40, PHB 30, NODE 20, SYS 10`), in the notation of `nvidia-smi topo -m`.

/// PCIe path class of a GPU pair, best first. An unknown class reads as `Sys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathClass {
    /// Through at most one PCIe bridge.
    Pix,
    /// Through several PCIe bridges, not the host bridge.
    Pxb,
    /// Through a PCIe host bridge (the CPU).
    Phb,
    /// Across host bridges within one NUMA node.
    Node,
    /// Across the SMP interconnect between NUMA nodes (also `SOC`, and unknown).
    Sys,
}

impl PathClass {
    /// The class from its code 0..=4 (`PIX` .. `SYS`); any other code is `Sys`.
    pub fn from_code(code: u8) -> PathClass {
        match code {
            0 => PathClass::Pix,
            1 => PathClass::Pxb,
            2 => PathClass::Phb,
            3 => PathClass::Node,
            _ => PathClass::Sys,
        }
    }

    /// The `nvidia-smi topo -m` spelling.
    pub fn name(self) -> &'static str {
        match self {
            PathClass::Pix => "PIX",
            PathClass::Pxb => "PXB",
            PathClass::Phb => "PHB",
            PathClass::Node => "NODE",
            PathClass::Sys => "SYS",
        }
    }

    /// Score of a pair that has no working NVLink.
    pub fn score(self) -> u32 {
        match self {
            PathClass::Pix => 50,
            PathClass::Pxb => 40,
            PathClass::Phb => 30,
            PathClass::Node => 20,
            PathClass::Sys => 10,
        }
    }
}

/// Most bonded NVLinks a pair may have. Real GPUs have at most 18 links each; the bound
/// keeps `1000 + nvlinks × 50` and the sums of a set's pair scores far inside `u32`.
pub const MAX_NVLINKS: u32 = 64;

/// GB/s per direction of one NVLink of `generation` (0 = unknown → 25).
pub fn nvlink_bandwidth(generation: u8) -> u32 {
    match generation {
        1 => 20,
        2..=4 => 25,
        5 => 50,
        _ => 25,
    }
}

/// How two GPUs reach each other: working NVLinks and the PCIe class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PairPath {
    /// Working bonded NVLinks (direct or through NVSwitch); degraded or down links excluded.
    pub nvlinks: u32,
    /// PCIe path class (`Sys` when unknown).
    pub class: PathClass,
}

impl PairPath {
    /// A pair with no NVLink and an unknown PCIe path (`SYS`).
    pub const DEFAULT: PairPath = PairPath {
        nvlinks: 0,
        class: PathClass::Sys,
    };

    /// Contract 1's score of this pair; `generation` is the pair's NVLink generation.
    pub fn score(self, generation: u8) -> u32 {
        if self.nvlinks > 0 {
            1000 + self.nvlinks * nvlink_bandwidth(generation)
        } else {
            self.class.score()
        }
    }

    /// `NV<n>` with NVLinks, else the PCIe class name.
    pub fn label(self) -> String {
        if self.nvlinks > 0 {
            format!("NV{}", self.nvlinks)
        } else {
            self.class.name().to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvlink_scores_by_generation() {
        let nv18 = PairPath {
            nvlinks: 18,
            class: PathClass::Sys,
        };
        assert_eq!(nv18.score(4), 1000 + 18 * 25);
        assert_eq!(nv18.score(5), 1000 + 18 * 50);
        assert_eq!(nv18.score(0), 1000 + 18 * 25);
        assert_eq!(nv18.score(1), 1000 + 18 * 20);
        assert_eq!(nv18.label(), "NV18");
    }

    #[test]
    fn pcie_scores_are_ordered() {
        let scores: Vec<u32> = (0..5).map(|c| PathClass::from_code(c).score()).collect();
        assert_eq!(scores, vec![50, 40, 30, 20, 10]);
        assert_eq!(PathClass::from_code(17), PathClass::Sys);
        assert_eq!(PairPath::DEFAULT.score(5), 10);
        assert_eq!(PairPath::DEFAULT.label(), "SYS");
    }
}
