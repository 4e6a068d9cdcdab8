"""Running ``nvtopo serve`` as its own process for the service tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import nvtopo
from nvtopo.jsonio import cluster_to_json
from nvtopo.service import Client, ServiceError

__all__ = ["Served", "busy_cluster", "start_serve"]


class Served:
    """A running ``nvtopo serve``: its process, socket, and log."""

    def __init__(self, proc: subprocess.Popen[bytes], socket: Path, log: Path) -> None:
        self.proc = proc
        self.socket = socket
        self.log = log
        self.target = f"unix:{socket}"

    def client(self, **kw: float) -> Client:
        return Client(self.target, **kw)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_serve(args: list[str], workdir: Path, *, timeout: float = 60.0) -> Served:
    """Start ``nvtopo serve ARGS`` on a socket in ``workdir``; return once health is SERVING."""
    socket = workdir / f"placement-{time.monotonic_ns()}.sock"
    log = socket.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nvtopo", "serve", "--socket", str(socket), *args],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    served = Served(proc, socket, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nvtopo serve exited {proc.returncode}:\n{log.read_text()}")
        if socket.exists():
            with served.client(timeout=2.0) as c:
                try:
                    if c.health() == "SERVING":
                        return served
                except ServiceError:
                    pass
        time.sleep(0.1)
    served.stop()
    raise AssertionError(f"nvtopo serve not SERVING in {timeout}s:\n{log.read_text()}")


def busy_cluster() -> nvtopo.Cluster:
    """Four GB200 NVL72 racks and two 8-GPU boxes, some GPUs already in use."""
    racks = nvtopo.cluster("gb200-nvl72x4")
    nodes = []
    for i, n in enumerate(racks.nodes):
        rack = int(n.name[4:8])
        if rack == 0 and i % 3 == 0:  # rack 0: a third of its trays half busy
            n = nvtopo.ClusterNode(n.name, n.topology, n.clique, free_gpus=(2, 3))
        if rack == 1 and i % 18 < 5:  # rack 1: five trays fully busy
            n = nvtopo.ClusterNode(n.name, n.topology, n.clique, free_gpus=())
        nodes.append(n)
    nodes.append(nvtopo.ClusterNode("h100-0", nvtopo.system("dgx-h100"), free_gpus=(0, 1, 4, 5, 6)))
    nodes.append(nvtopo.ClusterNode("b200-0", nvtopo.system("hgx-b200")))
    return nvtopo.Cluster(tuple(nodes))


@pytest.fixture(scope="module")
def cluster_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "cluster.json"
    path.write_text(json.dumps(cluster_to_json(busy_cluster())))
    return path


@pytest.fixture(scope="module")
def served(cluster_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``nvtopo serve`` on :func:`busy_cluster` for a whole test module."""
    s = start_serve(["--source", f"file:{cluster_file}"], tmp_path_factory.mktemp("serve"))
    try:
        yield s
    finally:
        s.stop()
