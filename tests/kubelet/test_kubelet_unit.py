"""The kubelet plugin's parts without a kubelet: checkpoint, CDI files, environment, health."""

from __future__ import annotations

import errno
import itertools
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

import nvtopo
from nvtopo.kubelet.cdi import claim_spec, host_gpu_names, spec_path, stale_specs
from nvtopo.kubelet.cdi import write_claim_spec as write_spec
from nvtopo.kubelet.checkpoint import Checkpoint, PreparedClaim, atomic_write
from nvtopo.kubelet.environment import claim_environment, nic_per_gpu, ring_order
from nvtopo.kubelet.errors import CdiError, CheckpointError
from nvtopo.kubelet.health import HealthFeed
from nvtopo.model import Fabric, NvLink


def _entry(uid: str) -> PreparedClaim:
    device = {"requests": ["gpus"], "pool": "n", "device": "gpu-0", "cdi": ["nvidia.com/gpu=U"]}
    return PreparedClaim(uid, "ns", "c", (device,), f"/cdi/{uid}.json")


def test_checkpoint_round_trip_and_version(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    assert Checkpoint.load(path).claims == {}
    cp = Checkpoint(path, {"a": _entry("a"), "b": _entry("b")})
    cp.save()
    again = Checkpoint.load(path)
    assert again.claims == cp.claims
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["kind"] == "KubeletPluginCheckpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]  # no temporaries left


def test_checkpoint_refuses_a_changed_or_newer_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    Checkpoint(path, {"a": _entry("a")}).save()
    doc = json.loads(path.read_text())
    doc["claims"][0]["name"] = "other"
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        Checkpoint.load(path)
    doc["version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="version 99"):
        Checkpoint.load(path)
    path.write_text('{"kind": "KubeletPluginCheckpoint"')  # cut short
    with pytest.raises(CheckpointError, match="not a kubelet plugin checkpoint"):
        Checkpoint.load(path)


def test_atomic_write_on_a_full_disk_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoint.json"
    atomic_write(path, b"old\n")

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, b"new\n")
    assert path.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.json"]
    with pytest.raises(CdiError, match="cannot write the CDI spec: No space left"):
        write_spec(tmp_path, "uid-1", {"A": "1"})
    assert not spec_path(tmp_path, "uid-1").exists()


def test_stale_specs_are_the_unowned_and_the_half_written(tmp_path: Path) -> None:
    write_spec(tmp_path, "kept", {"A": "1"})
    write_spec(tmp_path, "orphan", {"A": "1"})
    (tmp_path / ".nvtopo.dev-claim_x.json.abc.tmp").write_text("{")
    (tmp_path / "nvidia.yaml").write_text("kind: nvidia.com/gpu\n")
    found = {p.name for p in stale_specs(tmp_path, ["kept"])}
    assert found == {"nvtopo.dev-claim_orphan.json", ".nvtopo.dev-claim_x.json.abc.tmp"}


def test_claim_spec_is_cdi_with_the_environment() -> None:
    spec = claim_spec("u1", {"B": "2", "A": "1"})
    assert spec["kind"] == "nvtopo.dev/claim" and spec["cdiVersion"] == "0.6.0"
    assert spec["devices"] == [{"name": "u1", "containerEdits": {"env": ["A=1", "B=2"]}}]


def test_host_gpu_names_reads_nvidia_specs(tmp_path: Path) -> None:
    (tmp_path / "nvidia.yaml").write_text(
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: '0'\n- name: GPU-abc\n"
    )
    (tmp_path / "other.json").write_text('{"kind": "vendor.com/x", "devices": [{"name": "z"}]}')
    (tmp_path / "broken.yaml").write_text("kind: [\n")
    names, problems = host_gpu_names([tmp_path, tmp_path / "absent"])
    assert names == {"0", "GPU-abc"}
    assert len(problems) == 1 and "broken.yaml" in problems[0]


def test_ring_order_follows_nvlinks_on_a_hybrid_cube_mesh() -> None:
    t = nvtopo.system("dgx1-v100")
    ring = ring_order(t, [0, 1, 2, 3])
    # every step of the ring is an NVLink hop
    assert all(t.pair(a, b).nvlinks > 0 for a, b in itertools.pairwise(ring))
    assert ring_order(nvtopo.system("dgx-h100"), [5, 2, 7]) == (2, 5, 7)


def test_environment_has_nccl_hints_only_for_a_shared_healthy_clique() -> None:
    tray = nvtopo.system("gb200-tray")
    assert tray.clique is not None
    env = claim_environment(tray, [0, 1], namespace="ns", name="c")
    assert env["NVTOPO_CLIQUE"] == tray.clique
    assert env["NCCL_MNNVL_ENABLE"] == env["NCCL_CUMEM_ENABLE"] == "1"
    assert env["NVLINK_DOMAIN_SIZE"] == str(len(tray.gpus))
    uuids = [tray.gpu(i).uuid for i in (0, 1)]
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVTOPO_GPU_UUIDS"] == ",".join(uuids)
    # GPU 1 leaves the clique (fabric unhealthy): no multi-node NVLink hints any more
    sick = tray.gpu(1)
    assert sick.fabric is not None
    broken = tray.replace_gpus(
        g if g.index != 1 else replace(g, fabric=replace(sick.fabric, health="unhealthy"))
        for g in tray.gpus
    )
    env = claim_environment(broken, [0, 1], namespace="ns", name="c")
    assert "NCCL_MNNVL_ENABLE" not in env and "NVTOPO_CLIQUE" not in env


def test_environment_names_the_nearest_nic_of_each_gpu() -> None:
    t = nvtopo.system("dgx-h100")
    nics = nic_per_gpu(t)
    assert len(nics) == len(t.gpus) and len(set(nics.values())) > 1
    env = claim_environment(t, [0, 1], namespace="ns", name="c")
    assert env["NCCL_IB_HCA"].split(",") == list(dict.fromkeys([nics[0], nics[1]]))
    assert "NCCL_MNNVL_ENABLE" not in env
    assert env["NVLINK_DOMAIN_SIZE"] == "8"


def test_health_feed_streams_changes_only() -> None:
    t = nvtopo.system("dgx-h100")
    feed = HealthFeed(t, poll=0.05)
    assert all(s.healthy for s in feed.snapshot())
    stream = feed.follow(lambda: True)
    first = next(stream)
    assert len(first) == 8
    g = t.gpu(3)
    down = replace(g, nvlinks=(NvLink(0, state="down"), *g.nvlinks[1:]))
    changed = feed.update(t.replace_gpus(down if x.index == 3 else x for x in t.gpus))
    assert [s.device for s in changed] == ["gpu-3"]
    batch = next(stream)
    assert [(s.device, s.healthy) for s in batch] == [("gpu-3", False)]
    assert batch[0].message == "NVLink 0 down"
    sick = replace(t.gpu(0), fabric=Fabric(health="unhealthy"))
    assert not feed.update(t.replace_gpus(sick if x.index == 0 else x for x in t.gpus))[0].healthy
    feed.close()
    assert list(stream) == []  # a closed feed ends its followers


def test_docstring_examples_run() -> None:
    import doctest

    from nvtopo.kubelet import environment

    result = doctest.testmod(environment)
    assert result.attempted > 0 and result.failed == 0
