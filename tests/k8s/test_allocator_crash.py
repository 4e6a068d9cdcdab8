"""All or nothing across a crash: ``nvtopo allocator`` killed after the first, a middle and
the last claim write of a gang (the process ends abruptly, as under SIGKILL), then
restarted: the gang ends fully allocated and bound, or fully released.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from kubernetes.client import ApiClient

import nvtopo
from nvtopo.allocator import JOURNAL_ANNOTATION
from nvtopo.allocator.gang import gated
from nvtopo.kube.client import RawApi

from .allocator_env import Env, devices_in_claims, make_env, wait_for

pytestmark = pytest.mark.k8s

GANG = 4


@pytest.fixture
def env(apiserver: Any, k8s_client: ApiClient, scheduler: Any, controller_manager: Any) -> Env:
    env = make_env(RawApi(k8s_client), apiserver)
    env.publish(nvtopo.Cluster(nvtopo.cluster("gb200-nvl72x3").nodes[:6]))
    env.template("four", 4)
    return env


def _crash_after(env: Env, writes: int) -> None:
    """Run the CLI until it dies right after claim write number ``writes``."""
    proc = subprocess.run(
        [
            sys.executable, "-m", "nvtopo", "allocator", "--kubeconfig", str(env.plane.kubeconfig),
            "--driver", env.driver, "--topology-driver", env.driver, "--interval", "0.05",
        ],
        env={**os.environ, "NVTOPO_ALLOCATOR_EXIT_AFTER_CLAIM": str(writes)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 137, proc.stderr[-2000:]


def _allocated(env: Env, pods: list[str]) -> int:
    return sum(
        1
        for p in env.pods(pods)
        if (c := env.claim_of(p)) is not None and (c.get("status") or {}).get("allocation")
    )


def _ready(env: Env, pods: list[str]) -> None:
    wait_for("the gang's claims", lambda: all(env.claim_of(p) for p in env.pods(pods)))


@pytest.mark.parametrize("writes", [1, GANG // 2, GANG], ids=["first", "middle", "last"])
def test_killed_mid_gang_then_finished(env: Env, writes: int) -> None:
    pods = env.gang("job", GANG, "four")
    _ready(env, pods)
    _crash_after(env, writes)
    # Cut short: the journal is there, exactly `writes` claims hold devices, no pod is bound.
    assert _allocated(env, pods) == writes
    found = env.pods(pods)
    assert all(gated(p) and not p["spec"].get("nodeName") for p in found)
    assert sum(JOURNAL_ANNOTATION in (p["metadata"].get("annotations") or {}) for p in found) == 1
    with env.running():
        nodes = env.bound(pods)
    assert len(set(nodes.values())) == GANG
    assert _allocated(env, pods) == GANG
    assert not any(
        JOURNAL_ANNOTATION in (p["metadata"].get("annotations") or {}) for p in env.pods(pods)
    )
    used = devices_in_claims(env.claims(), env.driver)
    assert len(used) == len(set(used)) == GANG * 4


def test_killed_mid_gang_then_rolled_back(env: Env) -> None:
    pods = env.gang("job", GANG, "four")
    _ready(env, pods)
    _crash_after(env, 2)
    journal_pod = next(
        p for p in env.pods(pods) if JOURNAL_ANNOTATION in (p["metadata"].get("annotations") or {})
    )
    from nvtopo.allocator.journal import decode

    journal = decode(
        journal_pod["metadata"]["annotations"][JOURNAL_ANNOTATION],
        namespace=env.namespace,
        where="t",
    )
    # While the allocator was down, someone took a device it had planned but not written.
    unwritten = [
        c
        for c in journal.claims
        if not ((env.claim_of_name(c.claim) or {}).get("status") or {}).get("allocation")
    ]
    _, _, pool, device = unwritten[0].results[0]
    env.occupy(pool, [device])
    result = env.allocator().run_once()
    assert result.rolled_back and not result.finished
    assert _allocated(env, pods) == 0  # fully released
    assert all(gated(p) for p in env.pods(pods))
    with env.running():
        nodes = env.bound(pods)  # placed again, around the taken device
    assert len(set(nodes.values())) == GANG
    used = devices_in_claims(env.claims(), env.driver)
    assert len(used) == len(set(used))
