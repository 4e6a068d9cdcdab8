//! `nvtopo._core`: thin bindings of nvtopo-core. Convert, release the GIL, call, map errors.

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", nvtopo_core::VERSION)?;
    Ok(())
}
