//! The one error type of the core. Each variant maps to one exception class of
//! `nvtopo.exceptions` in the bindings; every message is a single line.

use std::fmt;

/// What went wrong, with a one-line message saying what and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The topology handed to the core is inconsistent (`TopologyError`).
    Topology(String),
    /// A request is malformed: `k` out of range, bad shape (`SelectionError`).
    Selection(String),
    /// A request names a GPU the node does not have, or names one twice (`UnknownGpuError`).
    UnknownGpu(String),
    /// A required GPU is not among the available ones (`RequiredUnavailableError`).
    RequiredUnavailable(String),
    /// The request is well-formed but cannot be met (`InfeasibleError`).
    Infeasible(String),
    /// A cluster request names a node or allocation that does not exist (`SelectionError`).
    Unknown(String),
}

impl Error {
    /// The message without the variant name.
    pub fn message(&self) -> &str {
        match self {
            Error::Topology(m)
            | Error::Selection(m)
            | Error::UnknownGpu(m)
            | Error::RequiredUnavailable(m)
            | Error::Infeasible(m)
            | Error::Unknown(m) => m,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Error {}

/// Result alias of the core.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_message() {
        let e = Error::Infeasible("only 3 GPUs available (0, 2, 5), 4 requested".into());
        assert_eq!(
            e.to_string(),
            "only 3 GPUs available (0, 2, 5), 4 requested"
        );
        assert_eq!(e.message(), e.to_string());
    }
}
