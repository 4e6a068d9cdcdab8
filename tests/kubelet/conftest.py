"""Fixtures for the kubelet plugin tests: the kubelet's side (a Go program) and the plugin.

``kubeletside`` is built from ``tests/kubelet/kubeletside`` (the kubelet's own plugin
manager and DRA client, k8s.io/kubernetes at the test control plane's release) once per
content of its sources, and cached under ``~/.cache/nvtopo/kubeletside/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.conftest import apiserver, controlplane, k8s_client

__all__ = ["KubeletSide", "Plugin", "apiserver", "k8s_client"]

SOURCE = Path(__file__).resolve().parent / "kubeletside"
REPO = Path(__file__).resolve().parents[2]


def _digest() -> str:
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        h.update((SOURCE / name).read_bytes())
    return h.hexdigest()[:16]


def build_kubeletside() -> Path:
    """Build (or find cached) the kubelet-side program; fail with the build's tail."""
    out = controlplane.cache_root() / "kubeletside" / _digest()
    binary = out / "kubeletside"
    if os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go") or "/usr/local/go/bin/go"
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(binary, os.X_OK):
            return binary
        gopath = controlplane.cache_root() / "go"
        env = dict(
            os.environ,
            GOPATH=str(gopath),
            GOMODCACHE=str(gopath / "pkg" / "mod"),
            GOCACHE=str(gopath / "build"),
            CGO_ENABLED="0",
            GOFLAGS="-mod=readonly -buildvcs=false",
        )
        proc = subprocess.run(
            [go, "build", "-trimpath", "-o", str(binary) + ".new", "."],
            cwd=SOURCE,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
            pytest.fail(f"building the kubelet side failed:\n{tail}", pytrace=False)
        os.replace(str(binary) + ".new", binary)
    return binary


@pytest.fixture(scope="session")
def kubeletside_binary() -> Path:
    return build_kubeletside()


def _close_pipes(proc: subprocess.Popen[str]) -> None:
    # The reader threads end at EOF; closing here keeps the files from being reported unclosed.
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            with contextlib.suppress(OSError, ValueError):
                pipe.close()


class KubeletSide:
    """The kubelet-side program: one command line in, one JSON object out."""

    def __init__(self, binary: Path, registry: Path, kubeconfig: Path, node: str) -> None:
        self.proc = subprocess.Popen(
            [
                str(binary),
                f"-plugins-registry={registry}",
                f"-kubeconfig={kubeconfig}",
                f"-node={node}",
                "-v=2",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def ask(self, line: str, timeout: float = 60.0) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answers: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=lambda: answers.put(self.proc.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        try:
            text = answers.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"kubelet side: no answer to {line!r}:\n{''.join(self.log[-20:])}")
        if not text:
            pytest.fail(f"kubelet side exited:\n{''.join(self.log[-30:])}")
        result: dict[str, Any] = json.loads(text)
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BaseException):
                self.ask("quit", timeout=10)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drainer.join(timeout=10)
        _close_pipes(self.proc)


@dataclass
class Plugin:
    """``nvtopo kubelet-plugin`` as a process, with its JSON event lines collected."""

    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    readers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Plugin:
        self.events, self.stderr = [], []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nvtopo", "kubelet-plugin", *self.args, "--format", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, **self.env},
        )
        proc = self.proc

        def read_out() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                self.events.append(json.loads(line))

        def read_err() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.stderr.append(line)

        self.readers = [
            threading.Thread(target=read_out, daemon=True),
            threading.Thread(target=read_err, daemon=True),
        ]
        for reader in self.readers:
            reader.start()
        return self

    def event(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if e["event"] == kind:
                    return e
            assert self.proc is not None
            if self.proc.poll() is not None and not any(e["event"] == kind for e in self.events):
                pytest.fail(f"the plugin exited {self.proc.returncode}:\n{''.join(self.stderr)}")
            time.sleep(0.05)
        pytest.fail(f"no {kind!r} event from the plugin:\n{''.join(self.stderr)}")

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self.readers:
            reader.join(timeout=10)
        _close_pipes(self.proc)
        return self.proc.returncode


@pytest.fixture
def kubelet_dirs(tmp_path: Path) -> Iterator[dict[str, Path]]:
    # A unix socket path must stay under 108 bytes: keep the directories short.
    base = Path(f"/tmp/nvk-{os.getpid()}-{tmp_path.name[-12:]}")
    dirs = {
        "registry": base / "reg",
        "plugin": base / "plugin",
        "cdi": base / "cdi",
        "hostcdi": base / "hostcdi",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    yield dirs
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def kubelet_factory(
    kubeletside_binary: Path, apiserver: Any, kubelet_dirs: dict[str, Path]
) -> Iterator[Any]:
    started: list[KubeletSide] = []

    def make(node: str) -> KubeletSide:
        side = KubeletSide(kubeletside_binary, kubelet_dirs["registry"], apiserver.kubeconfig, node)
        started.append(side)
        return side

    yield make
    for side in started:
        side.close()
