"""Errors of the kubelet plugin, each one line that says what and where."""

from __future__ import annotations

from nvtopo.exceptions import NvtopoError

__all__ = ["CdiError", "CheckpointError", "ClaimError", "KubeletPluginError"]


class KubeletPluginError(NvtopoError):
    """The kubelet plugin cannot start or serve (sockets, directories, configuration)."""


class CheckpointError(KubeletPluginError):
    """The checkpoint file cannot be read or trusted."""


class CdiError(KubeletPluginError):
    """A CDI spec cannot be written, or the host's CDI specs do not name the GPUs."""


class ClaimError(NvtopoError):
    """One claim cannot be prepared; the message goes back to the kubelet for that claim."""
