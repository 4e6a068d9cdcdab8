"""The publisher against a real kube-apiserver: idempotency, generations, stale slices,
conflicts, injected 429/5xx, and a publish killed half way then run again.

Each test publishes under its own driver name, so tests never see each other's slices.
Requests go through ``tests/k8s/faultproxy.py`` (a loopback proxy in front of the fixture's
apiserver) wherever they are counted or faults are injected.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient

import nvtopo
from nvtopo.dra._plan import LABEL_DRIVER, LABEL_MANAGED_BY, LABEL_NODE, slice_difference
from nvtopo.dra.annotation import TOPOLOGY_ANNOTATION
from nvtopo.dra.publish import _desired, cluster_slices, node_slices, publish
from nvtopo.kube.client import RESOURCE_SLICES, RawApi
from nvtopo.kube.retry import KubeApiError, RetryPolicy

from .faultproxy import FaultProxy

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
FAST = RetryPolicy(attempts=4, base=0.01, max_delay=0.05)


@pytest.fixture(scope="module")
def proxy(apiserver: Any) -> Iterator[FaultProxy]:
    with FaultProxy(apiserver.url, apiserver.ca_file) as p:
        yield p


@pytest.fixture
def via_proxy(proxy: FaultProxy, apiserver: Any) -> Iterator[ApiClient]:
    proxy.reset()
    client = proxy.client(apiserver.token)
    yield client
    client.close()
    proxy.reset()


@pytest.fixture
def driver(k8s_client: ApiClient) -> Iterator[str]:
    """A driver name of the test's own; its slices are deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}.nvtopo.dev"
    yield name
    api = RawApi(k8s_client)
    for s in api.list(RESOURCE_SLICES, what="cleanup", field_selector=f"spec.driver={name}"):
        api.request("DELETE", RawApi.item(RESOURCE_SLICES, s["metadata"]["name"]), what="cleanup")


def stored(client: ApiClient, driver: str) -> dict[str, dict[str, Any]]:
    """Slice name → slice, as the server holds them for ``driver``."""
    api = RawApi(client)
    items = api.list(RESOURCE_SLICES, what="list", field_selector=f"spec.driver={driver}")
    return {s["metadata"]["name"]: s for s in items}


def assert_converged(
    client: ApiClient, driver: str, desired: dict[str, list[dict[str, Any]]]
) -> None:
    """The server holds exactly ``desired``: no slice missing, changed or stale, and every
    pool at one generation."""
    held = stored(client, driver)
    labelled = _desired(desired, None, driver)  # as publish sends them: labels added
    wanted = {s["metadata"]["name"]: s for v in labelled.values() for s in v}
    assert set(held) == set(wanted)
    for name, s in held.items():
        assert slice_difference(wanted[name], s) is None, name
    for pool, slices in desired.items():
        gens = {held[s["metadata"]["name"]]["spec"]["pool"]["generation"] for s in slices}
        assert len(gens) == 1, (pool, gens)


def mixed_cluster() -> nvtopo.Cluster:
    racks = nvtopo.cluster("gb200-nvl72x2")
    dgx = [nvtopo.ClusterNode(f"dgx-{i}", nvtopo.system("dgx-h100")) for i in range(3)]
    return nvtopo.Cluster(racks.nodes + tuple(dgx))


def test_publish_then_republish_writes_nothing(
    via_proxy: ApiClient, proxy: FaultProxy, driver: str
) -> None:
    cluster = mixed_cluster()
    first = publish(via_proxy, cluster, driver=driver)
    assert (first.created, first.updated, first.deleted, first.unchanged) == (39, 0, 0, 0)
    assert proxy.count(writes=True) == first.writes == 39
    assert first.requests == proxy.count() == 40  # one list, then the creates
    held = stored(via_proxy, driver)
    s = held["dgx-0-" + driver.replace(".", "-") + "-0"]
    assert s["metadata"]["labels"] == {
        LABEL_DRIVER: driver, LABEL_NODE: "dgx-0", LABEL_MANAGED_BY: "nvtopo",
    }  # fmt: skip
    assert TOPOLOGY_ANNOTATION in s["metadata"]["annotations"]
    assert s["spec"]["pool"] == {"name": "dgx-0", "generation": 1, "resourceSliceCount": 1}

    proxy.reset()
    again = publish(via_proxy, cluster, driver=driver)
    assert not again.changed and again.unchanged == 39
    assert again.writes == 0 and proxy.count(writes=True) == 0
    assert again.requests == proxy.count() == 1
    one = publish(via_proxy, nvtopo.system("dgx-h100"), node="dgx-1", driver=driver)
    assert one.writes == 0 and one.requests == 1
    assert proxy.log[-1].path.count("spec.nodeName%3Ddgx-1") == 1  # one node, one field selector


def test_republish_counted_at_the_client_makes_no_write(k8s_client: ApiClient, driver: str) -> None:
    publish(k8s_client, mixed_cluster(), driver=driver)
    seen: list[str] = []
    original = k8s_client.call_api

    def counting(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(method)
        return original(method, url, *args, **kwargs)

    k8s_client.call_api = counting  # type: ignore[method-assign]
    try:
        publish(k8s_client, mixed_cluster(), driver=driver)
    finally:
        del k8s_client.call_api
    assert seen == ["GET"]


def test_a_change_bumps_the_generation_of_its_pool_only(k8s_client: ApiClient, driver: str) -> None:
    b200 = nvtopo.system("hgx-b200")
    desired = {
        "n1": node_slices(b200, node="n1", driver=driver, max_devices_per_slice=3),
        "n2": node_slices(b200, node="n2", driver=driver, max_devices_per_slice=3),
    }
    publish(k8s_client, desired, driver=driver)
    before = stored(k8s_client, driver)
    # GPU 5 loses its NVLinks: its attributes, and the set<k> groups of the node, change.
    gpu = b200.gpu(5)
    lost = type(gpu)(**{**gpu.__dict__, "nvlinks": tuple(
        type(link)(link.link, "down", link.version, link.remote_type) for link in gpu.nvlinks
    )})  # fmt: skip
    degraded = b200.replace_gpus(lost if g.index == 5 else g for g in b200.gpus)
    pairs = tuple(type(p)(p.a, p.b, 0, "SYS") if 5 in (p.a, p.b) else p for p in b200.pairs)
    degraded = type(b200)(**{**degraded.__dict__, "pairs": pairs})
    desired["n1"] = node_slices(degraded, node="n1", driver=driver, max_devices_per_slice=3)
    result = publish(k8s_client, desired, driver=driver)
    assert (result.updated, result.created, result.deleted, result.unchanged) == (3, 0, 0, 3)
    after = stored(k8s_client, driver)
    for name, s in after.items():
        gen = s["spec"]["pool"]["generation"]
        if s["spec"]["pool"]["name"] == "n1":
            assert gen == 2  # every slice of the pool, changed or not
        else:
            assert gen == 1
            assert s["metadata"]["resourceVersion"] == before[name]["metadata"]["resourceVersion"]
    assert_converged(k8s_client, driver, desired)


def test_stale_slices_and_pools_go(k8s_client: ApiClient, driver: str) -> None:
    racks = nvtopo.cluster("gb200-nvl72x1")
    publish(k8s_client, cluster_slices(racks, driver=driver, max_devices_per_slice=1),
            driver=driver)  # fmt: skip
    assert len(stored(k8s_client, driver)) == 72
    # Fewer slices per pool: slices 1-3 of every pool are stale.
    smaller = cluster_slices(racks, driver=driver)
    result = publish(k8s_client, smaller, driver=driver)
    assert (result.updated, result.deleted) == (18, 54)
    assert_converged(k8s_client, driver, smaller)
    # Publishing one node leaves the other pools alone...
    single = publish(k8s_client, nvtopo.system("dgx-a100"), node="extra", driver=driver)
    assert single.created == 1 and single.deleted == 0
    assert len(stored(k8s_client, driver)) == 19
    # ...so does a whole cluster by default; with prune it deletes the pools of nodes that
    # left it.
    shrunk = nvtopo.Cluster(racks.nodes[:10])
    kept = publish(k8s_client, shrunk, driver=driver)
    assert kept.deleted == 0 and len(stored(k8s_client, driver)) == 19
    result = publish(k8s_client, shrunk, driver=driver, prune=True)
    assert result.deleted == 9 and result.unchanged == 10
    assert {c.reason for c in result.changes} == {"node left the cluster"}
    assert_converged(k8s_client, driver, cluster_slices(shrunk, driver=driver))


def test_a_concurrent_writer_causes_a_real_409_that_is_retried(
    via_proxy: ApiClient, proxy: FaultProxy, k8s_client: ApiClient, driver: str
) -> None:
    topo = nvtopo.system("dgx-h100")
    publish(k8s_client, {"n1": node_slices(topo, node="n1", driver=driver)}, driver=driver)
    name = "n1-" + driver.replace(".", "-") + "-0"
    raw = RawApi(k8s_client)
    raced: list[str] = []

    def writer(method: str, path: str, body: bytes) -> None:
        # Between the publisher's read and its write, someone else rewrites the slice.
        if method == "PUT" and not raced:
            raced.append(path)
            current = raw.request("GET", RawApi.item(RESOURCE_SLICES, name), what="race")
            current["spec"]["devices"][0]["attributes"]["productName"] = {"string": "racer"}
            raw.request("PUT", RawApi.item(RESOURCE_SLICES, name), what="race", body=current)

    proxy.before_forward = writer
    new_topo = nvtopo.system("hgx-h200")
    desired = {"n1": node_slices(new_topo, node="n1", driver=driver)}
    result = publish(via_proxy, desired, driver=driver)
    assert raced and result.conflicts == 1
    conflicts = [e for e in proxy.log if e.status == 409]
    assert len(conflicts) == 1 and not conflicts[0].injected  # the server's own 409
    assert_converged(k8s_client, driver, desired)
    held = stored(k8s_client, driver)[name]
    # Read again after the 409: the racer left generation 1, so the pool is written at 2.
    assert held["spec"]["pool"]["generation"] == 2
    assert publish(via_proxy, desired, driver=driver).writes == 0


def test_injected_429_and_5xx_are_retried(
    via_proxy: ApiClient, proxy: FaultProxy, k8s_client: ApiClient, driver: str
) -> None:
    cluster = mixed_cluster()
    proxy.fail(500, times=1, method="GET")
    proxy.fail(429, times=2, method="POST", retry_after="0")
    proxy.fail(503, times=2, method="POST")
    result = publish(via_proxy, cluster, driver=driver, retry=FAST)
    assert result.retries == 5 and proxy.count(injected=True) == 5
    assert result.created == 39
    proxy.fail(502, times=1, method="PUT")
    proxy.fail(504, times=1, method="DELETE")
    smaller = nvtopo.Cluster(cluster.nodes[1:])
    changed = {"dgx-2": node_slices(nvtopo.system("hgx-b200"), node="dgx-2", driver=driver)}
    result = publish(via_proxy, smaller, driver=driver, retry=FAST, prune=True)
    result2 = publish(via_proxy, changed, driver=driver, retry=FAST)
    assert result.deleted == 1 and result2.updated == 1
    assert result.retries + result2.retries == 2
    desired = cluster_slices(smaller, driver=driver)
    desired.update(changed)
    assert_converged(k8s_client, driver, desired)


def test_a_failure_that_stays_is_one_line(
    via_proxy: ApiClient, proxy: FaultProxy, driver: str
) -> None:
    proxy.fail(503, times=1000, method="POST")
    with pytest.raises(KubeApiError) as err:
        publish(via_proxy, nvtopo.system("dgx-h100"), node="n9", driver=driver, retry=FAST)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"create ResourceSlice n9-{driver.replace('.', '-')}-0: 503 ")
    assert message.endswith("(gave up after 4 tries)")
    assert err.value.status == 503
    assert proxy.count(injected=True) == FAST.attempts


CHILD = """
import os, nvtopo
from kubernetes import client
from nvtopo.dra.publish import cluster_slices, publish
cfg = client.Configuration()
cfg.host = os.environ["PROXY_URL"]
cfg.api_key = {"authorization": "Bearer " + os.environ["TOKEN"]}
driver = os.environ["DRIVER"]
racks = nvtopo.cluster("gb200-nvl72x6")
kept = nvtopo.Cluster(racks.nodes[:90])  # rack 5 leaves
desired = cluster_slices(kept, driver=driver, max_devices_per_slice=2)
publish(client.ApiClient(cfg), desired, driver=driver, prune=True, workers=2)
"""


def test_a_publish_killed_half_way_converges_when_run_again(
    proxy: FaultProxy, apiserver: Any, k8s_client: ApiClient, driver: str
) -> None:
    racks = nvtopo.cluster("gb200-nvl72x6")
    publish(k8s_client, racks, driver=driver)  # 108 pools of one slice each, generation 1
    kept = nvtopo.Cluster(racks.nodes[:90])
    desired = cluster_slices(kept, driver=driver, max_devices_per_slice=2)
    proxy.reset()
    proxy.write_delay = 0.02  # slow enough to be stopped half way
    env = {**os.environ, "PROXY_URL": proxy.url, "TOKEN": apiserver.token, "DRIVER": driver,
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while proxy.count(writes=True) < 60 and time.monotonic() < deadline:
            assert child.poll() is None, "the publish ended before it could be stopped"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)
        proxy.write_delay = 0.0
    assert child.returncode == -signal.SIGKILL
    # Half way: some pools are at generation 2, some still at 1, the leaving rack still there.
    held = stored(k8s_client, driver)
    gens = {s["spec"]["pool"]["name"]: set() for s in held.values()}
    for s in held.values():
        gens[s["spec"]["pool"]["name"]].add(s["spec"]["pool"]["generation"])
    assert any(2 in g for g in gens.values()) and any(g == {1} for g in gens.values())
    assert any(n.startswith("rack0005") for n in gens)

    result = publish(k8s_client, desired, driver=driver, prune=True)
    assert result.changed
    assert_converged(k8s_client, driver, desired)
    assert not any(s["spec"]["pool"]["name"].startswith("rack0005")
                   for s in stored(k8s_client, driver).values())  # fmt: skip
    assert publish(k8s_client, desired, driver=driver, prune=True).writes == 0


def test_dry_run_lists_changes_and_writes_nothing(
    via_proxy: ApiClient, proxy: FaultProxy, driver: str
) -> None:
    cluster = mixed_cluster()
    publish(via_proxy, cluster, driver=driver)
    proxy.reset()
    smaller = nvtopo.Cluster(cluster.nodes[:30])
    plan = publish(via_proxy, smaller, driver=driver, dry_run=True, prune=True)
    assert plan.dry_run and plan.deleted == 9 and plan.writes == 0
    assert proxy.count(writes=True) == 0
    assert [c.action for c in plan.changes] == ["delete"] * 9
    assert json.loads(json.dumps(plan.to_json()))["changes"][0]["reason"] == "node left the cluster"


# -- the node agent, its manifests and its RBAC -------------------------------------------------

_PATHS = {
    "Namespace": "/api/v1/namespaces",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets",
}


def _create(raw: RawApi, doc: dict[str, Any], *, dry_run: bool = False) -> None:
    from kubernetes.client.exceptions import ApiException

    path = _PATHS[doc["kind"]].format(ns=doc["metadata"].get("namespace", ""))
    try:
        raw.request("POST", path, what=f"create {doc['kind']}", body=doc,
                    query=[("dryRun", "All")] if dry_run else None)  # fmt: skip
    except ApiException as exc:
        if exc.status != 409:  # made by an earlier test of this session
            raise


def _manifests(name: str) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all((ROOT / "deploy" / name).read_text()) if d]


def _service_account_kubeconfig(
    raw: RawApi, apiserver: Any, namespace: str, account: str, path: Path
) -> Path:
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
               "spec": {"expirationSeconds": 3600}}  # fmt: skip
    answer = raw.request(
        "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        what="token", body=request,
    )  # fmt: skip
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "t", "cluster": {"server": apiserver.url,
                                               "certificate-authority": str(apiserver.ca_file)}}],
        "users": [{"name": account, "user": {"token": answer["status"]["token"]}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": account}}],
        "current-context": "t",
    }  # fmt: skip
    path.write_text(json.dumps(config))
    return path


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from nvtopo.cli import cli, main
    from nvtopo.cli.publish import publish as publish_command

    if "publish" not in cli.commands:
        cli.add_command(publish_command)
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_agent_publishes_with_the_least_rbac_it_needs(
    k8s_client: ApiClient,
    apiserver: Any,
    driver: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubernetes import config

    from nvtopo.kube.readback import cluster_from_kubernetes

    raw = RawApi(k8s_client)
    for doc in _manifests("rbac.yaml"):
        _create(raw, doc)
    kubeconfig = _service_account_kubeconfig(
        raw, apiserver, "nvtopo", "nvtopo-publisher", tmp_path / "agent"
    )
    node = f"gpu-{uuid.uuid4().hex[:6]}"
    made = raw.request(
        "POST",
        "/api/v1/nodes",
        what="node",
        body={"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}},
    )
    args = ["publish", "--source", "system:dgx-h100", "--node", node, "--driver", driver,
            "--kubeconfig", str(kubeconfig), "--once", "--format", "json"]  # fmt: skip
    try:
        code, out, err = _cli(args, capsys)
        assert (code, err) == (0, "")
        assert json.loads(out)["created"] == 1
        [s] = stored(k8s_client, driver).values()
        # Owned by the Node: the garbage collector removes the slices with it.
        assert s["metadata"]["ownerReferences"] == [{
            "apiVersion": "v1", "kind": "Node", "name": node,
            "uid": made["metadata"]["uid"], "controller": True,
        }]  # fmt: skip
        code, out, _ = _cli(args, capsys)
        assert code == 0 and json.loads(out)["writes"] == 0
        # No more than that: it reads no claims and touches no other kind.
        agent = config.new_client_from_config(config_file=str(kubeconfig))
        try:
            with pytest.raises(KubeApiError) as denied:
                cluster_from_kubernetes(agent, driver=driver)
            assert denied.value.status == 403 and "\n" not in str(denied.value)
            from kubernetes.client.exceptions import ApiException

            with pytest.raises(ApiException) as forbidden:
                RawApi(agent).request("GET", "/api/v1/namespaces/default/configmaps", what="x")
            assert forbidden.value.status == 403
            with pytest.raises(ApiException) as forbidden:
                RawApi(agent).request("DELETE", f"/api/v1/nodes/{node}", what="x")
            assert forbidden.value.status == 403
        finally:
            agent.close()
    finally:
        raw.request("DELETE", f"/api/v1/nodes/{node}", what="cleanup")


def test_the_daemonset_is_valid_and_runs_the_agent(k8s_client: ApiClient) -> None:
    from nvtopo.cli.publish import publish as publish_command

    raw = RawApi(k8s_client)
    for doc in _manifests("rbac.yaml"):
        _create(raw, doc)
    [ds] = _manifests("daemonset.yaml")
    _create(raw, ds, dry_run=True)  # the server validates it, stores nothing
    container = ds["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["nvtopo"] and container["args"][0] == "publish"
    publish_command.make_context("publish", list(container["args"][1:]))  # the CLI accepts them
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == "nvtopo-publisher"


def test_cli_dry_run_and_errors(
    apiserver: Any, driver: str, capsys: pytest.CaptureFixture[str], k8s_client: ApiClient
) -> None:
    base = ["publish", "--source", "system:hgx-b200", "--node", "cli-1", "--driver", driver,
            "--kubeconfig", str(apiserver.kubeconfig), "--once"]  # fmt: skip
    code, out, _ = _cli([*base, "--dry-run"], capsys)
    assert code == 0 and "would change" in out and "cli-1-" in out
    assert stored(k8s_client, driver) == {}
    code, out, _ = _cli([*base, "--format", "json"], capsys)
    assert code == 0 and json.loads(out)["created"] == 1
    code, out, err = _cli([*base[:-3], "--kubeconfig", "/nonexistent/kubeconfig", "--once"], capsys)
    assert code == 1 and err == "nvtopo: error: kubeconfig /nonexistent/kubeconfig: no such file\n"


def test_cli_refused_credentials_and_unreadable_kubeconfigs_are_one_line(
    apiserver: Any,
    k8s_client: ApiClient,
    driver: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["publish", "--source", "system:dgx-h100", "--node", "cli-2", "--driver", driver,
            "--once", "--kubeconfig"]  # fmt: skip
    # A token the apiserver does not know: 401 on the first request (the Node).
    config = json.loads(apiserver.kubeconfig.read_text())
    for user in config["users"]:
        user["user"]["token"] = "not-a-token"
    wrong = tmp_path / "wrong-token"
    wrong.write_text(json.dumps(config))
    code, out, err = _cli([*base, str(wrong)], capsys)
    assert (code, out) == (1, "")
    assert err == "nvtopo: error: get Node cli-2: 401 Unauthorized: Unauthorized\n"
    # A ServiceAccount bound to nothing: the Node read is skipped (403), the list is refused.
    raw = RawApi(k8s_client)
    account = f"nobody-{uuid.uuid4().hex[:6]}"
    raw.request("POST", "/api/v1/namespaces/default/serviceaccounts", what="sa",
                body={"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": account}})  # fmt: skip
    try:
        nobody = _service_account_kubeconfig(raw, apiserver, "default", account, tmp_path / "sa")
        code, out, err = _cli([*base, str(nobody)], capsys)
        assert (code, out) == (1, "")
        assert err.count("\n") == 1
        assert err.startswith(
            f"nvtopo: error: list ResourceSlices of {driver} on node cli-2: 403 Forbidden: "
        )
    finally:
        raw.request("DELETE", f"/api/v1/namespaces/default/serviceaccounts/{account}", what="x")
    # Files that are no kubeconfig.
    for text in ("root:x:0:0:root:/root:/bin/bash\n", "[1, 2]\n", "\x00\xff["):
        bad = tmp_path / "bad"
        bad.write_text(text)
        code, out, err = _cli([*base, str(bad)], capsys)
        assert (code, out, err) == (
            1,
            "",
            f"nvtopo: error: kubeconfig {bad}: not a kubeconfig file\n",
        )
    assert stored(k8s_client, driver) == {}


def test_the_topology_reader_role_reads_the_cluster_and_nothing_more(
    k8s_client: ApiClient, apiserver: Any, driver: str, tmp_path: Path
) -> None:
    from kubernetes import config
    from kubernetes.client.exceptions import ApiException

    from nvtopo.kube.readback import cluster_from_kubernetes

    raw = RawApi(k8s_client)
    for doc in _manifests("rbac.yaml"):
        _create(raw, doc)
    account = f"reader-{uuid.uuid4().hex[:6]}"
    raw.request("POST", "/api/v1/namespaces/nvtopo/serviceaccounts", what="sa",
                body={"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": account}})  # fmt: skip
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "nvtopo-topology-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "nvtopo"}],
    }  # fmt: skip
    _create(raw, binding)
    publish(k8s_client, nvtopo.cluster("gb200-nvl72x2"), driver=driver)
    kubeconfig = _service_account_kubeconfig(raw, apiserver, "nvtopo", account, tmp_path / "r")
    reader = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        # RBAC is checked on every request, but a fresh binding may take a moment to apply.
        for _ in range(50):
            try:
                cluster = cluster_from_kubernetes(reader, driver=driver)
                break
            except KubeApiError as exc:
                assert exc.status == 403
                time.sleep(0.1)
        assert len(cluster.nodes) == 36
        [one] = list(stored(k8s_client, driver).values())[:1]
        with pytest.raises(ApiException) as forbidden:
            RawApi(reader).request(
                "DELETE", RawApi.item(RESOURCE_SLICES, one["metadata"]["name"]), what="x"
            )
        assert forbidden.value.status == 403
    finally:
        reader.close()
        raw.request("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{account}",
                    what="cleanup")  # fmt: skip
