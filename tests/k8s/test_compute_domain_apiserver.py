"""ComputeDomain apply, wait and delete against a real kube-apiserver.

The test apiserver runs no scheduler, kubelet or DRA driver: the Job's pods never start,
and a test thread plays the ComputeDomain controller by writing ``status`` through the
status subresource, node by node, the way the driver's daemons report in.
"""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

import nvtopo
from nvtopo import compute_domain
from nvtopo.compute_domain import (
    ComputeDomainConflict,
    ComputeDomainPlan,
    ComputeDomainTimeout,
    CrdMissingError,
    crd_manifest,
)
from nvtopo.compute_domain.crd import CRD_NAME, GROUP, PLURAL, VERSION

pytestmark = pytest.mark.k8s

SELECTOR = "app.kubernetes.io/managed-by=nvtopo"


@pytest.fixture(scope="module")
def racks() -> nvtopo.Cluster:
    return nvtopo.cluster("gb200-nvl72x4")


@pytest.fixture(scope="module")
def crd(k8s_client: ApiClient) -> None:
    """The ComputeDomain CRD installed, established and served."""
    ext = client.ApiextensionsV1Api(k8s_client)
    try:
        ext.create_custom_resource_definition(crd_manifest())
    except ApiException as exc:
        if exc.status != 409:
            raise
    custom = client.CustomObjectsApi(k8s_client)
    for _ in range(300):  # the apiserver serves a new CRD within a second or two
        conditions = ext.read_custom_resource_definition(CRD_NAME).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            try:
                custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
                return
            except ApiException as exc:
                if exc.status != 404:
                    raise
        time.sleep(0.1)
    pytest.fail(f"{CRD_NAME} was not served in time")


@pytest.fixture
def namespace(k8s_client: ApiClient) -> Iterator[str]:
    name = f"cd-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(k8s_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def _objects(k8s_client: ApiClient, namespace: str) -> dict[str, list[str]]:
    """Names of the ComputeDomains, ResourceClaimTemplates and Jobs in ``namespace``."""
    custom = client.CustomObjectsApi(k8s_client)
    found = {}
    for kind, group, version, plural in [
        ("ComputeDomain", GROUP, VERSION, PLURAL),
        ("ResourceClaimTemplate", "resource.k8s.io", "v1", "resourceclaimtemplates"),
        ("Job", "batch", "v1", "jobs"),
    ]:
        items = custom.list_namespaced_custom_object(group, version, namespace, plural)["items"]
        found[kind] = sorted(i["metadata"]["name"] for i in items)
    return found


class Controller(threading.Thread):
    """Plays the ComputeDomain controller: reports each node in turn, Ready or not."""

    def __init__(
        self, k8s_client: ApiClient, plan: ComputeDomainPlan, *, never_ready: str | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.api = client.CustomObjectsApi(k8s_client)
        self.plan = plan
        self.never_ready = never_ready
        self.writes: list[tuple[str, str]] = []
        self.error: BaseException | None = None

    def _patch(self, nodes: list[dict[str, Any]], overall: str) -> None:
        body = {"status": {"status": overall, "nodes": nodes}}
        self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.plan.namespace, PLURAL, self.plan.name, body
        )

    def run(self) -> None:
        try:
            for _ in range(600):  # apply creates the ComputeDomain first
                try:
                    self.api.get_namespaced_custom_object(
                        GROUP, VERSION, self.plan.namespace, PLURAL, self.plan.name
                    )
                    break
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    time.sleep(0.05)
            (clique,) = self.plan.cliques
            nodes: list[dict[str, Any]] = []
            for i, name in enumerate(self.plan.nodes):  # each daemon registers NotReady first
                nodes.append(
                    {
                        "name": name,
                        "ipAddress": f"10.9.0.{i + 1}",
                        "cliqueID": clique,
                        "index": i,
                        "status": "NotReady",
                    }
                )
                self._patch(nodes, "NotReady")
                self.writes.append((name, "NotReady"))
            for node in nodes:  # then turns Ready
                if node["name"] == self.never_ready:
                    continue
                node["status"] = "Ready"
                self._patch(nodes, "NotReady")
                self.writes.append((node["name"], "Ready"))
            if self.never_ready is None:
                self._patch(nodes, "Ready")
                self.writes.append(("*", "Ready"))
        except BaseException as exc:  # surfaced by the test
            self.error = exc


@pytest.mark.usefixtures("crd")
def test_apply_waits_until_every_node_is_ready(
    k8s_client: ApiClient, namespace: str, racks: nvtopo.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = compute_domain.plan(racks, name="train", namespace=namespace, gpus=16, nodes=4)
    calls = {"get": 0, "event": 0}
    kube = importlib.import_module("nvtopo.compute_domain._kube").Kube
    get, watch = kube.get, kube.watch

    def counted_get(self: Any, *args: Any) -> Any:
        calls["get"] += 1
        return get(self, *args)

    def counted_watch(self: Any, *args: Any, **kwargs: Any) -> Any:
        for event in watch(self, *args, **kwargs):
            calls["event"] += 1
            yield event

    monkeypatch.setattr(kube, "get", counted_get)
    monkeypatch.setattr(kube, "watch", counted_watch)
    controller = Controller(k8s_client, plan)
    controller.start()
    done = compute_domain.apply(plan, k8s_client, timeout=60, progress=False)
    controller.join(10)
    assert controller.error is None
    # The wait follows the controller's writes on a watch rather than re-reading in a loop.
    assert calls["event"] >= 1
    assert calls["get"] <= 3
    # apply returned only after the controller's last write.
    assert controller.writes[-1] == ("*", "Ready")
    assert len(controller.writes) == 2 * len(plan.nodes) + 1
    assert done.status == "Ready"
    assert [n.name for n in done.nodes] == sorted(plan.nodes)
    assert {n.status for n in done.nodes} == {"Ready"}
    assert {n.clique_id for n in done.nodes} == set(plan.cliques)
    assert done.created == (
        f"ComputeDomain {namespace}/train",
        f"ResourceClaimTemplate {namespace}/train-gpus",
        f"Job {namespace}/train",
    )
    assert _objects(k8s_client, namespace) == {
        "ComputeDomain": ["train"],
        "ResourceClaimTemplate": ["train-gpus"],
        "Job": ["train"],
    }
    job = client.BatchV1Api(k8s_client).read_namespaced_job("train", namespace)
    assert job.spec.completions == 4 and job.spec.completion_mode == "Indexed"
    term = job.spec.template.spec.affinity.node_affinity
    values = term.required_during_scheduling_ignored_during_execution.node_selector_terms[0]
    assert values.match_expressions[0].values == list(plan.nodes)

    deleted = compute_domain.delete("train", namespace, k8s_client)
    assert deleted == (
        f"Job {namespace}/train",
        f"ResourceClaimTemplate {namespace}/train-gpus",
        f"ComputeDomain {namespace}/train",
    )
    assert _objects(k8s_client, namespace) == {
        "ComputeDomain": [],
        "ResourceClaimTemplate": [],
        "Job": [],
    }
    assert compute_domain.delete("train", namespace, k8s_client) == ()


@pytest.mark.usefixtures("crd")
def test_timeout_names_the_node_that_never_turns_ready(
    k8s_client: ApiClient, namespace: str, racks: nvtopo.Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = compute_domain.plan(
        racks, name="stuck", namespace=namespace, gpus=12, nodes=3, gpu_request="device-plugin"
    )
    stuck = plan.nodes[1]
    controller = Controller(k8s_client, plan, never_ready=stuck)
    controller.start()
    with pytest.raises(ComputeDomainTimeout) as caught:
        compute_domain.apply(plan, k8s_client, timeout=4, progress=True)
    controller.join(10)
    assert controller.error is None
    assert caught.value.not_ready == {stuck: "NotReady"}
    message = str(caught.value)
    assert f"nodes not Ready: {stuck} (NotReady); 2 of 3 Ready" in message
    assert "\n" not in message
    # The progress bar (standard error) ends on the last state it saw.
    assert "2/3 nodes Ready" in capsys.readouterr().err
    # The objects stay for inspection until deleted.
    assert _objects(k8s_client, namespace)["Job"] == ["stuck"]
    assert len(compute_domain.delete("stuck", namespace, k8s_client)) == 2


@pytest.mark.usefixtures("crd")
def test_conflict_rolls_back_what_this_call_created(
    k8s_client: ApiClient, namespace: str, racks: nvtopo.Cluster
) -> None:
    plan = compute_domain.plan(racks, name="clash", namespace=namespace, gpus=8, nodes=2)
    # Someone else's Job of the same name: the ComputeDomain and claim template made before
    # it must be removed, and the foreign Job left alone.
    foreign = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "clash", "labels": {"owner": "someone-else"}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                }
            }
        },
    }
    client.BatchV1Api(k8s_client).create_namespaced_job(namespace, foreign)
    with pytest.raises(ComputeDomainConflict) as caught:
        compute_domain.apply(plan, k8s_client, timeout=5, progress=False)
    message = str(caught.value)
    assert message == (
        f"ComputeDomain {namespace}/clash: Job {namespace}/clash already exists; removed "
        f"ResourceClaimTemplate {namespace}/clash-gpus, ComputeDomain {namespace}/clash"
    )
    assert _objects(k8s_client, namespace) == {
        "ComputeDomain": [],
        "ResourceClaimTemplate": [],
        "Job": ["clash"],
    }
    # delete() finds objects by nvtopo's labels: the foreign Job is not nvtopo's.
    assert compute_domain.delete("clash", namespace, k8s_client) == ()


@pytest.mark.usefixtures("crd")
def test_conflict_on_the_first_object_creates_nothing(
    k8s_client: ApiClient, namespace: str, racks: nvtopo.Cluster
) -> None:
    plan = compute_domain.plan(racks, name="twice", namespace=namespace, gpus=8, nodes=2)
    compute_domain.apply(plan, k8s_client, wait=False, progress=False)
    with pytest.raises(
        ComputeDomainConflict,
        match=r"ComputeDomain .*/twice already exists; nothing had been created",
    ):
        compute_domain.apply(plan, k8s_client, timeout=5, progress=False)
    assert _objects(k8s_client, namespace) == {
        "ComputeDomain": ["twice"],
        "ResourceClaimTemplate": ["twice-gpus"],
        "Job": ["twice"],
    }
    assert len(compute_domain.delete("twice", namespace, k8s_client)) == 3


def test_missing_crd_is_a_clear_error(
    k8s_client: ApiClient, racks: nvtopo.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ask for the type under a group this apiserver has never served: the same 404 as a
    # cluster without the driver, without uninstalling the CRD the other tests use.
    module = importlib.import_module("nvtopo.compute_domain.apply")
    monkeypatch.setattr(module, "API_VERSION", "absent.nvtopo.dev/v1")
    plan = compute_domain.plan(racks, name="nocrd", gpus=8, nodes=2)
    with pytest.raises(CrdMissingError, match=r"does not serve ComputeDomain \(computedomains"):
        compute_domain.apply(plan, k8s_client, timeout=5, progress=False)


@pytest.mark.usefixtures("crd")
def test_cli_apply_and_delete_through_a_kubeconfig(
    apiserver: Any, k8s_client: ApiClient, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from nvtopo.cli import cli, main
    from nvtopo.cli.compute_domain import compute_domain as group

    if "compute-domain" not in cli.commands:
        cli.add_command(group)
    kube = ["--kubeconfig", str(apiserver.kubeconfig), "-n", namespace]
    argv = [
        "compute-domain",
        "apply",
        "-s",
        "system:gb200-nvl72x2",
        "--name",
        "cli",
        "-k",
        "8",
        "--no-wait",
        *kube,
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        f"created ComputeDomain {namespace}/cli, ResourceClaimTemplate {namespace}/cli-gpus" in out
    )
    assert _objects(k8s_client, namespace)["ComputeDomain"] == ["cli"]

    assert main(["compute-domain", "delete", "cli", *kube, "--format", "json"]) == 0
    assert capsys.readouterr().out.count(f"{namespace}/cli") == 3
    assert main(["compute-domain", "delete", "cli", *kube]) == 1
    assert capsys.readouterr().err == (
        f"nvtopo: error: no objects of ComputeDomain {namespace}/cli managed by nvtopo\n"
    )
    assert main(["compute-domain", "delete", "cli", *kube, "--ignore-not-found"]) == 0


def test_cli_apply_refused_token_is_one_line(
    apiserver: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from nvtopo.cli import cli, main
    from nvtopo.cli.compute_domain import compute_domain as group

    if "compute-domain" not in cli.commands:
        cli.add_command(group)
    config = json.loads(apiserver.kubeconfig.read_text())
    for user in config["users"]:
        user["user"]["token"] = "not-a-token"
    wrong = tmp_path / "wrong-token"
    wrong.write_text(json.dumps(config))
    argv = ["compute-domain", "apply", "-s", "system:gb200-nvl72x2", "--name", "denied",
            "-k", "8", "--kubeconfig", str(wrong)]  # fmt: skip
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    # Nothing but the error: the plan's summary is shown once the apiserver has answered.
    assert captured.err == (
        "nvtopo: error: cannot read ComputeDomains in namespace default: "
        "401 Unauthorized: Unauthorized\n"
    )
