"""The exceptions nvtopo raises. Every one derives from :class:`NvtopoError`."""

from __future__ import annotations

__all__ = [
    "DiscoveryError",
    "InfeasibleError",
    "NvtopoError",
    "NvtopoWarning",
    "ParseError",
    "RequiredUnavailableError",
    "SelectionError",
    "TopologyError",
    "UnknownGpuError",
    "UnknownSystemError",
]


class NvtopoError(Exception):
    """Root of every nvtopo error; its message is one line saying what and where."""


class NvtopoWarning(UserWarning):
    """Input read with something missing; the message says what (the CLI prints it as one
    ``nvtopo: warning:`` line)."""


class TopologyError(NvtopoError, ValueError):
    """A topology (or a document describing one) is inconsistent or malformed."""


class ParseError(TopologyError):
    """Input text could not be read; the message names the source and line."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None):
        where = source or "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line


class UnknownSystemError(NvtopoError, KeyError):
    """No catalog system has that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DiscoveryError(NvtopoError):
    """Live discovery failed (no driver, NVML not loadable, GPU lost)."""


class SelectionError(NvtopoError, ValueError):
    """A GPU-set request is malformed (k out of range, bad ids)."""


class UnknownGpuError(SelectionError):
    """A request names a GPU the topology does not have, or names one twice."""


class InfeasibleError(NvtopoError):
    """The request is well-formed but cannot be met (not enough free GPUs, no clique)."""


class RequiredUnavailableError(InfeasibleError):
    """A GPU the request requires is not among the available ones."""
