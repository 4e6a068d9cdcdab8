"""kubectl's manners against the real apiserver: ``--dry-run``, opt-in ``--prune``, one client
that retries 429 for ComputeDomains too, TLS failures not retried, interrupted applies that
say what they left."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

import nvtopo
from nvtopo import compute_domain
from nvtopo.cli import main
from nvtopo.compute_domain import ComputeDomainError, ComputeDomainInterrupted
from nvtopo.dra.publish import publish
from nvtopo.kube.client import RESOURCE_SLICES, RawApi
from nvtopo.kube.retry import KubeApiError, RetryPolicy
from tests.k8s import test_compute_domain_apiserver as _cd
from tests.k8s.faultproxy import FaultProxy

# The ComputeDomain tests' fixtures: the CRD installed, a namespace of the test's own, racks.
crd = _cd.crd
namespace = _cd.namespace
racks = _cd.racks
_objects = _cd._objects

pytestmark = pytest.mark.k8s


@pytest.fixture
def driver(k8s_client: ApiClient) -> Iterator[str]:
    name = f"m{uuid.uuid4().hex[:8]}.nvtopo.dev"
    yield name
    api = RawApi(k8s_client)
    for s in api.list(RESOURCE_SLICES, what="cleanup", field_selector=f"spec.driver={name}"):
        api.request("DELETE", RawApi.item(RESOURCE_SLICES, s["metadata"]["name"]), what="cleanup")


def _pools(k8s_client: ApiClient, driver: str) -> set[str]:
    api = RawApi(k8s_client)
    found = api.list(RESOURCE_SLICES, what="list", field_selector=f"spec.driver={driver}")
    return {s["spec"]["pool"]["name"] for s in found}


def test_publishing_a_cluster_prunes_other_pools_only_when_asked(
    apiserver: Any, k8s_client: ApiClient, driver: str, tmp_path: Path, capsys: Any
) -> None:
    rack = nvtopo.cluster("gb200-nvl72")
    publish(k8s_client, rack, driver=driver)
    assert len(_pools(k8s_client, driver)) == 18
    # A cluster file that misses nodes: the CLI leaves their pools alone...
    small = tmp_path / "small.json"
    assert main(["dump", "-s", "system:gb200-nvl72", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    doc["nodes"] = doc["nodes"][:3]
    small.write_text(json.dumps(doc))
    base = ["publish", "-s", f"file:{small}", "--driver", driver,
            "--kubeconfig", str(apiserver.kubeconfig), "--once", "-o", "json"]  # fmt: skip
    assert main(base) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == 0
    assert len(_pools(k8s_client, driver)) == 18
    # ...and --prune deletes them.
    assert main([*base, "--prune"]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == 15
    assert _pools(k8s_client, driver) == {n.name for n in rack.nodes[:3]}


@pytest.mark.usefixtures("crd")
def test_server_dry_run_validates_and_stores_nothing(
    apiserver: Any,
    k8s_client: ApiClient,
    namespace: str,
    capsys: Any,
) -> None:
    argv = ["compute-domain", "apply", "-s", "system:gb200-nvl72x2", "--name", "dry", "-k", "8",
            "--kubeconfig", str(apiserver.kubeconfig), "-n", namespace]  # fmt: skip
    assert main([*argv, "--dry-run=server", "-o", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    kinds = [o["kind"] for o in listed["items"]]
    assert kinds == ["ComputeDomain", "ResourceClaimTemplate", "Job"]
    # The server's answers: defaults filled in (a uid), yet nothing is stored.
    assert all(o["metadata"].get("uid") for o in listed["items"])
    assert _objects(k8s_client, namespace) == {
        "ComputeDomain": [], "ResourceClaimTemplate": [], "Job": []
    }  # fmt: skip
    assert main([*argv, "--dry-run=client"]) == 0
    out = capsys.readouterr().out
    assert f"ComputeDomain {namespace}/dry created (client dry run)" in out
    # The server's checks run in a server dry run: a namespace that does not exist fails.
    gone = [*argv[:-1], "absent-ns", "--dry-run=server"]
    assert main(gone) == 1
    last = capsys.readouterr().err.splitlines()[-1]  # after the plan's summary
    assert last.startswith("nvtopo: error: ") and "404" in last and "absent-ns" in last


@pytest.mark.usefixtures("crd")
def test_compute_domain_apply_retries_429_through_the_fault_proxy(
    apiserver: Any,
    k8s_client: ApiClient,
    namespace: str,
    racks: nvtopo.Cluster,
) -> None:
    plan = compute_domain.plan(racks, name="busy", namespace=namespace, gpus=8, nodes=2)
    with FaultProxy(apiserver.url, apiserver.ca_file) as proxy:
        proxy.fail(429, times=2, method="POST", retry_after="0")
        proxy.fail(503, times=1, method="GET")
        via = proxy.client(apiserver.token)
        try:
            done = compute_domain.apply(plan, via, wait=False, progress=False)
            assert proxy.count(injected=True) == 3
            assert len(done.created) == 3
            assert _objects(k8s_client, namespace)["Job"] == ["busy"]
            # A 429 that stays is one line naming the object, after the policy's tries.
            proxy.fail(429, times=100, method="DELETE", retry_after="0")
            fast = RetryPolicy(attempts=3, base=0.01, max_delay=0.02)
            with pytest.raises(ComputeDomainError) as refused:
                compute_domain.delete("busy", namespace, via, retry=fast)
            message = str(refused.value)
            assert "429" in message and "gave up after 3 tries" in message
            assert "\n" not in message
        finally:
            via.close()
    assert len(compute_domain.delete("busy", namespace, k8s_client)) == 3


def test_a_certificate_failure_is_not_retried(apiserver: Any) -> None:
    cfg = client.Configuration()
    cfg.host = apiserver.url
    cfg.verify_ssl = True  # and no CA: the apiserver's self-made certificate is unknown
    cfg.retries = 0
    api = client.ApiClient(cfg)
    raw = RawApi(api, policy=RetryPolicy(attempts=5, base=5.0, max_delay=5.0))
    try:
        with pytest.raises(KubeApiError) as failed:
            raw.request("GET", "/version", what="get version")
    finally:
        api.close()
    assert raw.requests == 1 and raw.retries == 0
    message = str(failed.value)
    assert message.startswith("get version: TLS with the apiserver at ")
    assert "not retried" in message and "CERTIFICATE_VERIFY_FAILED" in message
    assert "\n" not in message


@pytest.mark.usefixtures("crd")
def test_an_interrupted_apply_says_what_it_left(
    k8s_client: ApiClient,
    namespace: str,
    racks: nvtopo.Cluster,
    monkeypatch: Any,
) -> None:
    from nvtopo.compute_domain import _kube

    plan = compute_domain.plan(racks, name="cut", namespace=namespace, gpus=8, nodes=2)
    # Ctrl-C while waiting: the objects stay, named with the command that removes them.
    watch = _kube.Kube.watch

    def interrupted(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt
        yield  # a generator, as the real watch

    monkeypatch.setattr(_kube.Kube, "watch", interrupted)
    with pytest.raises(ComputeDomainInterrupted) as stopped:
        compute_domain.apply(plan, k8s_client, timeout=30, progress=False)
    message = str(stopped.value)
    assert (
        f"left ComputeDomain {namespace}/cut, ResourceClaimTemplate {namespace}/cut-gpus, "
        f"Job {namespace}/cut;" in message
    )
    assert f"`nvtopo compute-domain delete cut -n {namespace}` removes them" in message
    assert _objects(k8s_client, namespace)["ComputeDomain"] == ["cut"]
    # The apiserver gone while waiting: the same note.
    monkeypatch.setattr(_kube.Kube, "watch", watch)

    def gone(*_: Any, **__: Any) -> Any:
        raise ComputeDomainError("get ComputeDomain x: cannot reach the apiserver (refused)")

    monkeypatch.setattr(_kube.Kube, "get", gone)
    again = compute_domain.plan(racks, name="cut2", namespace=namespace, gpus=8, nodes=2)
    with pytest.raises(ComputeDomainError) as lost:
        compute_domain.apply(again, k8s_client, timeout=30, progress=False)
    assert "cannot reach the apiserver" in str(lost.value)
    assert f"`nvtopo compute-domain delete cut2 -n {namespace}` removes them" in str(lost.value)
    monkeypatch.undo()
    # Ctrl-C while creating: what this call made is removed again.
    create = _kube.Kube.create
    made: list[str] = []

    def second_interrupted(self: Any, manifest: dict[str, Any], **kwargs: Any) -> Any:
        if made:
            raise KeyboardInterrupt
        made.append(manifest["kind"])
        return create(self, manifest, **kwargs)

    monkeypatch.setattr(_kube.Kube, "create", second_interrupted)
    third = compute_domain.plan(racks, name="cut3", namespace=namespace, gpus=8, nodes=2)
    with pytest.raises(ComputeDomainInterrupted, match=r"removed ComputeDomain .*/cut3"):
        compute_domain.apply(third, k8s_client, timeout=30, progress=False)
    monkeypatch.undo()
    assert _objects(k8s_client, namespace)["ComputeDomain"] == ["cut", "cut2"]
    for name in ("cut", "cut2"):
        compute_domain.delete(name, namespace, k8s_client)
