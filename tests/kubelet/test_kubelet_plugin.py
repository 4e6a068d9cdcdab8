"""``nvtopo kubelet-plugin`` against the kubelet's own plugin manager and DRA client.

The kubelet side is a Go program built from k8s.io/kubernetes (pluginmanager: the fsnotify
watcher, reconciler and registration client; cm/dra/plugin: the DRA plugin manager and
client); claims live in the real test apiserver, allocated as the scheduler writes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

import nvtopo
from nvtopo.kube.client import RawApi
from tests.kubelet.conftest import Plugin

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

DRIVER = "gpu.nvtopo.dev"
NODE = "node-a"
SYSTEM = "dgx-h100"


def _ensure(api: RawApi, path: str, body: dict[str, Any]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        api.request("POST", path, what="create", body=body)
    except ApiException as exc:
        if exc.status != 409:
            raise


@pytest.fixture
def cluster(k8s_client: Any) -> dict[str, Any]:
    api = RawApi(k8s_client)
    ns = f"kp-{uuid.uuid4().hex[:8]}"
    _ensure(api, "/api/v1/namespaces", {"metadata": {"name": ns}})
    for node in (NODE, "node-b"):
        _ensure(api, "/api/v1/nodes", {"metadata": {"name": node}})

    def claim(name: str, devices: list[tuple[str, str]]) -> str:
        """Create claim ``name`` allocated to ``devices`` (pool, device); return its UID."""
        path = f"/apis/resource.k8s.io/v1/namespaces/{ns}/resourceclaims"
        request = {"name": "gpus", "exactly": {"deviceClassName": DRIVER, "count": len(devices)}}
        made = api.request(
            "POST",
            path,
            what="create claim",
            body={"metadata": {"name": name}, "spec": {"devices": {"requests": [request]}}},
        )
        results = [
            {"request": "gpus", "driver": DRIVER, "pool": pool, "device": device}
            for pool, device in devices
        ]
        made["status"] = {"allocation": {"devices": {"results": results}}}
        api.request("PUT", f"{path}/{name}/status", what="allocate claim", body=made)
        return str(made["metadata"]["uid"])

    return {"api": api, "ns": ns, "claim": claim}


def _host_cdi(directory: Path, uuids: list[str]) -> None:
    # What `nvidia-ctk cdi generate --device-name-strategy=uuid` writes, reduced to the names.
    devices = [
        {"name": u, "containerEdits": {"deviceNodes": [{"path": "/dev/null"}]}} for u in uuids
    ]
    spec = {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": devices}
    (directory / "nvidia.json").write_text(json.dumps(spec))


def _plugin(apiserver: Any, dirs: dict[str, Path], *extra: str, **env: str) -> Plugin:
    # A repeated --source merges reports of one node: give the default only when none is.
    given = any(arg.startswith("--source") for arg in extra)
    return Plugin(
        [
            *([] if given else [f"--source=system:{SYSTEM}"]),
            f"--node={NODE}",
            f"--driver={DRIVER}",
            f"--kubeconfig={apiserver.kubeconfig}",
            f"--plugins-registry={dirs['registry']}",
            f"--plugin-dir={dirs['plugin']}",
            f"--cdi-dir={dirs['cdi']}",
            f"--host-cdi-dir={dirs['hostcdi']}",
            *extra,
        ],
        env=env,
    )


def _uuids() -> list[str]:
    return [str(g.uuid) for g in nvtopo.system(SYSTEM).gpus]


def _one(answer: dict[str, Any], uid: str) -> dict[str, Any]:
    assert "error" not in answer, answer
    result: dict[str, Any] = answer["claims"][uid]
    return result


def _spec_env(dirs: dict[str, Path], uid: str) -> dict[str, str]:
    spec = json.loads((dirs["cdi"] / f"nvtopo.dev-claim_{uid}.json").read_text())
    assert spec["kind"] == "nvtopo.dev/claim" and spec["devices"][0]["name"] == uid
    env = spec["devices"][0]["containerEdits"]["env"]
    return dict(item.split("=", 1) for item in env)


def test_kubelet_registers_and_prepares_through_its_own_client(
    apiserver: Any, cluster: dict[str, Any], kubelet_dirs: dict[str, Path], kubelet_factory: Any
) -> None:
    uuids = _uuids()
    _host_cdi(kubelet_dirs["hostcdi"], uuids[:7])  # GPU 7 missing from the host's spec
    plugin = _plugin(apiserver, kubelet_dirs).start()
    try:
        check = plugin.event("host-cdi")
        assert check["missing"] == [uuids[7]]
        assert any(uuids[7] in line and "nvidia-ctk cdi generate" in line for line in plugin.stderr)
        serving = plugin.event("serving")
        assert serving["versions"] == ["v1.DRAPlugin", "v1beta1.DRAPlugin", "v1.DRAResourceHealth"]

        kubelet = kubelet_factory(NODE)
        assert kubelet.ask(f"wait {DRIVER} 60") == {"command": "wait", "registered": True}
        plugin.event("registration")
        assert plugin.events[-1]["registered"] is True

        ns = cluster["ns"]
        uid = cluster["claim"]("two", [(NODE, "gpu-2"), (NODE, "gpu-5")])
        answer = kubelet.ask(f"prepare {DRIVER} {ns}/two/{uid}")
        got = _one(answer, uid)
        assert not got.get("error")
        assert [(d["pool_name"], d["device_name"]) for d in got["devices"]] == [
            (NODE, "gpu-2"),
            (NODE, "gpu-5"),
        ]
        for d, gpu in zip(got["devices"], (2, 5), strict=True):
            assert d["request_names"] == ["gpus"]
            assert d["cdi_device_ids"] == [
                f"nvidia.com/gpu={uuids[gpu]}",
                f"nvtopo.dev/claim={uid}",
            ]
        env = _spec_env(kubelet_dirs, uid)
        assert env["NVTOPO_GPU_UUIDS"] == f"{uuids[2]},{uuids[5]}"
        assert env["CUDA_VISIBLE_DEVICES"] == env["NVTOPO_GPU_UUIDS"]
        assert env["NVTOPO_CLAIM"] == f"{ns}/two"
        assert env["NVLINK_DOMAIN_SIZE"] == "8" and "NCCL_IB_HCA" in env
        assert "NCCL_MNNVL_ENABLE" not in env  # a DGX H100 is in no multi-node clique

        again = _one(kubelet.ask(f"prepare {DRIVER} {ns}/two/{uid}"), uid)
        assert again == got  # idempotent

        health = kubelet.ask("health 10")["updates"]
        assert {(u["device"], u["health"]) for u in health} >= {("gpu-0", "HEALTHY")}

        done = _one(kubelet.ask(f"unprepare {DRIVER} {ns}/two/{uid}"), uid)
        assert not done.get("error")
        assert not (kubelet_dirs["cdi"] / f"nvtopo.dev-claim_{uid}.json").exists()
        checkpoint = json.loads((kubelet_dirs["plugin"] / "checkpoint.json").read_text())
        assert checkpoint["claims"] == []
        assert not _one(kubelet.ask(f"unprepare {DRIVER} {ns}/two/{uid}"), uid).get("error")
    finally:
        assert plugin.stop() == 0
    assert not (kubelet_dirs["registry"] / f"{DRIVER}-reg.sock").exists()


def test_claims_of_another_node_or_unknown_devices_are_refused_per_claim(
    apiserver: Any, cluster: dict[str, Any], kubelet_dirs: dict[str, Path], kubelet_factory: Any
) -> None:
    _host_cdi(kubelet_dirs["hostcdi"], _uuids())
    plugin = _plugin(apiserver, kubelet_dirs).start()
    try:
        kubelet = kubelet_factory(NODE)
        assert kubelet.ask(f"wait {DRIVER} 60").get("registered")
        ns = cluster["ns"]
        other = cluster["claim"]("other", [("node-b", "gpu-0")])
        unknown = cluster["claim"]("unknown", [(NODE, "gpu-42")])
        good = cluster["claim"]("good", [(NODE, "gpu-1")])
        answer = kubelet.ask(
            f"prepare {DRIVER} {ns}/other/{other} {ns}/unknown/{unknown} {ns}/good/{good} "
            f"{ns}/absent/{uuid.uuid4()}"
        )
        claims = answer["claims"]
        assert "belongs to node node-b, not to this node node-a" in claims[other]["error"]
        assert "device gpu-42 is not a GPU of node node-a" in claims[unknown]["error"]
        assert not claims[good].get("error") and len(claims[good]["devices"]) == 1
        assert any("not found" in c.get("error", "") for c in claims.values())
        names = sorted(p.name for p in kubelet_dirs["cdi"].iterdir())
        assert names == [f"nvtopo.dev-claim_{good}.json"]
    finally:
        plugin.stop()


def test_older_kubelet_api_v1beta1(
    apiserver: Any, cluster: dict[str, Any], kubelet_dirs: dict[str, Path], kubelet_factory: Any
) -> None:
    _host_cdi(kubelet_dirs["hostcdi"], _uuids())
    plugin = _plugin(apiserver, kubelet_dirs, "--kubelet-api=v1beta1", "--no-health").start()
    try:
        assert plugin.event("serving")["versions"] == ["v1beta1.DRAPlugin"]
        kubelet = kubelet_factory(NODE)
        assert kubelet.ask(f"wait {DRIVER} 60").get("registered")
        uid = cluster["claim"]("beta", [(NODE, "gpu-0")])
        got = _one(kubelet.ask(f"prepare {DRIVER} {cluster['ns']}/beta/{uid}"), uid)
        assert got["devices"][0]["cdi_device_ids"][0] == f"nvidia.com/gpu={_uuids()[0]}"
    finally:
        plugin.stop()


def test_kill_between_spec_and_checkpoint_converges_after_restart(
    apiserver: Any, cluster: dict[str, Any], kubelet_dirs: dict[str, Path], kubelet_factory: Any
) -> None:
    _host_cdi(kubelet_dirs["hostcdi"], _uuids())
    ns = cluster["ns"]
    kept = cluster["claim"]("kept", [(NODE, "gpu-3")])
    torn = cluster["claim"]("torn", [(NODE, "gpu-4")])
    plugin = _plugin(apiserver, kubelet_dirs).start()
    kubelet = kubelet_factory(NODE)
    assert kubelet.ask(f"wait {DRIVER} 60").get("registered")
    first = _one(kubelet.ask(f"prepare {DRIVER} {ns}/kept/{kept}"), kept)
    plugin.stop()

    crashing = _plugin(apiserver, kubelet_dirs, NVTOPO_KUBELET_FAILPOINT="after-spec-write")
    crashing.start()
    assert crashing.event("registration")["registered"] is True
    assert kubelet.ask(f"wait {DRIVER} 60").get("registered")
    answer = kubelet.ask(f"prepare {DRIVER} {ns}/torn/{torn}")
    assert "error" in answer  # the plugin died mid-call: the kubelet got no answer
    assert crashing.proc is not None and crashing.proc.wait(timeout=10) == -9
    assert crashing.stop() == -9
    assert (kubelet_dirs["cdi"] / f"nvtopo.dev-claim_{torn}.json").exists()

    restarted = _plugin(apiserver, kubelet_dirs).start()
    try:
        recovered = restarted.event("recovered")
        assert recovered["prepared"] == [kept]
        assert recovered["removed"] == [str(kubelet_dirs["cdi"] / f"nvtopo.dev-claim_{torn}.json")]
        assert restarted.event("registration")["registered"] is True
        assert kubelet.ask(f"wait {DRIVER} 60").get("registered")
        assert _one(kubelet.ask(f"prepare {DRIVER} {ns}/kept/{kept}"), kept) == first
        retried = _one(kubelet.ask(f"prepare {DRIVER} {ns}/torn/{torn}"), torn)
        assert not retried.get("error") and retried["devices"][0]["device_name"] == "gpu-4"
        assert sorted(p.name for p in kubelet_dirs["cdi"].iterdir()) == sorted(
            f"nvtopo.dev-claim_{u}.json" for u in (kept, torn)
        )
    finally:
        restarted.stop()


def test_two_prepares_at_once_and_a_kubelet_restart(
    apiserver: Any, cluster: dict[str, Any], kubelet_dirs: dict[str, Path], kubelet_factory: Any
) -> None:
    _host_cdi(kubelet_dirs["hostcdi"], _uuids())
    ns = cluster["ns"]
    uid = cluster["claim"]("race", [(NODE, "gpu-6"), (NODE, "gpu-7")])
    plugin = _plugin(apiserver, kubelet_dirs).start()
    try:
        kubelet = kubelet_factory(NODE)
        assert kubelet.ask(f"wait {DRIVER} 60").get("registered")
        answers = kubelet.ask(f"parallel 8 {DRIVER} {ns}/race/{uid}")["answers"]
        assert len(answers) == 8
        assert all(a == answers[0] for a in answers)
        assert not answers[0][uid].get("error") and len(answers[0][uid]["devices"]) == 2
        checkpoint = json.loads((kubelet_dirs["plugin"] / "checkpoint.json").read_text())
        assert [c["uid"] for c in checkpoint["claims"]] == [uid]

        kubelet.close()  # the kubelet restarts: a new plugin manager registers the plugin again
        restarted = kubelet_factory(NODE)
        assert restarted.ask(f"wait {DRIVER} 60").get("registered")
        same = _one(restarted.ask(f"prepare {DRIVER} {ns}/race/{uid}"), uid)
        assert same == answers[0][uid]
    finally:
        plugin.stop()


def test_a_full_disk_fails_the_claim_cleanly(
    apiserver: Any, cluster: dict[str, Any], kubelet_dirs: dict[str, Path], kubelet_factory: Any
) -> None:
    _host_cdi(kubelet_dirs["hostcdi"], _uuids())
    cdi = kubelet_dirs["cdi"]
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(cdi)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tiny tmpfs (needs root): {mounted.stderr.decode().strip()}")
    try:
        (cdi / "filler").write_bytes(os.urandom(4096))
        ns = cluster["ns"]
        uid = cluster["claim"]("full", [(NODE, "gpu-0")])
        plugin = _plugin(apiserver, kubelet_dirs).start()
        try:
            kubelet = kubelet_factory(NODE)
            assert kubelet.ask(f"wait {DRIVER} 60").get("registered")
            got = _one(kubelet.ask(f"prepare {DRIVER} {ns}/full/{uid}"), uid)
            assert "cannot write the CDI spec: No space left on device" in got["error"]
            assert sorted(p.name for p in cdi.iterdir()) == ["filler"]
            (cdi / "filler").unlink()  # space again: the kubelet's retry succeeds
            got = _one(kubelet.ask(f"prepare {DRIVER} {ns}/full/{uid}"), uid)
            assert not got.get("error") and got["devices"][0]["device_name"] == "gpu-0"
        finally:
            plugin.stop()
    finally:
        subprocess.run(["umount", str(cdi)], check=True)


def test_a_gpu_whose_nvlinks_go_down_reaches_the_kubelet_as_unhealthy(
    apiserver: Any, kubelet_dirs: dict[str, Path], kubelet_factory: Any
) -> None:
    from dataclasses import replace

    from nvtopo.formats.jsonio import node_to_json

    topology = nvtopo.system(SYSTEM)
    source = kubelet_dirs["plugin"].parent / "node.json"

    def capture(t: Any) -> str:
        doc = node_to_json(t)
        doc.pop("system", None)  # a capture of this node, not the catalog's system
        return json.dumps(doc)

    source.write_text(capture(topology))
    _host_cdi(kubelet_dirs["hostcdi"], _uuids())
    plugin = _plugin(apiserver, kubelet_dirs, f"--source=file:{source}", "--interval=0.2")
    plugin.start()
    try:
        kubelet = kubelet_factory(NODE)
        assert kubelet.ask(f"wait {DRIVER} 60").get("registered")
        first = kubelet.ask("health 20")["updates"]
        assert {u["health"] for u in first} == {"HEALTHY"} and len(first) == 8
        gpu = topology.gpu(6)
        links = tuple(replace(x, state="down") if x.link < 2 else x for x in gpu.nvlinks)
        down = replace(gpu, nvlinks=links)
        broken = topology.replace_gpus(down if g.index == 6 else g for g in topology.gpus)
        source.write_text(capture(broken))
        assert plugin.event("health")["device"] == "gpu-6"
        deadline = 50
        while deadline:
            updates = kubelet.ask("health 1")["updates"]
            sick = [u for u in updates if u["health"] == "UNHEALTHY"]
            if sick:
                break
            deadline -= 1
        assert [(u["pool"], u["device"]) for u in sick] == [(NODE, "gpu-6")]
        assert sick[0]["message"] == "NVLinks 0, 1 down"
    finally:
        plugin.stop()
