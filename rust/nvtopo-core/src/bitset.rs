//! GPU sets as bit masks: bit `p` is the GPU at position `p` of a node (positions follow
//! ascending GPU ids, so the order of bits is the order of ids).

/// A set of GPU positions of one node (up to [`MAX_GPUS`]).
pub type Mask = u128;

/// Most GPUs one node may have in the core.
pub const MAX_GPUS: usize = 128;

/// The mask of positions `0..n`.
pub fn full(n: usize) -> Mask {
    if n >= MAX_GPUS {
        Mask::MAX
    } else {
        (1u128 << n) - 1
    }
}

/// The positions in `m`, ascending.
#[inline]
pub fn iter(m: Mask) -> Positions {
    Positions {
        low: m as u64,
        high: (m >> 64) as u64,
    }
}

/// Iterator over the positions of a mask, by 64-bit halves (cheaper than 128-bit steps).
#[derive(Debug, Clone)]
pub struct Positions {
    low: u64,
    high: u64,
}

impl Iterator for Positions {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.low != 0 {
            let p = self.low.trailing_zeros() as usize;
            self.low &= self.low - 1;
            Some(p)
        } else if self.high != 0 {
            let p = self.high.trailing_zeros() as usize;
            self.high &= self.high - 1;
            Some(64 + p)
        } else {
            None
        }
    }
}

/// The `count` lowest positions of `m` (all of them if it has fewer).
#[inline]
pub fn lowest(mut m: Mask, count: usize) -> Mask {
    let mut out: Mask = 0;
    for _ in 0..count {
        let low = m & m.wrapping_neg();
        out |= low;
        m &= m.wrapping_sub(1);
    }
    out
}

/// Whether set `a` comes before set `b` (of the same size) in sorted-tuple order: the
/// lowest position where they differ is in `a`.
#[inline]
pub fn precedes(a: Mask, b: Mask) -> bool {
    let d = a ^ b;
    d != 0 && a & d & d.wrapping_neg() != 0
}

/// Number of positions in `m`.
#[inline]
pub fn len(m: Mask) -> u32 {
    m.count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterates_in_order() {
        let m: Mask = 0b1010_0101;
        assert_eq!(iter(m).collect::<Vec<_>>(), vec![0, 2, 5, 7]);
        assert_eq!(len(m), 4);
        assert_eq!(full(3), 0b111);
        assert_eq!(full(128), u128::MAX);
        assert_eq!(iter(1 << 100 | 1 << 3).collect::<Vec<_>>(), vec![3, 100]);
    }

    #[test]
    fn lowest_and_sorted_tuple_order() {
        assert_eq!(lowest(0b1011_0100, 2), 0b0001_0100);
        assert_eq!(lowest(0b11, 5), 0b11);
        // (0, 3) comes before (1, 2); a set does not come before itself.
        assert!(precedes(0b1001, 0b0110));
        assert!(!precedes(0b0110, 0b1001));
        assert!(!precedes(0b0110, 0b0110));
    }
}
