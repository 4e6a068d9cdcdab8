"""Running ``nvtopo serve`` as its own process, for the service and Kubernetes tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nvtopo.service import Client, ServiceError

__all__ = ["Served", "start_serve"]


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
