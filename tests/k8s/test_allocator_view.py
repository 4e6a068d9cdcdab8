"""The allocator reads slices and claims from the watched view it shares with the placement
service, and that view's lag never hands out a device twice.

The view here is frozen on purpose (stopped after its first sync), so it misses what
happens next: a claim allocated behind its back, and the allocator's own writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiClient

import nvtopo
from nvtopo.allocator.gang import gated
from nvtopo.kube.view import ClusterView

from .allocator_env import RESOURCE, Env, devices_in_claims, make_env, wait_for

pytestmark = pytest.mark.k8s


@pytest.fixture
def env(apiserver: Any, k8s_client: ApiClient, scheduler: Any, controller_manager: Any) -> Env:
    from nvtopo.kube.client import RawApi

    return make_env(RawApi(k8s_client), apiserver)


@pytest.fixture
def view(env: Env) -> Iterator[ClusterView]:
    with ClusterView(env.api.client, driver=env.driver) as v:
        assert v.wait_synced(timeout=30)
        yield v


def _tray(env: Env, view: ClusterView) -> str:
    node = nvtopo.cluster("gb200-nvl72x3").nodes[0]
    env.publish(nvtopo.Cluster((node,)))
    wait_for("the view to see the node", lambda: view.snapshot().cluster.nodes)
    return node.name


def _claim(env: Env, name: str, gpus: int) -> None:
    exactly = {"deviceClassName": env.driver, "allocationMode": "ExactCount", "count": gpus}
    env.api.request(
        "POST",
        f"{RESOURCE}/namespaces/{env.namespace}/resourceclaims",
        what="claim",
        body={
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceClaim",
            "metadata": {"name": name, "namespace": env.namespace},
            "spec": {"devices": {"requests": [{"name": "gpus", "exactly": exactly}]}},
        },
    )


def _seen(view: ClusterView, env: Env, *claims: str) -> None:
    def probe() -> bool:
        names = {
            c["metadata"]["name"]
            for c in view.snapshot().claims
            if c["metadata"]["namespace"] == env.namespace
        }
        return set(claims) <= names

    wait_for(f"the view to see {claims}", probe)


def _recording(worker: Any) -> list[tuple[str, str]]:
    """(method, path) of each request the allocator makes; later pages of a list left out."""
    calls: list[tuple[str, str]] = []
    request = worker.api.request

    def record(method: str, path: str, **kwargs: Any) -> Any:
        if not any(k == "continue" for k, _ in kwargs.get("query") or ()):
            calls.append((method, path))
        return request(method, path, **kwargs)

    worker.api.request = record
    return calls


def test_a_pass_reads_the_shared_view_not_the_slices(env: Env, view: ClusterView) -> None:
    _tray(env, view)
    env.template("two", 2)
    pods = env.gang("a", 1, "two")
    wait_for("the claim", lambda: env.claim_of(env.pods(pods)[0]))
    _seen(view, env, env.claim_of(env.pods(pods)[0])["metadata"]["name"])  # type: ignore[index]
    lists = view.stats["lists"]
    worker = env.allocator(view=view)
    calls = _recording(worker)
    result = worker.run_once()
    # The allocator sees the whole cluster: gated pods other tests left behind may be
    # handled in the same pass; only this namespace's gang is checked.
    assert f"{env.namespace}/a" in result.placed, result
    gets = [path for method, path in calls if method == "GET"]
    assert not [p for p in gets if "resourceslices" in p], gets
    # A quorum read of the claims right before each gang's writes (the view may lag), and
    # one per pass for journals left by a crash: nothing else.
    fresh = len([p for p in gets if p.endswith("/resourceclaims")])
    assert 1 <= fresh <= len(result.placed) + 1, gets
    worker.close()  # a shared view is not the allocator's to stop
    assert view.stats["lists"] == lists
    env.bound(pods)
    wait_for(
        "the view to see the allocation",
        lambda: any(
            (c.get("status") or {}).get("allocation")
            for c in view.snapshot().claims
            if c["metadata"]["namespace"] == env.namespace
        ),
    )


def test_a_claim_the_view_missed_is_not_given_twice(env: Env, view: ClusterView) -> None:
    node = _tray(env, view)
    _claim(env, "four", 4)
    _seen(view, env, "four")
    view.stop()  # frozen: it will not see the next claim
    env.occupy(node, ["gpu-2"])
    env.pod("wants-4", "", claim="four")
    result = env.allocator(view=view).run_once()
    assert f"{env.namespace}/wants-4" not in result.placed, result
    [pod] = env.pods(["wants-4"])
    assert gated(pod)
    used = devices_in_claims(env.claims(), env.driver)
    assert len(used) == len(set(used)) == 1
    # A view that is up to date refuses it with the reason instead.
    fresh = env.allocator()
    try:
        result = fresh.run_once()
    finally:
        fresh.close()
    assert f"{env.namespace}/wants-4" in result.refused, result


def test_own_writes_count_before_the_view_echoes_them(env: Env, view: ClusterView) -> None:
    _tray(env, view)
    _claim(env, "ca", 2)
    _claim(env, "cb", 2)
    _seen(view, env, "ca", "cb")
    view.stop()  # frozen: it will not see the allocator's own writes either
    worker = env.allocator(view=view)
    env.pod("a", "", claim="ca")
    assert worker.run_once().placed == [f"{env.namespace}/a"]
    env.pod("b", "", claim="cb")
    # Planned on the frozen view, b would take a's GPUs and be turned back by the fresh
    # read; the allocator's own write is overlaid until the view echoes it.
    result = worker.run_once()
    assert f"{env.namespace}/b" in result.placed, result
    used = devices_in_claims(env.claims(), env.driver)
    assert len(used) == len(set(used)) == 4
    env.bound(["a", "b"])
