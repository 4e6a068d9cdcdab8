"""Prepare and unprepare claims: read the allocation, write the CDI spec, keep the checkpoint.

The order makes every kill recoverable. Prepare writes the claim's CDI spec, then records
the claim in the checkpoint, then answers: a kill before the checkpoint leaves a spec no
entry owns, which :meth:`ClaimPreparer.recover` removes at the next start (the kubelet got
no answer and asks again). Unprepare removes the spec, then the entry. A claim already in
the checkpoint gets the answer recorded there, so asking twice gives the same devices.
Calls for one claim are serialized; calls for different claims run in parallel.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nvtopo.dra.attributes import device_name
from nvtopo.kubelet.cdi import (
    claim_device_id,
    gpu_device_id,
    remove_claim_spec,
    spec_path,
    stale_specs,
    write_claim_spec,
)
from nvtopo.kubelet.checkpoint import Checkpoint, PreparedClaim
from nvtopo.kubelet.environment import claim_environment
from nvtopo.kubelet.errors import CdiError, ClaimError
from nvtopo.model import NodeTopology

__all__ = ["FAILPOINT_ENV", "ClaimPreparer"]

#: Names a point where the plugin kills itself (``after-spec-write``); for crash tests only.
FAILPOINT_ENV = "NVTOPO_KUBELET_FAILPOINT"


def _failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


class ClaimPreparer:
    """The node's prepared claims for one driver.

    Parameters
    ----------
    api
        A :class:`~nvtopo.kube.client.RawApi` (reads ``ResourceClaim`` objects).
    topology
        This node's GPUs; their device names are ``gpu-<minor>`` as the publisher names them.
    node
        This node's name, which is also its pool's name.
    driver
        The DRA driver name (``gpu.nvtopo.dev``).
    cdi_dir
        Where nvtopo's per-claim CDI specs go (``/var/run/cdi``).
    checkpoint_path
        The checkpoint file.
    """

    def __init__(
        self,
        api: Any,
        topology: NodeTopology,
        *,
        node: str,
        driver: str,
        cdi_dir: Path,
        checkpoint_path: Path,
    ) -> None:
        self.api = api
        self.topology = topology
        self.node = node
        self.driver = driver
        self.cdi_dir = cdi_dir
        self.checkpoint = Checkpoint.load(checkpoint_path)
        self.devices = {device_name(g): g for g in topology.gpus}
        self._lock = threading.Lock()
        self._claim_locks: dict[str, threading.Lock] = {}

    @contextmanager
    def _claim_lock(self, uid: str) -> Iterator[None]:
        with self._lock:
            lock = self._claim_locks.setdefault(uid, threading.Lock())
        with lock:
            yield

    def recover(self) -> list[Path]:
        """Remove specs no checkpoint entry owns and half-written files; return their paths."""
        stale = stale_specs(self.cdi_dir, self.checkpoint.claims)
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def _read_claim(self, namespace: str, name: str, uid: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        from nvtopo.kube.retry import api_message

        path = (
            f"/apis/resource.k8s.io/v1/namespaces/{quote(namespace, safe='')}"
            f"/resourceclaims/{quote(name, safe='')}"
        )
        try:
            claim: dict[str, Any] = self.api.request(
                "GET", path, what=f"get ResourceClaim {namespace}/{name}"
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ClaimError(f"ResourceClaim {namespace}/{name} not found") from None
            raise ClaimError(f"get ResourceClaim {namespace}/{name}: {api_message(exc)}") from None
        found = (claim.get("metadata") or {}).get("uid")
        if found != uid:
            raise ClaimError(
                f"ResourceClaim {namespace}/{name} has UID {found}, not {uid} (deleted and "
                "created again?)"
            )
        return claim

    def _allocated(self, claim: dict[str, Any], where: str) -> list[dict[str, Any]]:
        allocation = (claim.get("status") or {}).get("allocation")
        if not allocation:
            raise ClaimError(f"ResourceClaim {where} is not allocated")
        results = [
            r
            for r in ((allocation.get("devices") or {}).get("results") or [])
            if r.get("driver") == self.driver
        ]
        if not results:
            raise ClaimError(f"ResourceClaim {where} has no device of driver {self.driver}")
        for r in results:
            pool, device = r.get("pool"), r.get("device")
            if pool != self.node:
                raise ClaimError(
                    f"ResourceClaim {where}: device {pool}/{device} belongs to node {pool}, "
                    f"not to this node {self.node}"
                )
            if device not in self.devices:
                raise ClaimError(
                    f"ResourceClaim {where}: device {device} is not a GPU of node {self.node} "
                    f"(it has {', '.join(sorted(self.devices))})"
                )
        return results

    def _answer(self, uid: str, results: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
        by_device: dict[str, dict[str, Any]] = {}
        for r in results:
            entry = by_device.get(r["device"])
            if entry is None:
                uuid = self.devices[r["device"]].uuid or r["device"]
                entry = {
                    "requests": [],
                    "pool": r["pool"],
                    "device": r["device"],
                    "cdi": [gpu_device_id(uuid), claim_device_id(uid)],
                }
                by_device[r["device"]] = entry
            if r.get("request") and r["request"] not in entry["requests"]:
                entry["requests"].append(r["request"])
        return tuple(by_device.values())

    def prepare(self, namespace: str, name: str, uid: str) -> tuple[dict[str, Any], ...]:
        """Prepare one claim; return its devices (``requests``, ``pool``, ``device``, ``cdi``).

        Raises :class:`ClaimError` with a line for the kubelet when the claim cannot be
        prepared on this node; nothing is left behind then.
        """
        where = f"{namespace}/{name}"
        with self._claim_lock(uid):
            known = self.checkpoint.claims.get(uid)
            if known is not None and Path(known.spec_file).is_file():
                return known.devices
            claim = self._read_claim(namespace, name, uid)
            results = self._allocated(claim, where)
            devices = self._answer(uid, results)
            gpus = [self.devices[d["device"]].index for d in devices]
            env = claim_environment(self.topology, gpus, namespace=namespace, name=name)
            try:
                path = write_claim_spec(self.cdi_dir, uid, env)
            except CdiError as exc:
                raise ClaimError(str(exc)) from None
            _failpoint("after-spec-write")
            entry = PreparedClaim(uid, namespace, name, devices, str(path))
            with self._lock:
                self.checkpoint.claims[uid] = entry
                try:
                    self.checkpoint.save()
                except OSError as exc:
                    del self.checkpoint.claims[uid]
                    remove_claim_spec(self.cdi_dir, uid)
                    raise ClaimError(
                        f"{self.checkpoint.path}: cannot save the checkpoint: {exc.strerror or exc}"
                    ) from None
            return devices

    def unprepare(self, namespace: str, name: str, uid: str) -> None:
        """Remove the claim's CDI spec and its checkpoint entry; an unknown claim is a no-op."""
        with self._claim_lock(uid):
            try:
                remove_claim_spec(self.cdi_dir, uid)
            except CdiError as exc:
                raise ClaimError(str(exc)) from None
            with self._lock:
                entry = self.checkpoint.claims.pop(uid, None)
                if entry is None:
                    return
                try:
                    self.checkpoint.save()
                except OSError as exc:
                    self.checkpoint.claims[uid] = entry
                    raise ClaimError(
                        f"{self.checkpoint.path}: cannot save the checkpoint: {exc.strerror or exc}"
                    ) from None

    def spec_file(self, uid: str) -> Path:
        """Where the spec of claim ``uid`` is (or would be) written."""
        return spec_path(self.cdi_dir, uid)
