"""Build the Go client test program (tests/service/goclient) against the service's proto.

protoc comes from grpcio-tools; protoc-gen-go and protoc-gen-go-grpc are built from the Go
module proxy at the versions goclient/go.mod pins. Everything lands in
``~/.cache/nvtopo/goclient/<digest>/``, keyed by the Go sources and the .proto, so a second
run reuses the binary.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).resolve().parent / "goclient"
PROTO = ROOT / "proto"
MODULE = "nvtopo.dev/goclient"


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not os.access(go, os.X_OK):
        raise RuntimeError("no Go toolchain on PATH: the Go client test needs Go >= 1.26")
    return go


def _env(cache: Path) -> dict[str, str]:
    gopath = cache / "go"
    env = dict(os.environ)
    env.update(
        GOPATH=str(gopath),
        GOMODCACHE=str(gopath / "pkg" / "mod"),
        GOCACHE=str(gopath / "build"),
        CGO_ENABLED="0",
        GOFLAGS="-mod=readonly -buildvcs=false",
    )
    return env


def _digest() -> str:
    h = hashlib.sha256()
    for f in sorted([*SOURCE.iterdir(), *PROTO.rglob("*.proto")]):
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")


def build_goclient() -> Path:
    """Path of the built ``goclient`` binary (built on first use, then cached)."""
    cache = Path(os.environ.get("NVTOPO_CACHE", Path.home() / ".cache" / "nvtopo"))
    work = cache / "goclient" / _digest()
    binary = work / "bin" / "goclient"
    if binary.is_file():
        return binary
    work.parent.mkdir(parents=True, exist_ok=True)
    with (work.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.is_file():
            return binary
        env = _env(cache)
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(SOURCE, work)
        bin_dir = work / "bin"
        for tool in (
            "google.golang.org/protobuf/cmd/protoc-gen-go",
            "google.golang.org/grpc/cmd/protoc-gen-go-grpc",
        ):
            _run([_go(), "build", "-o", str(bin_dir / tool.rsplit("/", 1)[1]), tool], work, env)
        mapping = f"Mnvtopo/v1/placement.proto={MODULE}/nvtopov1"
        include = Path(grpc_tools.__file__).parent / "_proto"
        args = [
            "protoc",
            f"-I{PROTO}",
            f"-I{include}",
            f"--plugin=protoc-gen-go={bin_dir / 'protoc-gen-go'}",
            f"--plugin=protoc-gen-go-grpc={bin_dir / 'protoc-gen-go-grpc'}",
            f"--go_out={work}",
            f"--go_opt=module={MODULE},{mapping}",
            f"--go-grpc_out={work}",
            f"--go-grpc_opt=module={MODULE},{mapping}",
            "nvtopo/v1/placement.proto",
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        _run([_go(), "build", "-o", str(binary.with_suffix(".tmp")), "."], work, env)
        binary.with_suffix(".tmp").rename(binary)
    return binary
