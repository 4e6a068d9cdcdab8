"""The node agent refuses to publish GPUs that another DRA driver already publishes."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

import nvtopo
from nvtopo.cli.kubelet_plugin import kubelet_plugin
from nvtopo.kube.client import RESOURCE_SLICES, RawApi

REPO = Path(__file__).resolve().parents[2]


def _publish(apiserver: Any, node: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["publish", "--source", "system:dgx-h100", "--node", node,
            "--kubeconfig", str(apiserver.kubeconfig), *extra]  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "nvtopo", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


@pytest.mark.k8s
def test_publish_refuses_gpus_another_driver_publishes(apiserver: Any, k8s_client: Any) -> None:
    api = RawApi(k8s_client)
    node = f"coex-{uuid.uuid4().hex[:6]}"
    gpu = nvtopo.system("dgx-h100").gpus[3]
    theirs = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{node}-gpu.nvidia.com"},
        "spec": {
            "driver": "gpu.nvidia.com",
            "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": [{"name": "gpu-3", "attributes": {"uuid": {"string": gpu.uuid}}}],
        },
    }
    made = api.request("POST", RESOURCE_SLICES, what="create", body=theirs)
    try:
        for mode in (["--once"], ["--interval", "5"]):  # watch mode refuses too, not retrying
            done = _publish(apiserver, node, *mode)
            assert done.returncode == 1, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in done.stderr
            assert f"DRA driver gpu.nvidia.com already publishes GPU {gpu.uuid}" in lines[0]
            assert "Turn off gpu.nvidia.com's GPU kubelet plugin" in lines[0]
        listed = api.list(RESOURCE_SLICES, what="list", field_selector=f"spec.nodeName={node}")
        assert {s["spec"]["driver"] for s in listed} == {"gpu.nvidia.com"}  # nothing published
    finally:
        api.request("DELETE", RawApi.item(RESOURCE_SLICES, made["metadata"]["name"]), what="rm")
    done = _publish(apiserver, node, "--once", "--format", "json")
    assert done.returncode == 0, done.stderr
    listed = api.list(RESOURCE_SLICES, what="list", field_selector=f"spec.nodeName={node}")
    for s in listed:
        api.request("DELETE", RawApi.item(RESOURCE_SLICES, s["metadata"]["name"]), what="rm")


def test_the_daemonset_runs_the_kubelet_plugin_beside_the_publisher() -> None:
    [ds] = list(yaml.safe_load_all((REPO / "deploy" / "daemonset.yaml").read_text()))
    spec = ds["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in spec["containers"]}
    plugin = containers["kubelet-plugin"]
    assert plugin["command"] == ["nvtopo"] and plugin["args"][0] == "kubelet-plugin"
    kubelet_plugin.make_context("kubelet-plugin", list(plugin["args"][1:]))  # the CLI takes them
    mounts = {m["mountPath"] for m in plugin["volumeMounts"]}
    assert {"/var/lib/kubelet/plugins_registry", "/var/run/cdi"} <= mounts
    assert "/var/lib/kubelet/plugins/gpu.nvtopo.dev" in mounts  # the default --plugin-dir
