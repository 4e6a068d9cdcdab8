"""CDI (Container Device Interface) specs: nvtopo's per-claim spec and the host's GPU spec.

A prepared claim gets one spec of kind ``nvtopo.dev/claim`` with one device named after the
claim's UID; its container edits carry only the claim's environment. The GPUs themselves
(device nodes, driver libraries) come from the host's spec that NVIDIA's Container Toolkit
generates (kind ``nvidia.com/gpu``), which the kubelet plugin names by UUID.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from nvtopo.kubelet.checkpoint import atomic_write
from nvtopo.kubelet.errors import CdiError

__all__ = [
    "CDI_VERSION",
    "CLAIM_KIND",
    "GPU_KIND",
    "claim_device_id",
    "claim_spec",
    "gpu_device_id",
    "host_gpu_names",
    "remove_claim_spec",
    "spec_path",
    "stale_specs",
    "write_claim_spec",
]

#: Env-only container edits are valid from CDI 0.3.0; 0.6.0 is what current runtimes read.
CDI_VERSION = "0.6.0"
CLAIM_KIND = "nvtopo.dev/claim"
#: The kind under which NVIDIA's Container Toolkit (``nvidia-ctk cdi generate``) names GPUs.
GPU_KIND = "nvidia.com/gpu"
_PREFIX = CLAIM_KIND.replace("/", "-") + "_"
_SPEC_NAME = re.compile(rf"^{re.escape(_PREFIX)}(?P<uid>[A-Za-z0-9_.:-]+)\.json$")
_TEMP_NAME = re.compile(rf"^\.{re.escape(_PREFIX)}.*\.tmp$")


def gpu_device_id(uuid: str) -> str:
    """The CDI id of a GPU in the host's spec: ``nvidia.com/gpu=<uuid>``."""
    return f"{GPU_KIND}={uuid}"


def claim_device_id(uid: str) -> str:
    """The CDI id of a claim's environment in nvtopo's spec: ``nvtopo.dev/claim=<uid>``."""
    return f"{CLAIM_KIND}={uid}"


def spec_path(cdi_dir: Path, uid: str) -> Path:
    """Where the spec of claim ``uid`` lives (``<kind with - for />_<uid>.json``)."""
    return cdi_dir / f"{_PREFIX}{uid}.json"


def claim_spec(uid: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The CDI spec of one claim: one device ``uid`` whose edits set ``env``."""
    return {
        "cdiVersion": CDI_VERSION,
        "kind": CLAIM_KIND,
        "devices": [
            {
                "name": uid,
                "containerEdits": {"env": [f"{k}={v}" for k, v in sorted(env.items())]},
            }
        ],
    }


def write_claim_spec(cdi_dir: Path, uid: str, env: Mapping[str, str]) -> Path:
    """Write the claim's spec atomically; a failed write (full disk) leaves nothing behind."""
    path = spec_path(cdi_dir, uid)
    data = json.dumps(claim_spec(uid, env), indent=1).encode() + b"\n"
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise CdiError(f"{path}: cannot write the CDI spec: {exc.strerror or exc}") from None
    return path


def remove_claim_spec(cdi_dir: Path, uid: str) -> None:
    """Remove the claim's spec; an absent one is already removed."""
    path = spec_path(cdi_dir, uid)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise CdiError(f"{path}: cannot remove the CDI spec: {exc.strerror or exc}") from None


def stale_specs(cdi_dir: Path, prepared: Iterable[str]) -> list[Path]:
    """nvtopo's files in ``cdi_dir`` that no prepared claim owns, and half-written temporaries.

    A spec without a checkpoint entry was written by a plugin killed before it recorded the
    claim: the kubelet got no answer for it and will ask again, so it is removed.
    """
    keep = set(prepared)
    found: list[Path] = []
    if not cdi_dir.is_dir():
        return found
    for path in sorted(cdi_dir.iterdir()):
        if _TEMP_NAME.match(path.name):
            found.append(path)
            continue
        m = _SPEC_NAME.match(path.name)
        if m is not None and m.group("uid") not in keep:
            found.append(path)
    return found


def _load_spec(path: Path) -> Any:
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def host_gpu_names(dirs: Iterable[Path]) -> tuple[set[str], list[str]]:
    """Device names of kind ``nvidia.com/gpu`` in the host's CDI specs, and unreadable files.

    NVIDIA's Container Toolkit names each GPU by index, by UUID or both
    (``nvidia-ctk cdi generate --device-name-strategy``).
    """
    names: set[str] = set()
    problems: list[str] = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.suffix not in (".json", ".yaml", ".yml") or path.name.startswith(_PREFIX):
                continue
            try:
                doc = _load_spec(path)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                problems.append(f"{path}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
                continue
            if not isinstance(doc, dict) or doc.get("kind") != GPU_KIND:
                continue
            for device in doc.get("devices") or []:
                if isinstance(device, dict) and isinstance(device.get("name"), str):
                    names.add(device["name"])
    return names, problems
