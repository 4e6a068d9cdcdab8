//! The Rust-owned cluster state: nodes interned by topology, domain aggregates, allocations.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{DomainMode, PlacedNode, Placement, Request};
use crate::bitset::{self, Mask};
use crate::error::{Error, Result};
use crate::select::{select_mask, DEFAULT_BUDGET};
use crate::topology::Topology;

/// One node as handed to [`ClusterState::new`].
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Unique node name.
    pub name: String,
    /// The node's topology (shared between nodes of one kind).
    pub topology: Arc<Topology>,
    /// The node's clique after the health rule, None when it is its own domain.
    pub clique: Option<String>,
    /// Free GPUs, by position.
    pub free: Mask,
    /// Whether the node already hosts a ComputeDomain.
    pub in_compute_domain: bool,
}

/// A committed placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Id to release it by.
    pub id: u64,
    /// What was placed.
    pub placement: Placement,
}

pub(super) struct Node {
    pub name: String,
    pub topo: usize,
    pub group: usize,
    pub free: Mask,
    pub nfree: usize,
    pub in_cd: bool,
}

pub(super) struct Group {
    pub key: String,
    pub clique: bool,
    /// Node ranks, ascending (= by name).
    pub nodes: Vec<usize>,
    pub free_total: u64,
    /// Nodes by free-GPU count.
    pub cnt_all: Vec<u32>,
    /// Nodes outside a ComputeDomain by free-GPU count.
    pub cnt_elig: Vec<u32>,
}

/// What makes cliques interchangeable: `cnt_elig[1..]` and the free GPUs in the clique.
pub(super) type Profile = (Box<[u32]>, u64);

struct Held {
    nodes: Vec<(usize, Mask)>,
    compute_domain: bool,
}

/// Free GPUs and ComputeDomains of a cluster, with the aggregates Contract 2 searches.
///
/// Node ranks are positions in name order; domain ranks positions in domain-id order (a
/// node without a clique is a domain named after itself).
pub struct ClusterState {
    pub(super) topologies: Vec<Arc<Topology>>,
    pub(super) nodes: Vec<Node>,
    by_name: HashMap<String, usize>,
    pub(super) groups: Vec<Group>,
    /// Ranks of the groups that are real cliques.
    pub(super) cliques: Vec<usize>,
    /// Length of count vectors (most GPUs on one node + 1).
    pub(super) width: usize,
    /// Every node by free count.
    pub(super) by_free: Vec<BTreeSet<usize>>,
    /// Nodes without a clique, by free count.
    pub(super) singles: Vec<BTreeSet<usize>>,
    /// Nodes without a clique and outside a ComputeDomain, by free count.
    pub(super) singles_elig: Vec<BTreeSet<usize>>,
    /// Cliques by (free GPUs, rank): the fullest that can hold a job are found without
    /// visiting the others.
    pub(super) by_fill: BTreeSet<(u64, usize)>,
    /// Cliques by profile (nodes outside a ComputeDomain by free count from 1 up, free
    /// GPUs), ranks ascending. Cliques of one profile are interchangeable but for their
    /// id, so a search over sets of cliques visits profiles, not cliques.
    pub(super) profiles: HashMap<Profile, BTreeSet<usize>>,
    /// Free GPUs in the whole cluster.
    free_all: u64,
    held: HashMap<u64, Held>,
    next_id: u64,
}

impl ClusterState {
    /// Build the state. O(N log N) for N nodes; topologies shared by `Arc` are stored once.
    pub fn new(specs: Vec<NodeSpec>) -> Result<ClusterState> {
        let mut specs = specs;
        specs.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = specs.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::Topology(format!(
                "node {:?} appears twice in the cluster",
                w[0].name
            )));
        }
        let mut topologies: Vec<Arc<Topology>> = Vec::new();
        let mut topo_index: HashMap<*const Topology, usize> = HashMap::new();
        let mut width = 1;
        // Domain keys: clique ids, and node names for nodes without a clique.
        let mut keys: Vec<(String, bool)> = Vec::new();
        for s in &specs {
            if s.free & !s.topology.all() != 0 {
                return Err(Error::Topology(format!(
                    "node {}: free GPUs name a position the node does not have",
                    s.name
                )));
            }
            width = width.max(s.topology.len() + 1);
            match &s.clique {
                Some(c) => keys.push((c.clone(), true)),
                None => keys.push((s.name.clone(), false)),
            }
        }
        keys.sort();
        keys.dedup();
        let group_of: HashMap<(String, bool), usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        let mut groups: Vec<Group> = keys
            .iter()
            .map(|(k, c)| Group {
                key: k.clone(),
                clique: *c,
                nodes: Vec::new(),
                free_total: 0,
                cnt_all: vec![0; width],
                cnt_elig: vec![0; width],
            })
            .collect();
        let mut nodes = Vec::with_capacity(specs.len());
        let mut by_name = HashMap::with_capacity(specs.len());
        for (rank, s) in specs.into_iter().enumerate() {
            let ptr = Arc::as_ptr(&s.topology);
            let topo = *topo_index.entry(ptr).or_insert_with(|| {
                topologies.push(Arc::clone(&s.topology));
                topologies.len() - 1
            });
            let key = match &s.clique {
                Some(c) => (c.clone(), true),
                None => (s.name.clone(), false),
            };
            let group = group_of[&key];
            groups[group].nodes.push(rank);
            by_name.insert(s.name.clone(), rank);
            nodes.push(Node {
                name: s.name,
                topo,
                group,
                free: s.free,
                nfree: bitset::len(s.free) as usize,
                in_cd: s.in_compute_domain,
            });
        }
        let cliques = (0..groups.len()).filter(|&g| groups[g].clique).collect();
        let mut state = ClusterState {
            topologies,
            nodes,
            by_name,
            groups,
            cliques,
            width,
            by_free: vec![BTreeSet::new(); width],
            singles: vec![BTreeSet::new(); width],
            singles_elig: vec![BTreeSet::new(); width],
            by_fill: BTreeSet::new(),
            profiles: HashMap::new(),
            free_all: 0,
            held: HashMap::new(),
            next_id: 1,
        };
        for rank in 0..state.nodes.len() {
            state.add_aggregates(rank);
        }
        for &c in &state.cliques {
            state.by_fill.insert((state.groups[c].free_total, c));
        }
        let cliques = std::mem::take(&mut state.cliques);
        for &c in &cliques {
            state.index(c);
        }
        state.cliques = cliques;
        Ok(state)
    }

    fn profile(&self, g: usize) -> Profile {
        let grp = &self.groups[g];
        (grp.cnt_elig[1..].into(), grp.free_total)
    }

    /// File clique `g` under its current profile.
    fn index(&mut self, g: usize) {
        let key = self.profile(g);
        self.profiles.entry(key).or_default().insert(g);
    }

    /// Take clique `g` out of the profile index (before its nodes change).
    fn unindex(&mut self, g: usize) {
        let key = self.profile(g);
        if let Some(set) = self.profiles.get_mut(&key) {
            set.remove(&g);
            if set.is_empty() {
                self.profiles.remove(&key);
            }
        }
    }

    /// The distinct cliques of `ranks`' nodes, taken out of the profile index: the
    /// caller changes the nodes, then files the cliques again with [`Self::index`] (once
    /// per clique, however many of its nodes change).
    fn unindex_nodes(&mut self, ranks: impl Iterator<Item = usize>) -> Vec<usize> {
        let mut touched: Vec<usize> = ranks
            .map(|r| self.nodes[r].group)
            .filter(|&g| self.groups[g].clique)
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for &g in &touched {
            self.unindex(g);
        }
        touched
    }

    fn add_aggregates(&mut self, rank: usize) {
        let n = &self.nodes[rank];
        let (v, g, elig) = (n.nfree, n.group, !n.in_cd);
        let grp = &mut self.groups[g];
        self.free_all += v as u64;
        grp.free_total += v as u64;
        grp.cnt_all[v] += 1;
        if elig {
            grp.cnt_elig[v] += 1;
        }
        self.by_free[v].insert(rank);
        if !grp.clique {
            self.singles[v].insert(rank);
            if elig {
                self.singles_elig[v].insert(rank);
            }
        }
    }

    fn remove_aggregates(&mut self, rank: usize) {
        let n = &self.nodes[rank];
        let (v, g, elig) = (n.nfree, n.group, !n.in_cd);
        let grp = &mut self.groups[g];
        self.free_all -= v as u64;
        grp.free_total -= v as u64;
        grp.cnt_all[v] -= 1;
        if elig {
            grp.cnt_elig[v] -= 1;
        }
        self.by_free[v].remove(&rank);
        if !grp.clique {
            self.singles[v].remove(&rank);
            self.singles_elig[v].remove(&rank);
        }
    }

    fn update(&mut self, rank: usize, free: Mask, in_cd: bool) {
        let g = self.nodes[rank].group;
        let before = self.groups[g].free_total;
        self.remove_aggregates(rank);
        let n = &mut self.nodes[rank];
        n.free = free;
        n.nfree = bitset::len(free) as usize;
        n.in_cd = in_cd;
        self.add_aggregates(rank);
        let after = self.groups[g].free_total;
        if self.groups[g].clique && after != before {
            self.by_fill.remove(&(before, g));
            self.by_fill.insert((after, g));
        }
    }

    fn rank(&self, name: &str) -> Result<usize> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| Error::Unknown(format!("no node {name:?} in the cluster")))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a cluster without nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Distinct topologies held (nodes of one kind share one).
    pub fn topology_count(&self) -> usize {
        self.topologies.len()
    }

    /// Free GPU ids of `name`, ascending.
    pub fn free_gpus(&self, name: &str) -> Result<Vec<i64>> {
        let n = &self.nodes[self.rank(name)?];
        Ok(self.topologies[n.topo].ids_of(n.free))
    }

    /// Whether `name` hosts a ComputeDomain.
    pub fn in_compute_domain(&self, name: &str) -> Result<bool> {
        Ok(self.nodes[self.rank(name)?].in_cd)
    }

    /// Free GPUs in the whole cluster (kept as GPUs are taken and given back: O(1)).
    pub fn free_count(&self) -> u64 {
        self.free_all
    }

    /// The best placement of `req` (Contract 2), without committing it.
    pub fn place(&self, req: &Request) -> Result<Placement> {
        Ok(self.place_masks(req)?.0)
    }

    fn place_masks(&self, req: &Request) -> Result<(Placement, Vec<(usize, Mask)>)> {
        let shares = self.solve(req)?;
        let compute_domain = req.domain != DomainMode::Ignore && shares.len() > 1;
        let mut placed = Vec::with_capacity(shares.len());
        let mut masks = Vec::with_capacity(shares.len());
        let mut cliques: Vec<String> = Vec::new();
        for (rank, share) in shares {
            let n = &self.nodes[rank];
            let topo = &self.topologies[n.topo];
            let mask = if bitset::len(n.free) as usize == share {
                n.free
            } else {
                select_mask(topo, share, n.free, 0, DEFAULT_BUDGET).mask
            };
            placed.push(PlacedNode {
                name: n.name.clone(),
                gpus: topo.ids_of(mask),
            });
            masks.push((rank, mask));
            let g = &self.groups[n.group];
            if g.clique && !cliques.contains(&g.key) {
                cliques.push(g.key.clone());
            }
        }
        cliques.sort();
        let placement = Placement {
            nodes: placed,
            cliques,
            compute_domain,
        };
        Ok((placement, masks))
    }

    /// Place `req` and commit it: its GPUs stop being free and, when it forms a
    /// ComputeDomain, its nodes take no other one until [`release`](Self::release).
    pub fn allocate(&mut self, req: &Request) -> Result<Allocation> {
        let (placement, masks) = self.place_masks(req)?;
        for &(rank, mask) in &masks {
            let n = &self.nodes[rank];
            if mask & !n.free != 0 || (placement.compute_domain && n.in_cd) {
                // A solver bug must never turn into a double booking.
                return Err(Error::Infeasible(format!(
                    "internal check failed: node {} cannot take GPUs {:?}",
                    n.name,
                    self.topologies[n.topo].ids_of(mask)
                )));
            }
        }
        let touched = self.unindex_nodes(masks.iter().map(|m| m.0));
        for &(rank, mask) in &masks {
            let n = &self.nodes[rank];
            let (free, in_cd) = (n.free & !mask, n.in_cd || placement.compute_domain);
            self.update(rank, free, in_cd);
        }
        for g in touched {
            self.index(g);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.held.insert(
            id,
            Held {
                nodes: masks,
                compute_domain: placement.compute_domain,
            },
        );
        Ok(Allocation { id, placement })
    }

    /// Give an allocation's GPUs (and ComputeDomain nodes) back.
    pub fn release(&mut self, id: u64) -> Result<()> {
        let held = self
            .held
            .remove(&id)
            .ok_or_else(|| Error::Unknown(format!("no allocation {id} (released already?)")))?;
        let touched = self.unindex_nodes(held.nodes.iter().map(|m| m.0));
        for (rank, mask) in held.nodes {
            let n = &self.nodes[rank];
            let in_cd = n.in_cd && !held.compute_domain;
            let free = n.free | mask;
            self.update(rank, free, in_cd);
        }
        for g in touched {
            self.index(g);
        }
        Ok(())
    }

    /// Ids of the allocations held, ascending.
    pub fn allocations(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.held.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
