//! `nvtopo._core`: thin bindings of nvtopo-core. Convert, release the GIL, call, map errors.

use std::sync::{Arc, Mutex, MutexGuard};

use nvtopo_core::place::{self, DomainMode, NodeSpec, Placement, Request};
use nvtopo_core::score::{self, PathClass};
use nvtopo_core::select::{self, Selection};
use nvtopo_core::topology::{self, PairSpec};
use nvtopo_core::{partition, Error};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

mod exc {
    pyo3::import_exception!(nvtopo.exceptions, TopologyError);
    pyo3::import_exception!(nvtopo.exceptions, SelectionError);
    pyo3::import_exception!(nvtopo.exceptions, UnknownGpuError);
    pyo3::import_exception!(nvtopo.exceptions, RequiredUnavailableError);
    pyo3::import_exception!(nvtopo.exceptions, InfeasibleError);
}

fn to_py(e: Error) -> PyErr {
    match e {
        Error::Topology(m) => exc::TopologyError::new_err(m),
        Error::Selection(m) | Error::Unknown(m) => exc::SelectionError::new_err(m),
        Error::UnknownGpu(m) => exc::UnknownGpuError::new_err(m),
        Error::RequiredUnavailable(m) => exc::RequiredUnavailableError::new_err(m),
        Error::Infeasible(m) => exc::InfeasibleError::new_err(m),
    }
}

/// One node's topology in the core: pair scores, path classes, NUMA keys.
#[pyclass(frozen, module = "nvtopo._core")]
struct Topology {
    inner: Arc<topology::Topology>,
}

type SelectionTuple<'py> = (
    Bound<'py, PyTuple>,
    u32,
    u64,
    u32,
    u64,
    bool,
    Option<(i64, i64)>,
    Option<String>,
    Bound<'py, PyTuple>,
);

#[pymethods]
impl Topology {
    /// ids: GPU ids ascending; generations: NVLink generation per GPU (0 unknown);
    /// pairs: (position a, position b, nvlinks, PCIe class 0=PIX..4=SYS); numa_keys: key id
    /// per GPU.
    #[new]
    fn new(
        ids: Vec<i64>,
        generations: Vec<u8>,
        pairs: Vec<(usize, usize, u32, u8)>,
        numa_keys: Vec<u32>,
    ) -> PyResult<Self> {
        let pairs: Vec<PairSpec> = pairs
            .into_iter()
            .map(|(a, b, nvlinks, class)| PairSpec {
                a,
                b,
                nvlinks,
                class: PathClass::from_code(class),
            })
            .collect();
        let inner =
            topology::Topology::new(ids, &generations, &pairs, &numa_keys).map_err(to_py)?;
        Ok(Topology {
            inner: Arc::new(inner),
        })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Pair score of GPU ids `a` and `b`.
    fn score(&self, a: i64, b: i64) -> PyResult<u32> {
        let mask = self.inner.mask_of(&[a, b], "the pair").map_err(to_py)?;
        let mut it = nvtopo_core::bitset::iter(mask);
        match (it.next(), it.next()) {
            (Some(x), Some(y)) => Ok(self.inner.score(x, y)),
            _ => Err(PyValueError::new_err("a pair needs two GPUs")),
        }
    }

    /// Contract 1: (gpus, bottleneck, total, numa_keys, cut, optimal, bottleneck_pair,
    /// bottleneck_path, remaining).
    #[pyo3(signature = (k, available, required, budget))]
    fn select<'py>(
        &self,
        py: Python<'py>,
        k: usize,
        available: Option<Vec<i64>>,
        required: Vec<i64>,
        budget: Option<u64>,
    ) -> PyResult<SelectionTuple<'py>> {
        let topo = Arc::clone(&self.inner);
        let s: Selection = py
            .detach(|| select::select(&topo, k, available.as_deref(), &required, budget))
            .map_err(to_py)?;
        Ok((
            PyTuple::new(py, &s.gpus)?,
            s.bottleneck,
            s.total,
            s.numa_keys,
            s.cut,
            s.optimal,
            s.bottleneck_pair,
            s.bottleneck_path,
            PyTuple::new(py, &s.remaining)?,
        ))
    }

    /// Groups of `k` GPU ids taken by repeated Contract 1 searches.
    fn partition(&self, py: Python<'_>, k: usize) -> PyResult<Vec<Vec<i64>>> {
        let topo = Arc::clone(&self.inner);
        py.detach(|| partition::partition(&topo, k)).map_err(to_py)
    }
}

fn domain_mode(domain: &str) -> PyResult<DomainMode> {
    match domain {
        "required" => Ok(DomainMode::Required),
        "preferred" => Ok(DomainMode::Preferred),
        "none" => Ok(DomainMode::Ignore),
        other => Err(exc::SelectionError::new_err(format!(
            "domain must be 'required', 'preferred' or 'none', got {other:?}"
        ))),
    }
}

type PlacementTuple = (Vec<(String, Vec<i64>)>, Vec<String>, bool);

fn placement_tuple(p: Placement) -> PlacementTuple {
    (
        p.nodes.into_iter().map(|n| (n.name, n.gpus)).collect(),
        p.cliques,
        p.compute_domain,
    )
}

/// (name, topology, clique or None, free GPU ids, in a ComputeDomain).
type NodeRow<'py> = (String, PyRef<'py, Topology>, Option<String>, Vec<i64>, bool);

/// Free GPUs and ComputeDomains of a cluster; Contract 2 placements over it.
#[pyclass(frozen, module = "nvtopo._core")]
struct ClusterState {
    inner: Mutex<place::ClusterState>,
}

impl ClusterState {
    fn lock(&self) -> MutexGuard<'_, place::ClusterState> {
        // The core never panics while holding the lock; recover the data if it ever did.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl ClusterState {
    /// nodes: (name, topology, clique or None, free GPU ids, in a ComputeDomain).
    #[new]
    fn new(py: Python<'_>, nodes: Vec<NodeRow<'_>>) -> PyResult<Self> {
        let mut specs = Vec::with_capacity(nodes.len());
        for (name, topo, clique, free, in_cd) in nodes {
            let what = format!("the free GPUs of node {name}");
            let free = topo.inner.mask_of(&free, &what).map_err(to_py)?;
            specs.push(NodeSpec {
                name,
                topology: Arc::clone(&topo.inner),
                clique,
                free,
                in_compute_domain: in_cd,
            });
        }
        let state = py
            .detach(|| place::ClusterState::new(specs))
            .map_err(to_py)?;
        Ok(ClusterState {
            inner: Mutex::new(state),
        })
    }

    fn __len__(&self) -> usize {
        self.lock().len()
    }

    /// Distinct core topologies held.
    #[getter]
    fn topology_count(&self) -> usize {
        self.lock().topology_count()
    }

    /// The best placement, not committed: (nodes [(name, gpus)], cliques, compute_domain).
    #[pyo3(signature = (gpus, nodes, domain))]
    fn place(
        &self,
        py: Python<'_>,
        gpus: u32,
        nodes: Option<u32>,
        domain: &str,
    ) -> PyResult<PlacementTuple> {
        let req = Request {
            gpus,
            nodes,
            domain: domain_mode(domain)?,
        };
        py.detach(|| self.lock().place(&req))
            .map(placement_tuple)
            .map_err(to_py)
    }

    /// Place and commit: (id, nodes, cliques, compute_domain).
    #[pyo3(signature = (gpus, nodes, domain))]
    fn allocate(
        &self,
        py: Python<'_>,
        gpus: u32,
        nodes: Option<u32>,
        domain: &str,
    ) -> PyResult<(u64, PlacementTuple)> {
        let req = Request {
            gpus,
            nodes,
            domain: domain_mode(domain)?,
        };
        py.detach(|| self.lock().allocate(&req))
            .map(|a| (a.id, placement_tuple(a.placement)))
            .map_err(to_py)
    }

    /// Give an allocation back.
    fn release(&self, py: Python<'_>, id: u64) -> PyResult<()> {
        py.detach(|| self.lock().release(id)).map_err(to_py)
    }

    /// Free GPU ids of a node.
    fn free_gpus(&self, node: &str) -> PyResult<Vec<i64>> {
        self.lock().free_gpus(node).map_err(to_py)
    }

    /// Whether a node hosts a ComputeDomain.
    fn in_compute_domain(&self, node: &str) -> PyResult<bool> {
        self.lock().in_compute_domain(node).map_err(to_py)
    }

    /// Free GPUs in the cluster.
    fn free_count(&self) -> u64 {
        self.lock().free_count()
    }

    /// Ids of the allocations held.
    fn allocations(&self) -> Vec<u64> {
        self.lock().allocations()
    }
}

/// GB/s per direction of one NVLink of `generation` (0 or unknown: the core's default).
#[pyfunction]
fn nvlink_bandwidth(generation: u8) -> u32 {
    score::nvlink_bandwidth(generation)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", nvtopo_core::VERSION)?;
    m.add("DEFAULT_BUDGET", select::DEFAULT_BUDGET)?;
    m.add("MAX_NVLINKS", score::MAX_NVLINKS)?;
    m.add("MAX_GPUS", nvtopo_core::bitset::MAX_GPUS)?;
    m.add_function(wrap_pyfunction!(nvlink_bandwidth, m)?)?;
    m.add_class::<Topology>()?;
    m.add_class::<ClusterState>()?;
    Ok(())
}
