//! Contract 2 in the core: 1,024 GB200 NVL72 racks (18,432 trays, 73,728 GPUs).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use nvtopo_core::place::{ClusterState, DomainMode, NodeSpec, Request};
use nvtopo_core::score::{PairPath, PathClass};
use nvtopo_core::topology::Topology;

fn racks(count: usize) -> Vec<NodeSpec> {
    let nv18 = PairPath {
        nvlinks: 18,
        class: PathClass::Sys,
    };
    let tray = Arc::new(Topology::uniform(4, nv18, 5, &[0, 0, 1, 1]).unwrap());
    (0..count)
        .flat_map(|r| {
            let tray = Arc::clone(&tray);
            (0..18).map(move |t| NodeSpec {
                name: format!("rack{r:04}-tray{t:02}"),
                topology: Arc::clone(&tray),
                clique: Some(format!("{r:08x}-0000-0000-0000-000000000000.{r}")),
                free: 0b1111,
                in_compute_domain: false,
            })
        })
        .collect()
}

fn gang() -> Request {
    Request {
        gpus: 64,
        nodes: Some(16),
        domain: DomainMode::Required,
    }
}

fn bench(c: &mut Criterion) {
    c.bench_function("place/nvl72x1024/load", |b| {
        b.iter_batched(
            || racks(1024),
            |specs| black_box(ClusterState::new(specs).unwrap()),
            criterion::BatchSize::LargeInput,
        )
    });
    let mut state = ClusterState::new(racks(1024)).unwrap();
    c.bench_function("place/nvl72x1024/16-node-gang", |b| {
        b.iter(|| black_box(state.place(&gang()).unwrap()))
    });
    // Half the racks busy with gangs, then allocate and release in turn.
    let mut held: Vec<u64> = (0..512)
        .map(|_| state.allocate(&gang()).unwrap().id)
        .collect();
    c.bench_function("place/nvl72x1024/allocate-release", |b| {
        b.iter(|| {
            let a = state.allocate(&gang()).unwrap();
            held.push(a.id);
            state.release(held.remove(0)).unwrap();
        })
    });
    let uneven = Request {
        gpus: 30,
        nodes: None,
        domain: DomainMode::Preferred,
    };
    c.bench_function("place/nvl72x1024/30-gpus-fewest-nodes", |b| {
        b.iter(|| black_box(state.place(&uneven).unwrap()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
