"""``nvtopo serve --source kubernetes`` against a real kube-apiserver.

Claims allocated by anyone take capacity within the watch latency; reservations survive a
new view of the cluster but not a restart of the service (stated: they live in memory);
the service keeps answering while the apiserver restarts and catches up after.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from kubernetes.client import ApiClient

import nvtopo
from nvtopo.dra.publish import publish
from nvtopo.kube.client import RawApi
from nvtopo.kube.readback import cluster_from_kubernetes
from nvtopo.service import Capacity, Client, ServiceError

from ..service.serving import Served, start_serve
from .conftest import controlplane
from .restartable import RestartablePlane
from .test_view_apiserver import allocate, client_for, make_namespace

pytestmark = pytest.mark.k8s

LATENCY = 10.0  # seconds a claim may take to reach the service (milliseconds here)


def serve_kubernetes(kubeconfig: Path, driver: str, workdir: Path) -> Served:
    args = ["--source", "kubernetes", "--kubeconfig", str(kubeconfig), "--driver", driver]
    return start_serve(args, workdir)


def next_until(stream: Iterator[Capacity], free: int, timeout: float = LATENCY) -> Capacity:
    """The first update with ``free`` free GPUs; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for update in stream:
        if update.free_gpus == free:
            return update
        assert time.monotonic() < deadline, f"free GPUs {update.free_gpus}, want {free}"
    raise AssertionError("stream ended")


@pytest.fixture
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Unix socket paths must stay short (108 bytes).
    return tmp_path_factory.mktemp("svc")


def test_service_follows_claims_and_restarts(
    apiserver: object, k8s_client: ApiClient, workdir: Path
) -> None:
    driver = f"sv{uuid.uuid4().hex[:6]}.nvtopo.dev"
    racks = nvtopo.cluster("gb200-nvl72x2")
    publish(k8s_client, racks, driver=driver)
    raw = RawApi(k8s_client)
    ns = make_namespace(raw)
    kubeconfig = Path(apiserver.kubeconfig)  # type: ignore[attr-defined]
    served = serve_kubernetes(kubeconfig, driver, workdir)
    try:
        with served.client() as c:
            # Other tests' claims on the shared apiserver may hold ComputeDomain channels on
            # these node names: compare with the cluster as the apiserver has it.
            now = cluster_from_kubernetes(k8s_client, driver=driver)
            want = nvtopo.place(now, gpus=16, nodes=4, domain="required")
            assert c.place(gpus=16, nodes=4, domain="required") == want
            stream = c.watch_capacity(timeout=120)
            assert next(stream).free_gpus == 144
            held = c.reserve(gpus=16, nodes=4, domain="required", ttl=600, key="before-claim")
            assert next(stream).free_gpus == 128

            # A claim allocated behind the service's back, on a tray it did not hand out.
            busy = next(n.name for n in racks.nodes if n.name not in
                        {p.name for p in held.placement.nodes})  # fmt: skip
            t = time.monotonic()
            allocate(raw, ns, "behind", [(driver, busy, f"gpu-{g}") for g in range(4)])
            next_until(stream, 124)
            print(f"\nclaim reached the service in {1000 * (time.monotonic() - t):.0f} ms")
            with pytest.raises(ServiceError) as none_free:
                c.select(busy, 1)
            assert none_free.value.code == grpc.StatusCode.FAILED_PRECONDITION
            # The reservation outlived the new view: still held, and released once.
            again = c.reserve(gpus=16, nodes=4, domain="required", ttl=600, key="before-claim")
            assert again.id == held.id and not again.created
            c.release(held.id)
            next_until(stream, 140)
            kept = c.reserve(gpus=8, nodes=2, domain="required", ttl=600)
            next_until(stream, 132)
            stream.close()

        # A restarted service rebuilds from Kubernetes: the claim counts, the reservation
        # it held in memory is gone.
        assert served.stop() == 0
        served = serve_kubernetes(kubeconfig, driver, workdir)
        with served.client() as c:
            assert next(c.watch_capacity(timeout=10)).free_gpus == 140
            with pytest.raises(ServiceError) as lost:
                c.release(kept.id)
            assert lost.value.code == grpc.StatusCode.NOT_FOUND
            back = cluster_from_kubernetes(k8s_client, driver=driver)
            for request in [{"gpus": 72, "nodes": 18, "domain": "required"}, {"gpus": 3}]:
                assert c.place(**request) == nvtopo.place(back, **request)  # type: ignore[arg-type]
    finally:
        served.stop()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartablePlane]:
    p = RestartablePlane(controlplane, tmp_path_factory.mktemp("k8s-svc"))
    try:
        yield p
    finally:
        p.close()


@pytest.mark.slow
def test_service_rides_out_an_apiserver_restart(plane: RestartablePlane, workdir: Path) -> None:
    client = client_for(plane)
    driver = "svc-restart.nvtopo.dev"
    try:
        publish(client, nvtopo.cluster("gb200-nvl72x2"), driver=driver)
        raw = RawApi(client)
        ns = make_namespace(raw)
        served = serve_kubernetes(plane.plane.kubeconfig, driver, workdir)
        try:
            with served.client() as c:
                stream = c.watch_capacity(timeout=180)
                assert next(stream).free_gpus == 144
                plane.stop_apiserver()
                # Placement goes on from the last view while the apiserver is away.
                assert c.place(gpus=72, nodes=18, domain="required").gpu_count == 72
                assert c.health() == "SERVING"
                held = c.reserve(gpus=4, nodes=1, ttl=600)
                assert next(stream).free_gpus == 140
                plane.start_apiserver()
                allocate(raw, ns, "after", [(driver, "rack0001-tray17", "gpu-0")])
                next_until(stream, 139, timeout=30)
                c.release(held.id)
                next_until(stream, 143)
                stream.close()
        finally:
            assert served.stop() == 0
    finally:
        client.close()


def test_service_waits_for_its_first_view(k8s_client: ApiClient, workdir: Path) -> None:
    """An unreachable apiserver: the service listens but reports NOT_SERVING."""
    import subprocess
    import sys

    kubeconfig = workdir / "nowhere.kubeconfig"
    kubeconfig.write_text(
        '{"apiVersion": "v1", "kind": "Config", "current-context": "x",'
        ' "clusters": [{"name": "x", "cluster": {"server": "https://127.0.0.1:9"}}],'
        ' "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],'
        ' "users": [{"name": "x", "user": {"token": "t"}}]}'
    )
    socket = workdir / "nowhere.sock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nvtopo", "serve", "--source", "kubernetes",
         "--kubeconfig", str(kubeconfig), "--socket", str(socket)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        with Client(socket) as c:
            assert c.health() == "NOT_SERVING"
    finally:
        proc.terminate()
        assert proc.wait(20) == 0
