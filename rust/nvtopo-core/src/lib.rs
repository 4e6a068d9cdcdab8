//! nvtopo-core: NVLink-domain-aware GPU set selection and multi-node placement.
//!
//! Pure Rust, no Python: every algorithm of nvtopo lives here and is tested with `cargo test`.

/// The crate version, which is also the Python package's `nvtopo.__version__`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
