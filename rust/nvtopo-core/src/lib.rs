//! nvtopo-core: NVLink-domain-aware GPU set selection and multi-node placement.
//!
//! Pure Rust, no Python: every algorithm of nvtopo lives here and is tested with `cargo test`.
//!
//! - [`topology::Topology`]: one node's GPUs, pair scores ([`score`]) and NUMA keys.
//! - [`select::select`]: Contract 1, the exact optimal GPU set of a node.
//! - [`partition::partition`]: optimal partition groups (the `set<k>` attributes).
//! - [`place::ClusterState`]: Contract 2, multi-node placement over NVLink domains.

#![warn(missing_docs)]

pub mod bitset;
pub mod counts;
pub mod error;
pub mod partition;
pub mod place;
pub mod random;
pub mod score;
pub mod select;
pub mod topology;

pub use error::{Error, Result};

/// The crate version, which is also the Python package's `nvtopo.__version__`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
