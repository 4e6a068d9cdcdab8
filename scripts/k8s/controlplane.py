"""Run a throwaway Kubernetes control plane (etcd + kube-apiserver) on loopback ports.

Used by ``scripts/k8s-test-env start`` and by the ``apiserver`` fixture in ``tests/k8s``;
:mod:`.components` adds the scheduler and controller-manager on request.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from ._pki import render_kubeconfig, write_pki
from .build import LOG_TAIL_LINES, Binaries, ControlPlaneError

__all__ = ["FEATURE_GATES", "SERVICE_ACCOUNT_ISSUER", "ControlPlane", "start", "stop_pid"]

#: DRA gates nvtopo relies on, stated on every component though v1.37 has them on (GA):
#: device taints in slices, and DeviceTaintRule objects for companion mode.
FEATURE_GATES = "DRADeviceTaints=true,DRADeviceTaintRules=true"

# The user the bearer token authenticates as; system:masters passes every RBAC check.
ADMIN_USER = "nvtopo-admin"
ADMIN_GROUP = "system:masters"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(empty log)"


@dataclass(frozen=True)
class ControlPlane:
    """A running etcd + kube-apiserver pair; ``stop()`` ends both.

    Attributes
    ----------
    url
        ``https://127.0.0.1:<port>`` of the apiserver.
    token
        Bearer token of a user in ``system:masters``.
    ca_file
        PEM file of the CA that signed the apiserver's serving certificate.
    kubeconfig
        A kubeconfig (JSON, which every YAML reader accepts) for that user.
    """

    url: str
    token: str
    ca_file: Path
    kubeconfig: Path
    etcd_url: str
    workdir: Path
    binaries: Binaries
    apiserver_log: Path
    etcd_log: Path
    pids: tuple[int, ...]
    _procs: tuple[subprocess.Popen[bytes], ...] = field(default=(), repr=False, compare=False)

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the apiserver, then etcd; kill whichever is still there after ``grace``."""
        procs = self._procs or ()
        for proc in procs:
            stop_process(proc, grace)
        if not procs:  # started by another process (scripts/k8s-test-env start)
            for pid in self.pids:
                stop_pid(pid, grace)


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Terminate a child we started, then kill it if it is still there after ``grace`` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_pid(pid: int, grace: float) -> None:
    """SIGTERM ``pid``, then SIGKILL it if it is still there after ``grace`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_etcd(url: str, proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ControlPlaneError(f"etcd exited with status {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if json.loads(resp.read()).get("health") == "true":
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise ControlPlaneError(f"etcd at {url} not healthy in time:\n{_tail(log)}")


def wait_for_200(
    name: str,
    request: urllib.request.Request,
    context: ssl.SSLContext,
    proc: subprocess.Popen[bytes],
    log: Path,
    deadline: float,
) -> None:
    """Poll ``request`` until it answers 200 while ``proc`` runs.

    Raises one :class:`ControlPlaneError` naming the component, the endpoint, its last
    answer and the last lines of its log when the process exits or time runs out.
    """
    path = urllib.parse.urlsplit(request.full_url).path
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ControlPlaneError(
                f"{name} exited with status {proc.returncode} before {path} answered; "
                f"last lines of {log}:\n{_tail(log)}"
            )
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[-500:]}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise ControlPlaneError(
        f"{name} at {request.full_url} not ready in time (last {path}: {last}); "
        f"last lines of {log}:\n{_tail(log)}"
    )


def _wait_ready(
    url: str, token: str, ca_file: Path, proc: subprocess.Popen[bytes], log: Path, deadline: float
) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(f"{url}/readyz", headers={"Authorization": f"Bearer {token}"})
    wait_for_200("kube-apiserver", request, context, proc, log, deadline)


def start(
    workdir: Path,
    binaries: Binaries,
    *,
    timeout: float = 120.0,
    detach: bool = False,
    pid_file: Path | None = None,
    extra_apiserver_args: tuple[str, ...] = (),
) -> ControlPlane:
    """Start etcd and kube-apiserver on free loopback ports and wait until ``/readyz`` is 200.

    Parameters
    ----------
    workdir
        An empty directory for etcd's data, the certificates, the logs and the kubeconfig.
    binaries
        From :func:`build` or :func:`find_binaries`.
    timeout
        Seconds to wait for both to be ready; on expiry both are stopped and
        :class:`ControlPlaneError` carries the tail of the apiserver log.
    detach
        Put both in their own session so they outlive this process (``k8s-test-env start``).
    pid_file
        Gets one ``<pid> <executable>`` line per process the moment it is launched, so that
        a caller killed while waiting still leaves a record to stop them by.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    pki = write_pki(workdir)
    token = secrets.token_urlsafe(32)
    token_file = workdir / "tokens.csv"
    token_file.write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"{ADMIN_GROUP}"\n')
    token_file.chmod(0o600)

    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
    url = f"https://127.0.0.1:{api_port}"
    etcd_log, apiserver_log = workdir / "etcd.log", workdir / "kube-apiserver.log"
    etcd_args = [
        str(binaries.etcd),
        "--name=default",
        f"--data-dir={workdir / 'etcd-data'}",
        f"--listen-client-urls={etcd_url}",
        f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=default={peer_url}",
        # Test data is thrown away: skipping fsync makes writes fast on a shared disk.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]
    apiserver_args = [
        str(binaries.kube_apiserver),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={api_port}",
        f"--cert-dir={workdir / 'apiserver-certs'}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--token-auth-file={token_file}",
        "--authorization-mode=RBAC",
        f"--service-account-key-file={pki.service_account_public}",
        f"--service-account-signing-key-file={pki.service_account_private}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        # On by default since 1.34; stated so that a later pin cannot silently drop it.
        "--runtime-config=resource.k8s.io/v1=true",
        # No controller-manager runs, so nothing creates the "default" ServiceAccount that
        # this plugin would demand of every Pod.
        "--disable-admission-plugins=ServiceAccount",
        # The endpoints of the "kubernetes" Service may not be a loopback address.
        "--endpoint-reconciler-type=none",
        # Only a config value here (no Service traffic); stated to silence its deprecated default.
        "--service-cluster-ip-range=10.0.0.0/24",
        "--profiling=false",
        f"--feature-gates={FEATURE_GATES}",
        *extra_apiserver_args,
    ]
    procs: list[subprocess.Popen[bytes]] = []

    def launch(args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=detach,
            )  # fmt: skip
        procs.append(proc)
        if pid_file is not None:
            with pid_file.open("a") as record:
                record.write(f"{proc.pid} {args[0]}\n")
        return proc

    def abort() -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    try:
        _wait_etcd(etcd_url, launch(etcd_args, etcd_log), etcd_log, deadline)
        apiserver = launch(apiserver_args, apiserver_log)
        _wait_ready(url, token, pki.ca_file, apiserver, apiserver_log, deadline)
    except BaseException:
        abort()
        raise
    config = workdir / "kubeconfig"
    config.write_text(render_kubeconfig(url, pki.ca_file, token, ADMIN_USER))
    config.chmod(0o600)
    return ControlPlane(
        url=url,
        token=token,
        ca_file=pki.ca_file,
        kubeconfig=config,
        etcd_url=etcd_url,
        workdir=workdir,
        binaries=binaries,
        apiserver_log=apiserver_log,
        etcd_log=etcd_log,
        # The apiserver first: it must stop before the store it writes to.
        pids=(procs[1].pid, procs[0].pid),
        _procs=(procs[1], procs[0]),
    )
