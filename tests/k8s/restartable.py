"""A private control plane whose kube-apiserver a test can stop and start again.

The session's ``apiserver`` fixture is shared by every Kubernetes test, so a test that takes
the apiserver down starts its own pair with the same launcher
(``tests/k8s/conftest.py``'s ``controlplane``) and restarts only that one: same command line,
same port, same etcd, so clients reconnect to the address they knew.
"""

from __future__ import annotations

import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["RestartablePlane"]


class RestartablePlane:
    """``plane`` from ``controlplane.start``; :meth:`stop_apiserver`, :meth:`start_apiserver`."""

    def __init__(self, controlplane: Any, workdir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.plane = controlplane.start(
            workdir, controlplane.build(), timeout=120.0, extra_apiserver_args=extra_args
        )
        self.apiserver: subprocess.Popen[bytes] = self.plane._procs[0]
        self.args = Path(f"/proc/{self.apiserver.pid}/cmdline").read_bytes().split(b"\0")[:-1]
        self.extra: list[subprocess.Popen[bytes]] = []

    def stop_apiserver(self) -> None:
        """SIGTERM the apiserver and wait for it to exit."""
        self.apiserver.terminate()
        try:
            self.apiserver.wait(5)
        except subprocess.TimeoutExpired:
            self.apiserver.kill()
            self.apiserver.wait()

    def start_apiserver(self, timeout: float = 90.0) -> None:
        """Launch the apiserver again with its old command line; return once ``/readyz`` is 200."""
        with self.plane.apiserver_log.open("ab") as out:
            proc = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self.extra.append(proc)
        self.apiserver = proc
        context = ssl.create_default_context(cafile=str(self.plane.ca_file))
        request = urllib.request.Request(
            f"{self.plane.url}/readyz", headers={"Authorization": f"Bearer {self.plane.token}"}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"kube-apiserver exited: {proc.returncode}"
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.HTTPError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError("kube-apiserver not ready again in time")

    def close(self) -> None:
        for proc in self.extra:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.plane.stop()
