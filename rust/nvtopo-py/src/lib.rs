//! `nvtopo._core`: thin bindings of nvtopo-core. Convert, release the GIL, call, map errors.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nvtopo_core::place::{self, DomainMode, NodeSpec, Placement, Request};
use nvtopo_core::score::{self, PathClass};
use nvtopo_core::select::{self, Selection};
use nvtopo_core::topology::{self, PairSpec};
use nvtopo_core::{partition, Error};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyList, PyString, PyTuple};

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

/// Nodes up to this size are searched without releasing the GIL: the answer comes back
/// in about a microsecond, less than a release and reacquire would cost.
const HOLD_GIL_GPUS: usize = 16;

/// The GPU set Contract 1 picked, with the measures it was compared by.
#[pyclass(frozen, module = "nvtopo._core", name = "Selection")]
struct PySelection {
    /// Chosen GPU ids, ascending.
    #[pyo3(get)]
    gpus: Py<PyTuple>,
    /// Lowest pair score in the set (0 for a single GPU).
    #[pyo3(get)]
    bottleneck: u32,
    /// Sum of the pair scores in the set.
    #[pyo3(get)]
    total: u64,
    /// Distinct NUMA keys the set spans.
    #[pyo3(get)]
    numa_keys: u32,
    /// Sum of scores from the set to the available GPUs left out.
    #[pyo3(get)]
    cut: u64,
    /// True when the search proved the set optimal (always, up to 16 GPUs).
    #[pyo3(get)]
    optimal: bool,
    /// 0.0 when optimal; else how far the first unproven measure may fall short.
    #[pyo3(get)]
    gap: f64,
    /// The weakest pair (lowest score, then smallest ids); None for a single GPU.
    #[pyo3(get)]
    bottleneck_pair: Option<(i64, i64)>,
    /// Path class of the weakest pair (`NV18`, `SYS`).
    #[pyo3(get)]
    bottleneck_path: Option<String>,
    /// Available GPUs left for later requests, ascending.
    #[pyo3(get)]
    remaining: Py<PyTuple>,
    /// Pairs of the set whose path the source did not give (scored as `SYS`).
    unknown: Vec<(i64, i64)>,
    ids: Vec<i64>,
    rest: Vec<i64>,
}

fn join(ids: &[i64]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything a selection is compared and hashed by.
type SelectionKey<'a> = (
    &'a [i64],
    (u32, u64, u32, u64),
    bool,
    u64,
    Option<(i64, i64)>,
    Option<&'a str>,
    &'a [i64],
    &'a [(i64, i64)],
);

impl PySelection {
    fn build(py: Python<'_>, s: Selection) -> PyResult<Self> {
        Ok(PySelection {
            gpus: PyTuple::new(py, &s.gpus)?.unbind(),
            bottleneck: s.bottleneck,
            total: s.total,
            numa_keys: s.numa_keys,
            cut: s.cut,
            optimal: s.optimal,
            gap: s.gap,
            bottleneck_pair: s.bottleneck_pair,
            bottleneck_path: s.bottleneck_path,
            remaining: PyTuple::new(py, &s.remaining)?.unbind(),
            unknown: Vec::new(),
            ids: s.gpus,
            rest: s.remaining,
        })
    }

    fn key(&self) -> SelectionKey<'_> {
        (
            &self.ids,
            (self.bottleneck, self.total, self.numa_keys, self.cut),
            self.optimal,
            self.gap.to_bits(),
            self.bottleneck_pair,
            self.bottleneck_path.as_deref(),
            &self.rest,
            &self.unknown,
        )
    }
}

#[pymethods]
impl PySelection {
    /// A selection from its fields (as another process or the placement service sent it).
    #[new]
    #[pyo3(signature = (
        gpus, bottleneck, total, numa_keys, cut, optimal, bottleneck_pair, bottleneck_path,
        remaining=Vec::new(), unknown_pairs=Vec::new(), gap=0.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        gpus: Vec<i64>,
        bottleneck: u32,
        total: u64,
        numa_keys: u32,
        cut: u64,
        optimal: bool,
        bottleneck_pair: Option<(i64, i64)>,
        bottleneck_path: Option<String>,
        remaining: Vec<i64>,
        unknown_pairs: Vec<(i64, i64)>,
        gap: f64,
    ) -> PyResult<Self> {
        Ok(PySelection {
            gpus: PyTuple::new(py, &gpus)?.unbind(),
            bottleneck,
            total,
            numa_keys,
            cut,
            optimal,
            gap,
            bottleneck_pair,
            bottleneck_path,
            remaining: PyTuple::new(py, &remaining)?.unbind(),
            unknown: unknown_pairs,
            ids: gpus,
            rest: remaining,
        })
    }

    /// Pairs of the set whose path the source did not give (scored as `SYS`).
    #[getter]
    fn unknown_pairs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.unknown)
    }

    /// One paragraph saying what was picked and why it is the best set.
    fn explain(&self) -> String {
        let ids = join(&self.ids);
        let head = if self.ids.len() == 1 {
            format!("GPU {ids}")
        } else {
            format!("GPUs {ids}")
        };
        let link = match self.bottleneck_pair {
            None => "a single GPU, so no pair limits it".to_string(),
            Some((a, b)) => format!(
                "the weakest pair is {a}-{b} over {} (score {}), pair scores total {}",
                self.bottleneck_path.as_deref().unwrap_or("?"),
                self.bottleneck,
                self.total
            ),
        };
        let domains = if self.numa_keys == 1 {
            "1 NUMA domain".to_string()
        } else {
            format!("{} NUMA domains", self.numa_keys)
        };
        let later = if self.rest.is_empty() {
            "no available GPU is left over".to_string()
        } else {
            format!(
                "GPUs {} stay free for later requests (cut {})",
                join(&self.rest),
                self.cut
            )
        };
        let proof = if self.optimal {
            "proven optimal".to_string()
        } else {
            format!(
                "the best found within the search budget (at most {:.1}% short)",
                100.0 * self.gap
            )
        };
        let mut text = format!("{head}: {link}; spans {domains}; {later}; {proof}.");
        if !self.unknown.is_empty() {
            let pairs: Vec<String> = self
                .unknown
                .iter()
                .map(|(a, b)| format!("{a}-{b}"))
                .collect();
            text.push_str(&format!(
                " The source gives no path for {}: the answer assumes SYS for them (read \
                 `nvidia-smi topo -m` too for the real paths).",
                pairs.join(", ")
            ));
        }
        text
    }

    /// The same selection, saying which of its pairs the source gave no path for, with
    /// the weakest pair's path as given (`?` where unknown).
    fn with_unknown_paths(
        &self,
        py: Python<'_>,
        pairs: Vec<(i64, i64)>,
        path: Option<String>,
    ) -> PySelection {
        PySelection {
            gpus: self.gpus.clone_ref(py),
            bottleneck: self.bottleneck,
            total: self.total,
            numa_keys: self.numa_keys,
            cut: self.cut,
            optimal: self.optimal,
            gap: self.gap,
            bottleneck_pair: self.bottleneck_pair,
            bottleneck_path: path,
            remaining: self.remaining.clone_ref(py),
            unknown: pairs,
            ids: self.ids.clone(),
            rest: self.rest.clone(),
        }
    }

    /// `{"gpus": [...], "bottleneck", "bottleneckPair", "bottleneckPath", "total",
    /// "numaKeys", "cut", "remaining", "optimal"}`, plus `"gap"` when not optimal.
    fn to_json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("gpus", PyList::new(py, &self.ids)?)?;
        d.set_item("bottleneck", self.bottleneck)?;
        d.set_item(
            "bottleneckPair",
            self.bottleneck_pair.map(|(a, b)| vec![a, b]),
        )?;
        d.set_item("bottleneckPath", &self.bottleneck_path)?;
        d.set_item("total", self.total)?;
        d.set_item("numaKeys", self.numa_keys)?;
        d.set_item("cut", self.cut)?;
        d.set_item("remaining", PyList::new(py, &self.rest)?)?;
        d.set_item("optimal", self.optimal)?;
        if !self.optimal {
            d.set_item("gap", self.gap)?;
        }
        if !self.unknown.is_empty() {
            let pairs: Vec<Vec<i64>> = self.unknown.iter().map(|&(a, b)| vec![a, b]).collect();
            d.set_item("unknownPairs", pairs)?;
        }
        Ok(d)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        match other.cast::<PySelection>() {
            Ok(o) => self.key() == o.get().key(),
            Err(_) => false,
        }
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.key().hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        let opt = |v: &Option<String>| v.as_ref().map_or("None".to_string(), |x| format!("'{x}'"));
        let tuple = |ids: &[i64]| match ids {
            [one] => format!("({one},)"),
            _ => format!("({})", join(ids)),
        };
        format!(
            "Selection(gpus={}, bottleneck={}, total={}, numa_keys={}, cut={}, optimal={}, \
             gap={:?}, bottleneck_pair={}, bottleneck_path={}, remaining={}, unknown_pairs={})",
            tuple(&self.ids),
            self.bottleneck,
            self.total,
            self.numa_keys,
            self.cut,
            if self.optimal { "True" } else { "False" },
            self.gap,
            self.bottleneck_pair
                .map_or("None".to_string(), |(a, b)| format!("({a}, {b})")),
            opt(&self.bottleneck_path),
            tuple(&self.rest),
            match self.unknown.as_slice() {
                [] => "()".to_string(),
                [(a, b)] => format!("(({a}, {b}),)"),
                many => format!(
                    "({})",
                    many.iter()
                        .map(|(a, b)| format!("({a}, {b})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        )
    }
}

/// GPU ids from a list, a tuple or any iterable of ints; a string is refused.
fn gpu_ids(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<i64>> {
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t.iter().map(|x| x.extract::<i64>()).collect();
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return l.iter().map(|x| x.extract::<i64>()).collect();
    }
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(exc::SelectionError::new_err(format!(
            "{what} must be GPU ids, got {}",
            obj.repr()?
        )));
    }
    obj.try_iter()?.map(|x| x?.extract::<i64>()).collect()
}

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

    /// Contract 1: the best `k` GPUs of `available` (None: all) holding `required`.
    /// `budget` caps search nodes; `deadline` (seconds, default 0.01) the time spent past
    /// 16 GPUs.
    #[pyo3(signature = (k, available=None, required=None, budget=None, deadline=None))]
    fn select(
        &self,
        py: Python<'_>,
        k: &Bound<'_, PyAny>,
        available: Option<&Bound<'_, PyAny>>,
        required: Option<&Bound<'_, PyAny>>,
        budget: Option<u64>,
        deadline: Option<f64>,
    ) -> PyResult<PySelection> {
        if k.is_instance_of::<PyBool>() {
            return Err(exc::SelectionError::new_err(format!(
                "k must be a positive int, got {}",
                k.repr()?
            )));
        }
        let k: usize = k.extract()?;
        let deadline = match deadline {
            None => None,
            Some(d) if (0.0..=3600.0).contains(&d) => Some(Duration::from_secs_f64(d)),
            Some(d) => {
                return Err(exc::SelectionError::new_err(format!(
                    "deadline must be 0 to 3600 seconds, got {d}"
                )))
            }
        };
        let available = available.map(|a| gpu_ids(a, "available")).transpose()?;
        let required = match required {
            Some(r) => gpu_ids(r, "required")?,
            None => Vec::new(),
        };
        let topo = &self.inner;
        let run =
            || select::select_deadline(topo, k, available.as_deref(), &required, budget, deadline);
        let s = if topo.len() <= HOLD_GIL_GPUS {
            run()
        } else {
            py.detach(run)
        }
        .map_err(to_py)?;
        PySelection::build(py, s)
    }

    /// Rebuilt from its ids, generations, pairs and NUMA keys when pickled or copied.
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let py = slf.py();
        let t = &slf.get().inner;
        let n = t.len();
        let mut pairs = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                let p = t.path(a, b);
                pairs.push((a, b, p.nvlinks, p.class as u8));
            }
        }
        let numa: Vec<u32> = (0..n).map(|p| t.numa_key(p) as u32).collect();
        let args = (t.ids().to_vec(), t.generations().to_vec(), pairs, numa).into_pyobject(py)?;
        Ok((slf.get_type().into_any(), args))
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
    m.add("DEFAULT_DEADLINE", select::DEFAULT_DEADLINE.as_secs_f64())?;
    m.add("EXACT_GPUS", select::EXACT_GPUS)?;
    m.add_class::<PySelection>()?;
    m.add("MAX_NVLINKS", score::MAX_NVLINKS)?;
    m.add("MAX_GPUS", nvtopo_core::bitset::MAX_GPUS)?;
    m.add_function(wrap_pyfunction!(nvlink_bandwidth, m)?)?;
    m.add_class::<Topology>()?;
    m.add_class::<ClusterState>()?;
    Ok(())
}
