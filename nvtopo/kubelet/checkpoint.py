"""The kubelet plugin's checkpoint: which claims are prepared, and what the kubelet was told.

One JSON file, replaced atomically (write a temporary file beside it, ``fsync``, ``rename``,
``fsync`` the directory), so a kill at any point leaves either the old or the new content,
never a mix. The file carries a version and a checksum of its claims: a file from a newer
plugin, or one whose content does not match its checksum, is refused with one line saying
so rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nvtopo.kubelet.errors import CheckpointError

__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "PreparedClaim", "atomic_write"]

#: Bumped when the layout changes in a way an older plugin cannot read.
CHECKPOINT_VERSION = 1
_KIND = "KubeletPluginCheckpoint"


@dataclass(frozen=True)
class PreparedClaim:
    """One prepared claim: its identity, the devices answered and nvtopo's CDI spec file."""

    uid: str
    namespace: str
    name: str
    #: Each device as the kubelet received it: ``requests``, ``pool``, ``device``, ``cdi``.
    devices: tuple[dict[str, Any], ...]
    spec_file: str

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "namespace": self.namespace,
            "name": self.name,
            "devices": list(self.devices),
            "specFile": self.spec_file,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PreparedClaim:
        return cls(
            uid=str(doc["uid"]),
            namespace=str(doc["namespace"]),
            name=str(doc["name"]),
            devices=tuple(dict(d) for d in doc["devices"]),
            spec_file=str(doc["specFile"]),
        )


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a part.

    On failure (a full disk) nothing is left behind: the temporary file is removed and
    ``OSError`` propagates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _digest(claims: list[dict[str, Any]]) -> str:
    text = json.dumps(claims, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Checkpoint:
    """The prepared claims by UID, saved to ``path`` on every change."""

    path: Path
    claims: dict[str, PreparedClaim] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read ``path``; an absent file is an empty checkpoint."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read the checkpoint: {exc.strerror}") from None
        try:
            doc = json.loads(raw)
            version = int(doc["version"])
        except (ValueError, KeyError, TypeError):
            raise CheckpointError(f"{path}: not a kubelet plugin checkpoint") from None
        if doc.get("kind") != _KIND or version > CHECKPOINT_VERSION:
            raise CheckpointError(
                f"{path}: checkpoint version {version} of kind {doc.get('kind')!r}; this "
                f"plugin reads {_KIND} up to version {CHECKPOINT_VERSION}"
            )
        items = doc.get("claims") or []
        if doc.get("checksum") != _digest(items):
            raise CheckpointError(f"{path}: checksum mismatch (the file was changed or cut)")
        try:
            claims = [PreparedClaim.from_json(item) for item in items]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: a claim entry lacks a field") from None
        return cls(path, {c.uid: c for c in claims})

    def save(self) -> None:
        """Write the checkpoint atomically (``OSError`` on failure, the old file intact)."""
        items = [self.claims[uid].to_json() for uid in sorted(self.claims)]
        doc = {
            "kind": _KIND,
            "version": CHECKPOINT_VERSION,
            "checksum": _digest(items),
            "claims": items,
        }
        atomic_write(self.path, json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n")
