//! Contract 2: worked examples, and random allocate/release sequences that must never hand
//! a GPU out twice.

use std::collections::HashMap;
use std::sync::Arc;

use nvtopo_core::bitset::Mask;
use nvtopo_core::place::{ClusterState, DomainMode, NodeSpec, Request};
use nvtopo_core::score::{PairPath, PathClass};
use nvtopo_core::topology::Topology;
use nvtopo_core::Error;
use proptest::prelude::*;

fn tray() -> Arc<Topology> {
    let nv = PairPath {
        nvlinks: 18,
        class: PathClass::Sys,
    };
    Arc::new(Topology::uniform(4, nv, 5, &[0, 0, 1, 1]).unwrap())
}

fn node(name: &str, t: &Arc<Topology>, clique: Option<&str>, free: Mask) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        topology: Arc::clone(t),
        clique: clique.map(String::from),
        free,
        in_compute_domain: false,
    }
}

fn req(gpus: u32, nodes: Option<u32>, domain: DomainMode) -> Request {
    Request {
        gpus,
        nodes,
        domain,
    }
}

/// Two racks: "a" with 3 trays (one half used), "b" with 2 empty trays, plus a loose node.
fn small() -> ClusterState {
    let t = tray();
    ClusterState::new(vec![
        node("a1", &t, Some("a"), 0b1111),
        node("a2", &t, Some("a"), 0b0011),
        node("a3", &t, Some("a"), 0b1111),
        node("b1", &t, Some("b"), 0b1111),
        node("b2", &t, Some("b"), 0b1111),
        node("x", &t, None, 0b0111),
    ])
    .unwrap()
}

#[test]
fn single_node_jobs_fill_the_fullest_domain_first() {
    let s = small();
    // 2 GPUs: a2 has exactly 2 free, but the loose node "x" is its own, fuller domain (3
    // free in it, against 10 in rack a).
    let p = s.place(&req(2, None, DomainMode::Preferred)).unwrap();
    assert_eq!(p.nodes.len(), 1);
    assert_eq!(p.nodes[0].name, "x");
    assert_eq!(p.nodes[0].gpus, vec![0, 1]);
    assert!(!p.compute_domain);
    // 4 GPUs: only whole trays; rack b (8 free) is fuller than rack a (10 free).
    let p = s.place(&req(4, None, DomainMode::Required)).unwrap();
    assert_eq!(p.nodes[0].name, "b1");
    assert_eq!(p.cliques, vec!["b".to_string()]);
}

#[test]
fn gangs_stay_in_one_clique() {
    let s = small();
    let p = s.place(&req(8, Some(2), DomainMode::Required)).unwrap();
    let names: Vec<_> = p.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, vec!["b1", "b2"]);
    assert!(p.compute_domain);
    // 3 nodes × 4: only rack a could, and a2 is half used.
    let e = s
        .place(&req(12, Some(3), DomainMode::Required))
        .unwrap_err();
    assert_eq!(
        e,
        Error::Infeasible(
            "no clique has 3 nodes with 4 free GPUs outside a ComputeDomain; the largest has 2"
                .into()
        )
    );
    // preferred spreads over the fewest domains: a and b (4 whole trays), by rank a first.
    let p = s.place(&req(12, Some(3), DomainMode::Preferred)).unwrap();
    assert_eq!(p.cliques, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(p.nodes.len(), 3);
    // Uneven: 10 GPUs on the fewest nodes of rack a (4 + 4 + 2 exactly).
    let p = s.place(&req(10, None, DomainMode::Required)).unwrap();
    let got: Vec<_> = p
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.gpus.len()))
        .collect();
    assert_eq!(got, vec![("a1", 4), ("a2", 2), ("a3", 4)]);
}

#[test]
fn compute_domains_block_second_gangs() {
    let mut s = small();
    let a = s.allocate(&req(8, Some(2), DomainMode::Required)).unwrap();
    assert!(s.in_compute_domain("b1").unwrap());
    assert_eq!(s.free_gpus("b1").unwrap(), Vec::<i64>::new());
    // Rack b is taken; rack a holds a 2 × 4 gang on a1 and a3.
    let p = s.place(&req(8, Some(2), DomainMode::Required)).unwrap();
    assert_eq!(p.nodes[0].name, "a1");
    assert_eq!(p.nodes[1].name, "a3");
    s.release(a.id).unwrap();
    assert!(!s.in_compute_domain("b1").unwrap());
    assert_eq!(s.free_gpus("b1").unwrap(), vec![0, 1, 2, 3]);
    assert!(matches!(s.release(a.id), Err(Error::Unknown(_))));
}

#[test]
fn bad_requests() {
    let s = small();
    assert!(matches!(
        s.place(&req(0, None, DomainMode::Preferred)),
        Err(Error::Selection(_))
    ));
    assert!(matches!(
        s.place(&req(6, Some(4), DomainMode::Preferred)),
        Err(Error::Selection(_))
    ));
    assert!(matches!(
        s.place(&req(10, Some(2), DomainMode::Preferred)),
        Err(Error::Infeasible(_))
    ));
    assert!(matches!(
        s.place(&req(100, None, DomainMode::Ignore)),
        Err(Error::Infeasible(_))
    ));
    assert!(matches!(s.free_gpus("nope"), Err(Error::Unknown(_))));
}

#[test]
fn ignore_mode_uses_any_nodes_without_a_compute_domain() {
    let mut s = small();
    let a = s.allocate(&req(6, None, DomainMode::Ignore)).unwrap();
    assert!(!a.placement.compute_domain);
    // Fewest nodes (2), best fit 6 exactly: a1 + a2 (4 + 2) is the first by name.
    let got: Vec<_> = a.placement.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(got, vec!["a1", "a2"]);
    assert_eq!(s.free_count(), 21 - 6);
}

/// A node name and the GPU ids an allocation took on it.
type Taken = (String, Vec<i64>);

#[derive(Debug, Clone)]
enum Op {
    Alloc(u32, Option<u32>, u8),
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u32..10, prop::option::of(1u32..4), 0u8..3).prop_map(|(g, n, d)| Op::Alloc(g, n, d)),
        1 => (0usize..8).prop_map(Op::Release),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn never_double_allocates(
        frees in prop::collection::vec(0u8..16, 6),
        cliques in prop::collection::vec(0u8..3, 6),
        ops in prop::collection::vec(op(), 1..30),
    ) {
        let t = tray();
        let names = ["n0", "n1", "n2", "n3", "n4", "n5"];
        let specs = (0..6).map(|i| {
            let c = match cliques[i] { 0 => None, 1 => Some("c1"), _ => Some("c2") };
            node(names[i], &t, c, Mask::from(frees[i]))
        }).collect();
        let mut s = ClusterState::new(specs).unwrap();
        let start: u64 = s.free_count();
        let mut held: Vec<(u64, Vec<Taken>)> = Vec::new();
        let mut taken: HashMap<(String, i64), u64> = HashMap::new();
        for o in ops {
            match o {
                Op::Alloc(g, n, d) => {
                    let domain = [DomainMode::Required, DomainMode::Preferred, DomainMode::Ignore][d as usize];
                    let Ok(a) = s.allocate(&req(g, n, domain)) else { continue };
                    let got: u32 = a.placement.nodes.iter().map(|p| p.gpus.len() as u32).sum();
                    prop_assert_eq!(got, g);
                    if domain == DomainMode::Required {
                        prop_assert!(a.placement.nodes.len() == 1 || a.placement.cliques.len() == 1);
                    }
                    let mut list = Vec::new();
                    for p in &a.placement.nodes {
                        for &gpu in &p.gpus {
                            prop_assert!(taken.insert((p.name.clone(), gpu), a.id).is_none());
                        }
                        list.push((p.name.clone(), p.gpus.clone()));
                    }
                    held.push((a.id, list));
                }
                Op::Release(i) => {
                    if held.is_empty() { continue }
                    let (id, list) = held.remove(i % held.len());
                    s.release(id).unwrap();
                    for (name, gpus) in list {
                        for g in gpus {
                            taken.remove(&(name.clone(), g));
                        }
                    }
                }
            }
            prop_assert_eq!(s.free_count() + taken.len() as u64, start);
            for name in names {
                for g in s.free_gpus(name).unwrap() {
                    prop_assert!(!taken.contains_key(&(name.to_string(), g)));
                }
            }
        }
    }
}
