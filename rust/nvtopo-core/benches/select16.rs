//! Contract 1 on any 16-GPU topology: 200 seeded random nodes (random PCIe class per pair,
//! random NVLink counts, degraded links, mixed generations, random NUMA keys), every k,
//! all GPUs free and three random free sets per k. Each case is timed as the fastest of
//! a few calls (the machine is shared); the table gives the worst case, p99 and median,
//! and how many results were not proven optimal.
//!
//! `cargo bench -p nvtopo-core --bench select16 [-- NODES]`; with `NVTOPO_BENCH_JSON=PATH`
//! the figures are also written there as JSON.

use std::hint::black_box;
use std::time::Instant;

use nvtopo_core::random::{random_free, random_node, Rng};
use nvtopo_core::select::{select_mask, DEFAULT_BUDGET};

const REPS: usize = 3;

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let nodes: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let n = 16;
    let mut all = Vec::new();
    let mut per_k: Vec<Vec<f64>> = vec![Vec::new(); n + 1];
    let mut unproven = 0u32;
    let mut worst_case = (0.0f64, 0u64, 0usize, 0u128);
    let mut max_nodes = 0u64;
    for seed in 0..nodes {
        let mut rng = Rng::new(seed);
        let t = random_node(&mut rng, n);
        for k in 1..=n {
            for c in 0..4 {
                let avail = if c == 0 {
                    t.all()
                } else {
                    random_free(&mut rng, n, k)
                };
                let mut best = f64::MAX;
                for _ in 0..REPS {
                    let start = Instant::now();
                    let s = black_box(select_mask(&t, k, avail, 0, DEFAULT_BUDGET));
                    best = best.min(start.elapsed().as_nanos() as f64);
                    if !s.optimal {
                        unproven += 1;
                    }
                    max_nodes = max_nodes.max(s.nodes);
                }
                if best > worst_case.0 {
                    worst_case = (best, seed, k, avail);
                }
                all.push(best);
                per_k[k].push(best);
            }
        }
    }
    all.sort_by(|a, b| a.total_cmp(b));
    let (worst, p99, med) = (all[all.len() - 1], pct(&all, 0.99), pct(&all, 0.5));
    println!(
        "select/random16: {nodes} nodes, {} cases: worst {:.1} µs, p99 {:.2} µs, median {:.2} µs, \
         unproven {unproven}, most search nodes {max_nodes}",
        all.len(),
        worst / 1e3,
        p99 / 1e3,
        med / 1e3
    );
    println!(
        "  worst case: node seed {}, k {}, free {:#x}",
        worst_case.1, worst_case.2, worst_case.3
    );
    let mut rows = Vec::new();
    for (k, v) in per_k.iter_mut().enumerate().skip(1) {
        v.sort_by(|a, b| a.total_cmp(b));
        let row = (k, v[v.len() - 1], pct(v, 0.99), pct(v, 0.5));
        println!(
            "  k={:>2}: worst {:>8.2} µs  p99 {:>8.2} µs  median {:>6.2} µs",
            k,
            row.1 / 1e3,
            row.2 / 1e3,
            row.3 / 1e3
        );
        rows.push(row);
    }
    if let Ok(path) = std::env::var("NVTOPO_BENCH_JSON") {
        let per_k: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"k\": {}, \"worst_ns\": {:.0}, \"p99_ns\": {:.0}, \"median_ns\": {:.0}}}",
                    r.0, r.1, r.2, r.3
                )
            })
            .collect();
        let json = format!(
            "{{\"nodes\": {nodes}, \"cases\": {}, \"worst_ns\": {worst:.0}, \"p99_ns\": {p99:.0}, \
             \"median_ns\": {med:.0}, \"unproven\": {unproven}, \"per_k\": [{}]}}\n",
            all.len(),
            per_k.join(", ")
        );
        std::fs::write(path, json).expect("write the JSON figures");
    }
}
