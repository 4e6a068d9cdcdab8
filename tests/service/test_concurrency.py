"""64 clients reserving and releasing at random: no GPU is ever promised twice.

Each client holds a few reservations at a time. The ledger below is the clients' own view:
a GPU enters it when a Reserve returns and leaves it just before its Release is sent, so if
the service ever handed out a GPU it still held, the ledger would see it twice.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import grpc
import pytest

from nvtopo.service import Client, Held, ServiceError

from .serving import start_serve

CLIENTS = 64
SECONDS = 6.0
REQUESTS = [
    {"gpus": 1},
    {"gpus": 2, "nodes": 1, "domain": "none"},
    {"gpus": 4, "nodes": 1},
    {"gpus": 8, "nodes": 2, "domain": "required"},
    {"gpus": 16, "nodes": 4, "domain": "required"},
    {"gpus": 12, "domain": "preferred"},
]


@pytest.mark.slow
def test_64_clients_never_share_a_gpu(tmp_path: Path) -> None:
    served = start_serve(["--source", "system:gb200-nvl72x2"], tmp_path)
    ledger: dict[tuple[str, int], str] = {}
    lock = threading.Lock()
    problems: list[str] = []
    counts = {"reserved": 0, "released": 0, "refused": 0, "placed": 0}
    stop = time.monotonic() + SECONDS

    def take(h: Held) -> None:
        with lock:
            counts["reserved"] += 1
            for n in h.placement.nodes:
                for g in n.gpus:
                    other = ledger.get((n.name, g))
                    if other is not None:
                        problems.append(f"{n.name} GPU {g} in {other} and {h.id}")
                    ledger[(n.name, g)] = h.id

    def give(h: Held) -> None:
        with lock:
            counts["released"] += 1
            for n in h.placement.nodes:
                for g in n.gpus:
                    ledger.pop((n.name, g), None)

    def client(seed: int) -> None:
        rng = random.Random(seed)
        held: list[Held] = []
        try:
            with Client(served.target, timeout=30) as c:
                while time.monotonic() < stop:
                    roll = rng.random()
                    if held and (roll < 0.45 or len(held) >= 3):
                        h = held.pop(rng.randrange(len(held)))
                        give(h)
                        c.release(h.id)
                    elif roll < 0.55:
                        try:
                            c.place(**rng.choice(REQUESTS))  # type: ignore[arg-type]
                        except ServiceError as exc:
                            if exc.code != grpc.StatusCode.FAILED_PRECONDITION:
                                raise
                        with lock:
                            counts["placed"] += 1
                    else:
                        key = f"c{seed}-{rng.getrandbits(32):08x}" if rng.random() < 0.5 else ""
                        try:
                            h = c.reserve(**rng.choice(REQUESTS), ttl=120, key=key)  # type: ignore[arg-type]
                        except ServiceError as exc:
                            if exc.code != grpc.StatusCode.FAILED_PRECONDITION:
                                raise
                            with lock:
                                counts["refused"] += 1
                            continue
                        take(h)
                        held.append(h)
                for h in held:
                    give(h)
                    c.release(h.id)
        except Exception as exc:
            with lock:
                problems.append(f"client {seed}: {exc!r}")

    try:
        with Client(served.target) as c:
            start = next(c.watch_capacity(timeout=10))
        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + 60)
        assert not problems, problems[:5]
        assert counts["reserved"] == counts["released"] > CLIENTS
        assert counts["refused"] > 0  # the cluster did fill up: contention was real
        with Client(served.target) as c:
            end = next(c.watch_capacity(timeout=10))
        assert end.reservations == 0
        assert end.free_gpus == start.free_gpus == 144
        assert end.cliques == start.cliques
        print(f"\n64 clients, {SECONDS:.0f}s: {counts}")
    finally:
        assert served.stop() == 0
