"""Build the pinned control plane from scripts/k8s/go.mod into a per-version cache.

Four executables: etcd, kube-apiserver, kube-scheduler and kube-controller-manager.

The binaries land in ``~/.cache/nvtopo/k8s/<kubernetes version>/`` beside a stamp of
go.mod + go.sum; the Go module and build caches stay in ``~/.cache/nvtopo/go``. Needs only
the standard library and a Go toolchain.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "GO_MODULE_DIR",
    "SCHEMA_VERSION",
    "Binaries",
    "ControlPlaneError",
    "build",
    "cache_root",
    "find_binaries",
    "openapi_spec",
    "pinned_versions",
]

#: The oldest release nvtopo's objects must stay valid for: the first with resource.k8s.io/v1.
SCHEMA_VERSION = "v1.34.4"

GO_MODULE_DIR = Path(__file__).resolve().parent
LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The binaries cannot be built or the control plane did not come up."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the control-plane executables and the versions they were built from."""

    kube_apiserver: Path
    etcd: Path
    kubernetes_version: str
    etcd_version: str
    kube_scheduler: Path
    kube_controller_manager: Path

    def all(self) -> tuple[Path, ...]:
        """Every executable, the ones each fixture needs and the ones only some start."""
        return (self.etcd, self.kube_apiserver, self.kube_scheduler, self.kube_controller_manager)


# (file name, Go package, the name `go build -o DIR/` gives it) of each executable, all built
# by one `go build`; a package path ending in a major version (/v3) is named by the element
# before it.
PACKAGES = (
    ("etcd", "go.etcd.io/etcd/server/v3", "server"),
    ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
    ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler", "kube-scheduler"),
    (
        "kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "kube-controller-manager",
    ),
)


def cache_root() -> Path:
    """``~/.cache/nvtopo`` (``$XDG_CACHE_HOME/nvtopo`` when that is set)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nvtopo"


def pinned_versions() -> tuple[str, str]:
    """The (kubernetes, etcd) versions required by ``scripts/k8s/go.mod``."""
    text = (GO_MODULE_DIR / "go.mod").read_text()
    kube = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", text, re.M)
    etcd = re.search(r"^\s*go\.etcd\.io/etcd/server/v3 (v\S+)", text, re.M)
    if kube is None or etcd is None:
        raise ControlPlaneError(f"{GO_MODULE_DIR / 'go.mod'}: no k8s.io/kubernetes or etcd version")
    return kube.group(1), etcd.group(1)


def _module_digest() -> str:
    # The stamp ties the cached binaries to go.mod and go.sum, so bumping a pin rebuilds.
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        h.update((GO_MODULE_DIR / name).read_bytes())
    return h.hexdigest()


def _bin_dir() -> Path:
    override = os.environ.get("NVTOPO_K8S_ASSETS")
    if override:
        return Path(override)
    return cache_root() / "k8s" / pinned_versions()[0]


def _binaries_in(directory: Path) -> Binaries:
    kube, etcd = pinned_versions()
    return Binaries(
        kube_apiserver=directory / "kube-apiserver",
        etcd=directory / "etcd",
        kubernetes_version=kube,
        etcd_version=etcd,
        kube_scheduler=directory / "kube-scheduler",
        kube_controller_manager=directory / "kube-controller-manager",
    )


def find_binaries() -> Binaries | None:
    """The cached binaries when all exist and match the pinned go.mod/go.sum, else None.

    ``NVTOPO_K8S_ASSETS`` names a directory of prebuilt ``etcd``, ``kube-apiserver``,
    ``kube-scheduler`` and ``kube-controller-manager`` to use as they are.
    """
    directory = _bin_dir()
    found = _binaries_in(directory)
    if not all(os.access(path, os.X_OK) for path in found.all()):
        return None
    if os.environ.get("NVTOPO_K8S_ASSETS"):
        return found
    stamp = directory / "stamp"
    if not stamp.is_file() or stamp.read_text().strip() != _module_digest():
        return None
    return found


def _find_go() -> str:
    go = shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go") if os.access(p, os.X_OK)), None
    )
    if go is None:
        raise ControlPlaneError(
            "cannot build the Kubernetes control plane: no Go toolchain on PATH (install "
            "Go >= 1.26, or set NVTOPO_K8S_ASSETS to a directory holding the four binaries, or "
            "NVTOPO_K8S=skip to deselect the Kubernetes tests)"
        )
    return go


def _go_env() -> dict[str, str]:
    gopath = cache_root() / "go"
    env = dict(os.environ)
    env.update(
        GOPATH=str(gopath),
        GOMODCACHE=str(gopath / "pkg" / "mod"),
        GOCACHE=str(gopath / "build"),
        # The binaries are plain Go (the control plane ships statically linked).
        CGO_ENABLED="0",
        GOFLAGS="-mod=readonly -buildvcs=false",
    )
    return env


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two pytest runs or a `make -j` must not build into the same directory at once.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go(go: str, args: list[str], nice: list[str]) -> str:
    proc = subprocess.run(
        [*nice, go, *args],
        cwd=GO_MODULE_DIR,
        env=_go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-LOG_TAIL_LINES:])
        raise ControlPlaneError(f"go {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def _kube_ldflags(kube: str) -> str:
    # The release process stamps the version into these variables; without them the
    # apiserver reports v0.0.0-master. The build date is the tag's (from the module proxy),
    # so two builds of one pin give the same binary.
    info = (
        cache_root() / "go" / "pkg" / "mod" / "cache" / "download" / "k8s.io" / "kubernetes"
        / "@v" / f"{kube}.info"
    )  # fmt: skip
    try:
        date = str(json.loads(info.read_text())["Time"])
    except (OSError, ValueError, KeyError):
        date = "1970-01-01T00:00:00Z"
    major, minor = kube.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": kube,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": date,
    }
    return "".join(
        f" -X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in values.items()
    )


def build(*, force: bool = False, log: Callable[[str], None] | None = None) -> Binaries:
    """Build the pinned control plane into the cache; a no-op when it is there.

    Parameters
    ----------
    force
        Rebuild even when cached binaries match the pins.
    log
        Receives one progress line per step (default: print to stderr).
    """
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if not force and (found := find_binaries()) is not None:
        return found
    if os.environ.get("NVTOPO_K8S_ASSETS"):
        raise ControlPlaneError(
            f"NVTOPO_K8S_ASSETS={os.environ['NVTOPO_K8S_ASSETS']} lacks one of "
            + ", ".join(name for name, _, _ in PACKAGES)
        )
    kube, etcd = pinned_versions()
    directory = _bin_dir()
    go = _find_go()
    with _locked(directory.parent / f".{kube}.lock"):
        if not force and (found := find_binaries()) is not None:
            return found  # another process built it while this one waited
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "stamp").unlink(missing_ok=True)
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        say("downloading the pinned Go modules...")
        _go(go, ["mod", "download", "-json", "k8s.io/kubernetes"], nice)
        say(
            f"building Kubernetes {kube} (apiserver, scheduler, controller-manager) and etcd "
            f"{etcd} into {directory} (first run takes a long while on 2 cores)..."
        )
        started = time.monotonic()
        staging = directory / ".build"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        # One `go build` of all four shares the compile of their common packages; the -X
        # flags name packages etcd does not link, which the linker ignores.
        _go(
            go,
            [
                "build", "-trimpath", f"-ldflags=-s -w{_kube_ldflags(kube)}",
                "-o", f"{staging}/", *(package for _, package, _ in PACKAGES),
            ],
            nice,
        )  # fmt: skip
        for name, _, built in PACKAGES:
            (staging / built).replace(directory / name)
        shutil.rmtree(staging, ignore_errors=True)
        say(f"built the control plane in {time.monotonic() - started:.0f} s")
        (directory / "stamp").write_text(_module_digest() + "\n")
    found = find_binaries()
    assert found is not None
    return found


def openapi_spec(group_version: str, *, kube: str = SCHEMA_VERSION) -> Path:
    """The OpenAPI v3 document of ``group_version`` (``resource.k8s.io/v1``) in release ``kube``.

    Taken from the ``k8s.io/kubernetes`` module of that release (``api/openapi-spec/v3``),
    downloaded into the shared Go module cache on first use.
    """
    go = _find_go()
    group, _, version = group_version.rpartition("/")
    out = _go(go, ["mod", "download", "-json", f"k8s.io/kubernetes@{kube}"], [])
    directory = Path(json.loads(out)["Dir"])
    name = f"apis__{group}__{version}_openapi.json" if group else f"api__{version}_openapi.json"
    path = directory / "api" / "openapi-spec" / "v3" / name
    if not path.is_file():
        raise ControlPlaneError(f"k8s.io/kubernetes@{kube} has no OpenAPI document {name}")
    return path
