"""Partly used nodes: seeded allocate/free sequences on one node of several catalog systems,
each allocation a gated pod whose claim the allocator fills and the real scheduler binds.
Every allocation must be Contract 1's optimum among the GPUs free at that moment (100%);
the static ``set<k>`` claims through the stock scheduler are measured beside it in
``benches/bench_allocator.py``.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from kubernetes.client import ApiClient

import nvtopo
from nvtopo.kube.client import RawApi

from .allocator_env import Env, make_env, wait_for

pytestmark = pytest.mark.k8s

SYSTEMS = ["dgx1-v100", "dgx-h100", "hgx-b200", "pcie-8x-l40s", "dgx2-v100"]
STEPS = 12


@pytest.fixture
def env(apiserver: Any, k8s_client: ApiClient, scheduler: Any, controller_manager: Any) -> Env:
    return make_env(RawApi(k8s_client), apiserver)


def _claim(env: Env, name: str, k: int) -> None:
    exactly = {"deviceClassName": env.driver, "allocationMode": "ExactCount", "count": k}
    env.api.request(
        "POST",
        f"/apis/resource.k8s.io/v1/namespaces/{env.namespace}/resourceclaims",
        what="claim",
        body={
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": env.namespace},
            "spec": {"devices": {"requests": [{"name": "gpus", "exactly": exactly}]}},
        },
    )


@pytest.mark.parametrize("seed", [7, 8])
@pytest.mark.parametrize("system", SYSTEMS)
def test_partly_used_node_sequences_are_optimal(env: Env, system: str, seed: int) -> None:
    topology = nvtopo.system(system)
    node = f"n-{uuid.uuid4().hex[:6]}"
    env.publish(nvtopo.Cluster((nvtopo.ClusterNode(node, topology),)))
    index = {f"gpu-{g.minor if g.minor is not None else g.index}": g.index for g in topology.gpus}
    rng = random.Random(f"{system}-{seed}")
    held: dict[str, tuple[int, ...]] = {}
    free = set(topology.gpu_indices)
    checked = 0
    with env.running():
        for step in range(STEPS):
            if held and (not free or rng.random() < 0.35):
                name = rng.choice(sorted(held))
                env.delete_pod(name)
                env.release(name)
                wait_for(f"claim {name} gone", lambda n=name: env.claim_of_name(n) is None)
                free |= set(held.pop(name))
                continue
            k = rng.randint(1, len(free))
            expected = nvtopo.select_gpus(topology, k, available=sorted(free)).gpus
            name = f"s{step}"
            _claim(env, name, k)
            env.pod(name, "", claim=name)
            [bound] = env.bound([name]).values()
            assert bound == node
            claim = env.claim_of_name(name)
            assert claim is not None
            got = tuple(
                sorted(
                    index[r["device"]] for r in claim["status"]["allocation"]["devices"]["results"]
                )
            )
            assert got == expected, f"step {step}: k={k} free={sorted(free)}"
            held[name] = got
            free -= set(got)
            checked += 1
    assert checked >= STEPS // 2
