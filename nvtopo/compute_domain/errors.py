"""Errors of ComputeDomain planning and of the Kubernetes round trip."""

from __future__ import annotations

from nvtopo.exceptions import NvtopoError

__all__ = [
    "ComputeDomainConflict",
    "ComputeDomainError",
    "ComputeDomainInterrupted",
    "ComputeDomainTimeout",
    "CrdMissingError",
]


class ComputeDomainError(NvtopoError):
    """A ComputeDomain could not be planned, created, awaited or deleted."""


class CrdMissingError(ComputeDomainError):
    """The apiserver does not serve ``computedomains.resource.nvidia.com``."""


class ComputeDomainConflict(ComputeDomainError):
    """An object of the plan already exists (HTTP 409); what this call made was removed."""


class ComputeDomainTimeout(ComputeDomainError):
    """The ComputeDomain's nodes were not all Ready in time; ``not_ready`` says which."""

    def __init__(self, message: str, not_ready: dict[str, str]) -> None:
        super().__init__(message)
        #: node name → its last status (``NotReady``, ``Failed``, or ``absent``).
        self.not_ready = not_ready


class ComputeDomainInterrupted(ComputeDomainError):
    """Apply was interrupted (Ctrl-C); the message says which objects stay and how to remove
    them."""
