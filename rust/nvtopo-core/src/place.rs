//! Contract 2: where a multi-node job goes, and the cluster state that never hands a GPU
//! out twice.
//!
//! Placements are compared, best first, by: (1) feasibility (free GPUs only; a multi-node
//! placement under `required`/`preferred` forms a ComputeDomain and may use only nodes not
//! already in one); (2) fewest NVLink domains (a real clique, or a node without one, which
//! is its own domain); (3) fewest nodes; (4) best fit: fewest free GPUs in the domains
//! used, then on the nodes used; (6) ties by the sorted domain ids, then the sorted node
//! names. Step (5), each node's GPUs, is Contract 1 with k = the node's share.
//!
//! Shares: with `nodes = N` each node takes gpus / N. Without it, the fewest nodes are
//! chosen and filled in order of most free GPUs first (ties by name), each taking all its
//! free GPUs until the request is met, so only the last node may take part of its free ones.
//!
//! Aggregates kept per domain (free GPUs, nodes by free count, the same outside any
//! ComputeDomain) make a request cost O(domains · V) plus the work inside the chosen
//! domain, instead of a scan of every node. A placement over several domains (only under
//! `preferred`, when no single one has room) searches sets of the fewest domains that can
//! hold the job over clique profiles kept up to date with the state, pruned by bounds, so
//! that its cost follows the shapes of the racks rather than their number (`spanning`).

mod lexfirst;
mod solve;
mod spanning;
mod spread;
mod state;

pub use state::{Allocation, ClusterState, NodeSpec};

/// How a job relates to NVLink domains (cliques).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainMode {
    /// One clique, or fail.
    Required,
    /// As few cliques as possible.
    Preferred,
    /// Cliques ignored; no ComputeDomain.
    Ignore,
}

/// A placement request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    /// GPUs in total.
    pub gpus: u32,
    /// Nodes to spread them over evenly, if fixed.
    pub nodes: Option<u32>,
    /// Clique rule.
    pub domain: DomainMode,
}

/// One node of a placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedNode {
    /// Node name.
    pub name: String,
    /// GPU ids taken on it (Contract 1's pick), ascending.
    pub gpus: Vec<i64>,
}

/// A chosen placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Nodes by name.
    pub nodes: Vec<PlacedNode>,
    /// Clique ids of the nodes used, sorted (nodes without a clique add none).
    pub cliques: Vec<String>,
    /// True when the placement forms a ComputeDomain (multi-node, cliques not ignored).
    pub compute_domain: bool,
}
