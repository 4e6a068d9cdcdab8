"""A real node for the end-to-end pod test: containerd (CRI, CDI) + runc + the kubelet.

containerd and the kubelet are built from their Go modules (``tests/kubelet/node/*``) once
and cached under ``~/.cache/nvtopo/kubelet-node/<digest>/``; runc and a static busybox come
from Debian (installed with apt-get when missing; we run as root). No registry is reachable,
so the pod's image and the sandbox ("pause") image are OCI archives written here from
busybox and imported with ``ctr``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.conftest import controlplane

HERE = Path(__file__).resolve().parent / "node"
BUSYBOX = Path("/bin/busybox")
RUNC = Path("/usr/sbin/runc")
POD_IMAGE = "docker.io/library/busybox:nvtopo"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


def _go_env() -> dict[str, str]:
    gopath = controlplane.cache_root() / "go"
    return dict(
        os.environ,
        GOPATH=str(gopath),
        GOMODCACHE=str(gopath / "pkg" / "mod"),
        GOCACHE=str(gopath / "build"),
        CGO_ENABLED="0",
        GOFLAGS="-mod=readonly -buildvcs=false",
    )


def build() -> Path:
    """Build containerd, its runc shim, ctr and the kubelet into the cache; return the dir."""
    h = hashlib.sha256()
    for part in ("kubelet", "containerd"):
        for name in ("go.mod", "go.sum", "tools.go"):
            h.update((HERE / part / name).read_bytes())
    out = controlplane.cache_root() / "kubelet-node" / h.hexdigest()[:16]
    wanted = ("kubelet", "containerd", "containerd-shim-runc-v2", "ctr")
    if all(os.access(out / b, os.X_OK) for b in wanted):
        return out
    out.mkdir(parents=True, exist_ok=True)
    go = shutil.which("go") or "/usr/local/go/bin/go"
    with (out / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jobs = [
            ("kubelet", ["k8s.io/kubernetes/cmd/kubelet"]),
            ("containerd", [f"github.com/containerd/containerd/v2/cmd/{c}" for c in wanted[1:]]),
        ]
        for part, packages in jobs:
            tmp = out / f".{part}.build"
            proc = subprocess.run(
                [go, "build", "-trimpath", "-o", f"{tmp}/", *packages],
                cwd=HERE / part,
                env=_go_env(),
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
                pytest.fail(f"building {part} failed:\n{tail}", pytrace=False)
            for binary in tmp.iterdir():
                os.replace(binary, out / binary.name)
            tmp.rmdir()
    return out


def debian_tools() -> None:
    """runc and a static busybox from Debian's archive, installed when missing."""
    if RUNC.exists() and BUSYBOX.exists():
        return
    for args in (["update", "-q"], ["install", "-y", "-q", "runc", "busybox-static"]):
        done = subprocess.run(["apt-get", *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"apt-get {' '.join(args)} failed:\n{done.stderr[-2000:]}", pytrace=False)


def _entry(tar: tarfile.TarFile, name: str, data: bytes | None, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mode = 0o755
    if data is None and not link:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif link:
        info.type = tarfile.SYMTYPE
        info.linkname = link
        tar.addfile(info)
    else:
        assert data is not None
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def image_archive(path: Path, name: str, cmd: list[str]) -> Path:
    """An OCI image archive of one layer holding a static busybox, tagged ``name``."""
    layer_io = io.BytesIO()
    with tarfile.open(fileobj=layer_io, mode="w") as t:
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp"):
            _entry(t, d, None)
        _entry(t, "bin/busybox", BUSYBOX.read_bytes())
        for tool in ("sh", "env", "sleep", "sort"):
            _entry(t, f"bin/{tool}", None, link="busybox")
    layer = layer_io.getvalue()

    def digest(b: bytes) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()

    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
    }).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer), "size": len(layer)}],
    }).encode()  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest(manifest), "size": len(manifest),
        "annotations": {"io.containerd.image.name": name},
    }]}).encode()  # fmt: skip
    with tarfile.open(path, "w") as t:
        _entry(t, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        _entry(t, "index.json", index)
        for blob in (layer, config, manifest):
            _entry(t, "blobs/sha256/" + digest(blob)[7:], blob)
    return path


def _containerd_config(base: Path, cdi: Path) -> str:
    # native snapshotter: no overlay mounts inside this machine's own overlay root; the OOM
    # score is kept at containerd's own (lowering it needs CAP_SYS_RESOURCE, which this
    # machine's container lacks); CDI is always on in containerd 2.
    return f"""version = 3
root = "{base}/root"
state = "{base}/state"
[grpc]
  address = "{base}/containerd.sock"
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'native'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{PAUSE_IMAGE}'
  [plugins.'io.containerd.cri.v1.runtime']
    cdi_spec_dirs = ['{cdi}']
    disable_apparmor = true
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '{RUNC}'
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
"""


def _kubelet_config(sock: Path, logs: Path) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"""apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication: {{anonymous: {{enabled: true}}, webhook: {{enabled: false}}}}
authorization: {{mode: AlwaysAllow}}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{sock}
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzPort: 0
localStorageCapacityIsolation: false
evictionHard: {{}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
podLogsDir: {logs}
resolvConf: ""
"""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def node(base: Path, kubeconfig: Path, name: str, cdi: Path) -> Iterator[dict[str, Any]]:
    """Run containerd and a kubelet for node ``name``; yield their paths; stop both."""
    bins = build()
    debian_tools()
    ctrd = base / "containerd"
    ctrd.mkdir(parents=True)
    (base / "containerd.toml").write_text(_containerd_config(ctrd, cdi))
    env = dict(os.environ, PATH=f"{bins}:{os.environ.get('PATH', '')}")
    procs: list[subprocess.Popen[bytes]] = []
    with (base / "containerd.log").open("wb") as clog, (base / "kubelet.log").open("wb") as klog:
        procs.append(subprocess.Popen(
            [str(bins / "containerd"), "--config", str(base / "containerd.toml")],
            stdout=clog, stderr=subprocess.STDOUT, env=env,
        ))  # fmt: skip
        sock = ctrd / "containerd.sock"
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        ctr = [str(bins / "ctr"), "-a", str(sock), "-n", "k8s.io"]
        try:
            for image, cmd in ((POD_IMAGE, ["sh"]), (PAUSE_IMAGE, ["sleep", "infinity"])):
                archive = image_archive(base / f"{image.rsplit('/', 1)[1]}.tar", image, cmd)
                subprocess.run([*ctr, "images", "import", str(archive)], check=True, env=env,
                               capture_output=True)  # fmt: skip
            logs = base / "pods"
            (base / "kubelet.yaml").write_text(_kubelet_config(sock, logs))
            root = base / "kubelet"
            procs.append(subprocess.Popen(
                [str(bins / "kubelet"), f"--config={base / 'kubelet.yaml'}",
                 f"--kubeconfig={kubeconfig}", f"--root-dir={root}",
                 f"--hostname-override={name}", "--v=2"],
                stdout=klog, stderr=subprocess.STDOUT, env=env,
            ))  # fmt: skip
            yield {"root": root, "logs": logs, "kubelet_log": base / "kubelet.log", "ctr": ctr}
        finally:
            for proc in reversed(procs):
                _stop(proc)
            _unmount_under(base)


def _unmount_under(base: Path) -> None:
    # The kubelet bind-mounts its root directory onto itself (to make it a shared mount).
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{base}/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
