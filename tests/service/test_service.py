"""``nvtopo serve`` driven by the generated Go client and by nvtopo.service.Client.

Every answer is checked against nvtopo's in-process functions on the same cluster.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

import nvtopo
from nvtopo.place import Placement
from nvtopo.service import Client, Held, ServiceError

from .conftest import Served, busy_cluster
from .gobuild import build_goclient

REQUEST = {"gpus": 16, "nodes": 4, "domain": "required"}


def as_json(p: Placement) -> dict[str, object]:
    return {
        "nodes": [{"name": n.name, "gpus": list(n.gpus)} for n in p.nodes],
        "cliques": list(p.cliques),
        "computeDomain": p.compute_domain,
        "gpuCount": p.gpu_count,
    }


@pytest.mark.slow
def test_go_client_drives_every_rpc(served: Served) -> None:
    binary = build_goclient()
    args = ["-target", served.target, "-gpus", "16", "-nodes", "4", "-domain", "required"]
    run = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr
    calls = [json.loads(line) for line in run.stdout.splitlines()]
    assert [c["call"] for c in calls] == [
        "Health", "WatchCapacity", "Place", "Explain", "Reserve", "WatchCapacity", "Release",
        "WatchCapacity", "BadPlace",
    ]  # fmt: skip
    by = {}
    for c in calls:
        by.setdefault(c["call"], []).append(c)
    cluster = busy_cluster()
    want = as_json(nvtopo.place(cluster, **REQUEST))  # type: ignore[arg-type]
    free = sum(len(n.free) for n in cluster.nodes)

    assert by["Health"][0]["status"] == "SERVING"
    assert by["Place"][0]["placement"] == want and by["Place"][0]["reservationId"] == ""
    assert by["Explain"][0]["placement"] == want
    verdicts = by["Explain"][0]["verdicts"]
    assert len(verdicts) == len(cluster.cliques) == 4
    assert verdicts[want["cliques"][0]] == "VERDICT_TAKEN"  # type: ignore[index]
    assert sorted(verdicts.values()).count("VERDICT_TAKEN") == 1
    assert by["Reserve"][0]["placement"] == want
    assert by["Reserve"][0]["created"] and by["Reserve"][0]["sameOnRetry"]
    assert by["Release"][0]["placement"] == want
    assert by["Release"][0]["againCode"] == "NotFound"
    watch = by["WatchCapacity"]
    assert watch[0]["freeGpus"] == free and watch[0]["reservations"] == 0 and watch[0]["token"]
    assert watch[0]["cliques"] == 5  # four racks and the nodes outside any clique
    assert (watch[1]["freeGpus"], watch[1]["reservations"]) == (free - 16, 1)
    assert (watch[2]["freeGpus"], watch[2]["reservations"]) == (free, 0)
    assert by["BadPlace"][0]["invalid"] and "request.gpus" in by["BadPlace"][0]["message"]


def test_python_client_matches_nvtopo(served: Served) -> None:
    cluster = busy_cluster()
    with served.client() as c:
        for request in [
            {"gpus": 1},
            {"gpus": 6, "domain": "none"},
            {"gpus": 16, "nodes": 4, "domain": "required"},
            {"gpus": 40, "nodes": 10, "domain": "preferred"},
            {"gpus": 72, "nodes": 18, "domain": "required"},
        ]:
            assert c.place(**request) == nvtopo.place(cluster, **request), request  # type: ignore[arg-type]
        for node, k in [("h100-0", 3), ("rack0000-tray00", 2), ("b200-0", 8)]:
            n = cluster.node(node)
            want = nvtopo.select_gpus(n.topology, k, available=n.free)
            assert c.select(node, k) == want
        ex = c.explain(gpus=72, nodes=18, domain="required")
        assert ex.placement == nvtopo.place(cluster, gpus=72, nodes=18, domain="required")
        verdicts = {v.clique: v for v in ex.cliques}
        racks = sorted(cluster.cliques)
        rack0 = cluster.node("rack0000-tray00").domain
        rack1 = cluster.node("rack0001-tray00").domain
        assert verdicts[rack0].verdict == "too_few_free_nodes"  # type: ignore[index]
        assert verdicts[rack1].verdict == "too_few_free_nodes"  # type: ignore[index]
        assert verdicts[rack1].eligible_nodes == 13  # type: ignore[index]
        assert sorted(v.verdict for v in ex.cliques) == [
            "ranked_lower", "taken", "too_few_free_nodes", "too_few_free_nodes",
        ]  # fmt: skip
        assert len(racks) == 4
        nothing = c.explain(gpus=76, nodes=19, domain="required")
        assert nothing.placement is None and "clique" in nothing.infeasible
        assert {v.verdict for v in nothing.cliques} == {"too_few_free_nodes"}


def test_reservations_hold_expire_and_resume(served: Served) -> None:
    with served.client() as c:
        stream = c.watch_capacity(timeout=30)
        first = next(stream)
        # Place without dry run holds until released, like a reservation without TTL.
        held = c.place(gpus=8, nodes=1, domain="none", dry_run=False)
        assert isinstance(held, Held) and held.id.startswith("r-")
        short = c.reserve(gpus=4, nodes=1, ttl=1, key="short-lived")
        assert short.expires_unix_ms > time.time() * 1000
        updates = [next(stream), next(stream)]
        assert updates[-1].free_gpus == first.free_gpus - 12 and updates[-1].reservations == 2
        assert not set(held.placement.nodes) & set(short.placement.nodes)
        # The TTL runs out: capacity comes back without a call.
        expired = next(stream)
        assert expired.free_gpus == first.free_gpus - 8 and expired.reservations == 1
        with pytest.raises(ServiceError) as gone:
            c.release(short.id)
        assert gone.value.code.name == "NOT_FOUND" and "expired" in gone.value.details
        c.release(held.id)
        back = next(stream)
        assert back.free_gpus == first.free_gpus
        # A stream resumed from the current token waits for the next change ...
        resumed = c.watch_capacity(resume_token=back.resume_token, timeout=30)
        other = c.reserve(gpus=1, ttl=30)
        assert next(resumed).free_gpus == first.free_gpus - 1
        c.release(other.id)
        # ... one from an unknown or older token starts with the capacity now.
        fresh = c.watch_capacity(resume_token="00000000.3", timeout=30)
        assert next(fresh).free_gpus == first.free_gpus
        for s in (stream, resumed, fresh):
            s.close()


def test_idempotency_keys(served: Served) -> None:
    with served.client() as c:
        a = c.reserve(gpus=2, ttl=30, key="job-7.attempt:1")
        b = c.reserve(gpus=2, ttl=30, key="job-7.attempt:1")
        assert (a.id, a.placement, a.created, b.created) == (b.id, b.placement, True, False)
        with pytest.raises(ServiceError) as other:
            c.reserve(gpus=3, ttl=30, key="job-7.attempt:1")
        assert other.value.code.name == "ALREADY_EXISTS" and a.id in other.value.details
        c.release(a.id)
        again = c.reserve(gpus=2, ttl=30, key="job-7.attempt:1")  # the key is free again
        assert again.created and again.id != a.id
        c.release(again.id)


def test_health_and_reflection(served: Served) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with served.client() as c:
        assert c.health("nvtopo.v1.PlacementService") == "SERVING"
        stub = reflection_pb2_grpc.ServerReflectionStub(c.channel)
        answers = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"nvtopo.v1.PlacementService", "grpc.health.v1.Health"} <= names


def test_socket_is_0660(served: Served) -> None:
    assert served.socket.stat().st_mode & 0o777 == 0o660


def test_sigterm_ends_streams_and_exits_cleanly(served: Served) -> None:
    from .serving import start_serve

    s = start_serve(["--source", "system:gb200-nvl72x2", "--grace", "2"], served.socket.parent)
    with Client(s.target) as c:
        stream = c.watch_capacity(timeout=60)
        assert next(stream).free_gpus == 144
        t = time.monotonic()
        assert s.stop() == 0
        assert list(stream) == []  # the stream ended, without an error
        assert time.monotonic() - t < 15
    assert not s.socket.exists()
    assert "stopping" in s.log.read_text()
