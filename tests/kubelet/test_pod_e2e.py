"""A pod really starts: kubelet, containerd and runc, with nvtopo's plugin preparing its claim.

The kubelet (k8s.io/kubernetes cmd/kubelet) and containerd (CRI, CDI always on) are built
from their Go modules; the claim lives in the real test apiserver, allocated as the
scheduler writes an allocation. This machine has no GPU, so the host's NVIDIA CDI spec is a
stand-in whose devices set one environment variable each; nvtopo's own per-claim spec is the
real one. The container prints its environment, which must hold both.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import nvtopo
from nvtopo.kube.client import RawApi
from tests.kubelet.conftest import Plugin
from tests.kubelet.node import POD_IMAGE, node

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

DRIVER = "gpu.nvtopo.dev"


def _wait(what: str, check: Any, timeout: float, log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    tail = [line for line in log.read_text().splitlines() if line.startswith("E")][-15:]
    pytest.fail(f"{what} within {timeout:.0f} s; kubelet errors:\n" + "\n".join(tail))


def test_a_pod_with_a_claim_starts_with_the_claims_environment(
    apiserver: Any, k8s_client: Any, tmp_path: Path
) -> None:
    api = RawApi(k8s_client)
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    ns = name
    base = Path(f"/tmp/nvk-{name}")  # unix socket paths must stay short
    cdi = base / "cdi"
    cdi.mkdir(parents=True)
    uuids = [str(g.uuid) for g in nvtopo.system("dgx-h100").gpus]
    host = [{"name": u, "containerEdits": {"env": [f"HOST_SPEC_GPU_{i}={u}"]}}
            for i, u in enumerate(uuids)]  # fmt: skip
    (cdi / "nvidia.json").write_text(
        json.dumps({"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": host})
    )
    api.request("POST", "/api/v1/namespaces", what="ns", body={"metadata": {"name": ns}})
    api.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", what="sa",
                body={"metadata": {"name": "default"}})  # fmt: skip
    try:
        _run(api, apiserver, name, base, cdi, uuids)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    api.request("DELETE", f"/api/v1/nodes/{name}", what="delete node")


def _run(api: RawApi, apiserver: Any, name: str, base: Path, cdi: Path, uuids: list[str]) -> None:
    ns = name
    with node(base, apiserver.kubeconfig, name, cdi) as kubelet:
        plugin = Plugin([
            "--source=system:dgx-h100", f"--node={name}", f"--driver={DRIVER}",
            f"--kubeconfig={apiserver.kubeconfig}",
            f"--plugins-registry={kubelet['root'] / 'plugins_registry'}",
            f"--plugin-dir={kubelet['root'] / 'plugins' / DRIVER}",
            f"--cdi-dir={cdi}", f"--host-cdi-dir={cdi}",
        ]).start()  # fmt: skip
        try:
            assert plugin.event("registration", timeout=90)["registered"] is True
            claims = f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims"
            request = {"name": "gpus", "exactly": {"deviceClassName": DRIVER, "count": 2}}
            body = {"metadata": {"name": "gpus"}, "spec": {"devices": {"requests": [request]}}}
            claim = api.request("POST", claims, what="claim", body=body)
            pod = api.request("POST", f"/api/v1/namespaces/{ns}/pods", what="pod", body={
                "metadata": {"name": "main"},
                "spec": {
                    "nodeName": name, "hostNetwork": True, "restartPolicy": "Never",
                    "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 1,
                    "resourceClaims": [{"name": "gpus", "resourceClaimName": "gpus"}],
                    "containers": [{
                        "name": "main", "image": POD_IMAGE, "imagePullPolicy": "Never",
                        "command": ["sh", "-c", "env | sort; sleep 3600"],
                        "resources": {"claims": [{"name": "gpus"}]},
                    }],
                },
            })  # fmt: skip
            results = [{"request": "gpus", "driver": DRIVER, "pool": name, "device": d}
                       for d in ("gpu-3", "gpu-4")]  # fmt: skip
            claim["status"] = {
                "allocation": {"devices": {"results": results}},
                "reservedFor": [{"resource": "pods", "name": "main",
                                 "uid": pod["metadata"]["uid"]}],
            }  # fmt: skip
            api.request("PUT", f"{claims}/gpus/status", what="allocate", body=claim)
            uid = claim["metadata"]["uid"]
            pod_path = f"/api/v1/namespaces/{ns}/pods/main"

            def running() -> bool:
                status = api.request("GET", pod_path, what="pod").get("status") or {}
                return any("running" in (c.get("state") or {})
                           for c in status.get("containerStatuses") or [])  # fmt: skip

            _wait("the pod's container did not start", running, 120, kubelet["kubelet_log"])
            logs = kubelet["logs"]

            def printed() -> dict[str, str]:
                for f in logs.glob(f"{ns}_main_*/main/0.log"):
                    lines = [x.split(" ", 3)[-1] for x in f.read_text().splitlines()]
                    env = dict(x.split("=", 1) for x in lines if "=" in x)
                    if "PATH" in env:
                        return env
                return {}

            env = _wait("the container printed no environment", printed, 30, kubelet["kubelet_log"])
            assert env["NVTOPO_GPU_UUIDS"] == f"{uuids[3]},{uuids[4]}"
            assert env["CUDA_VISIBLE_DEVICES"] == env["NVTOPO_GPU_UUIDS"]
            assert env["NVTOPO_CLAIM"] == f"{ns}/gpus"
            assert env["HOST_SPEC_GPU_3"] == uuids[3] and env["HOST_SPEC_GPU_4"] == uuids[4]
            assert "HOST_SPEC_GPU_0" not in env  # only the claim's GPUs from the host's spec
            spec = cdi / f"nvtopo.dev-claim_{uid}.json"
            assert spec.exists()

            api.request("DELETE", pod_path, what="delete pod")
            _wait("the claim was not unprepared", lambda: not spec.exists(), 90,
                  kubelet["kubelet_log"])  # fmt: skip
        finally:
            plugin.stop()
