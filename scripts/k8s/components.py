"""kube-scheduler and kube-controller-manager beside a running :class:`ControlPlane`.

Started only when a test (or ``k8s-test-env start --with ...``) asks for them, so the
apiserver-only plane stays cheap. Both run with the stock configuration, authenticate with
the plane's admin kubeconfig, serve their health endpoint on a free loopback port (with a
self-signed certificate they make themselves) and run without leader election.

The controller-manager runs only the controllers a cluster without kubelets can use: Jobs,
ResourceClaims from templates, garbage collection by owner and the pod garbage collector.
The node lifecycle controller is left out on purpose: with no kubelet heartbeats it would
mark every Node unreachable and taint it.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .controlplane import (
    FEATURE_GATES,
    ControlPlane,
    _free_port,
    stop_pid,
    stop_process,
    wait_for_200,
)

__all__ = [
    "CONTROLLERS",
    "Component",
    "start_controller_manager",
    "start_scheduler",
]

#: Controllers the test controller-manager runs (names as ``--controllers`` takes them).
CONTROLLERS = (
    "job-controller",
    "resourceclaim-controller",
    "garbage-collector-controller",
    "pod-garbage-collector-controller",
)


@dataclass(frozen=True)
class Component:
    """One running control-plane process; ``stop()`` ends it."""

    name: str
    pid: int
    log: Path
    health_url: str
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        proc = self._proc
        if proc is None:
            stop_pid(self.pid, grace)
            return
        stop_process(proc, grace)

    def running(self) -> bool:
        """Whether the process is still there."""
        if self._proc is not None:
            return self._proc.poll() is None
        try:
            Path(f"/proc/{self.pid}").stat()
        except OSError:
            return False
        return True


def _wait_healthy(
    name: str, url: str, proc: subprocess.Popen[bytes], log: Path, deadline: float
) -> None:
    # The endpoint's certificate is self-signed by the component; /healthz is served to
    # anyone (it is in the default --authorization-always-allow-paths).
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    wait_for_200(name, urllib.request.Request(url), context, proc, log, deadline)


def _launch(
    name: str,
    plane: ControlPlane,
    args: list[str],
    *,
    timeout: float,
    detach: bool,
    pid_file: Path | None,
) -> Component:
    port = _free_port()
    workdir = plane.workdir
    log = workdir / f"{name}.log"
    kubeconfig = str(plane.kubeconfig)
    argv = [
        *args,
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={workdir / (name + '-certs')}",
        "--leader-elect=false",
        f"--feature-gates={FEATURE_GATES}",
        "--profiling=false",
        "--v=1",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=detach,
        )  # fmt: skip
    if pid_file is not None:
        with pid_file.open("a") as record:
            record.write(f"{proc.pid} {argv[0]}\n")
    url = f"https://127.0.0.1:{port}/healthz"
    try:
        _wait_healthy(name, url, proc, log, time.monotonic() + timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        raise
    return Component(name=name, pid=proc.pid, log=log, health_url=url, _proc=proc)


def start_scheduler(
    plane: ControlPlane,
    *,
    timeout: float = 60.0,
    detach: bool = False,
    pid_file: Path | None = None,
) -> Component:
    """Start the pinned kube-scheduler (stock profile, DRA on) against ``plane``."""
    binary = plane.binaries.kube_scheduler
    return _launch(
        "kube-scheduler", plane, [str(binary)], timeout=timeout, detach=detach, pid_file=pid_file
    )


def start_controller_manager(
    plane: ControlPlane,
    *,
    timeout: float = 60.0,
    detach: bool = False,
    pid_file: Path | None = None,
) -> Component:
    """Start the pinned kube-controller-manager with :data:`CONTROLLERS` against ``plane``."""
    args = [
        str(plane.binaries.kube_controller_manager),
        f"--controllers={','.join(CONTROLLERS)}",
        # Each controller uses the admin credentials rather than a token of its own.
        "--use-service-account-credentials=false",
        # Pods without a kubelet never terminate on their own; collect them promptly.
        "--terminated-pod-gc-threshold=100",
    ]
    return _launch(
        "kube-controller-manager", plane, args, timeout=timeout, detach=detach, pid_file=pid_file
    )
