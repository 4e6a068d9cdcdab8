//! Contract 1 in the core: 8-GPU DGX-1 with random availability, and every k on 16-GPU
//! nodes (NVSwitch DGX-2, and a mixed NVLink/PCIe node), against exhaustive search.

use std::hint::black_box;
use std::time::Duration;

mod common;
use common::brute;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nvtopo_core::bitset::{self, Mask};
use nvtopo_core::score::{PairPath, PathClass};
use nvtopo_core::select::{select_mask, DEFAULT_BUDGET};
use nvtopo_core::topology::{PairSpec, Topology};

/// Deterministic xorshift so the cases are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn dgx1() -> Topology {
    let nv2 = [
        (0, 3),
        (0, 4),
        (1, 2),
        (1, 5),
        (2, 3),
        (4, 7),
        (5, 6),
        (6, 7),
    ];
    let nv1 = [
        (0, 1),
        (0, 2),
        (1, 3),
        (2, 6),
        (3, 7),
        (4, 5),
        (4, 6),
        (5, 7),
    ];
    let mut pairs = Vec::new();
    for a in 0..8 {
        for b in a + 1..8 {
            let nvlinks = if nv2.contains(&(a, b)) {
                2
            } else if nv1.contains(&(a, b)) {
                1
            } else {
                0
            };
            let class = if a / 4 == b / 4 {
                PathClass::Node
            } else {
                PathClass::Sys
            };
            pairs.push(PairSpec {
                a,
                b,
                nvlinks,
                class,
            });
        }
    }
    Topology::new((0..8).collect(), &[2; 8], &pairs, &[0, 0, 0, 0, 1, 1, 1, 1]).unwrap()
}

fn dgx2() -> Topology {
    let nv6 = PairPath {
        nvlinks: 6,
        class: PathClass::Sys,
    };
    let keys: Vec<u32> = (0..16).map(|i| i / 8).collect();
    Topology::uniform(16, nv6, 2, &keys).unwrap()
}

fn mixed16(seed: u64) -> Topology {
    let mut rng = Rng(seed);
    let mut pairs = Vec::new();
    for a in 0..16 {
        for b in a + 1..16 {
            let r = rng.next() % 10;
            let nvlinks = if r < 4 { (r + 1) as u32 } else { 0 };
            pairs.push(PairSpec {
                a,
                b,
                nvlinks,
                class: PathClass::from_code((rng.next() % 5) as u8),
            });
        }
    }
    let keys: Vec<u32> = (0..16).map(|i| i / 4).collect();
    Topology::new((0..16).collect(), &[4; 16], &pairs, &keys).unwrap()
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

fn bench_dgx1(c: &mut Criterion) {
    let t = dgx1();
    let mut rng = Rng(42);
    let cases: Vec<(usize, Mask)> = (0..256)
        .map(|_| {
            let avail = (rng.next() % 255 + 1) as Mask;
            let k = 1 + (rng.next() as usize) % bitset::len(avail) as usize;
            (k, avail)
        })
        .collect();
    let mut i = 0;
    c.bench_function("select/dgx1-v100/random-availability", |b| {
        b.iter(|| {
            let (k, avail) = cases[i % cases.len()];
            i += 1;
            black_box(select_mask(&t, k, avail, 0, DEFAULT_BUDGET))
        })
    });
}

fn bench_16(c: &mut Criterion) {
    for (name, t) in [("dgx2-v100", dgx2()), ("mixed16", mixed16(7))] {
        let mut g = c.benchmark_group(format!("select/{name}/all-free"));
        for k in 1..=16 {
            g.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, &k| {
                b.iter(|| black_box(select_mask(&t, k, t.all(), 0, DEFAULT_BUDGET)))
            });
        }
        g.finish();
    }
    let t = mixed16(7);
    assert_eq!(
        brute(&t, 8, t.all()),
        select_mask(&t, 8, t.all(), 0, DEFAULT_BUDGET).mask
    );
    let mut g = c.benchmark_group("select/mixed16/brute-force");
    g.sample_size(10);
    g.bench_function("8", |b| b.iter(|| black_box(brute(&t, 8, t.all()))));
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_dgx1, bench_16
}
criterion_main!(benches);
