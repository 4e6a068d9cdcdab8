"""The placement service: ``Place`` over the unix socket against in-process ``place``.

``nvtopo serve --source system:gb200-nvl72x1024`` runs as its own process; the load comes
from the Go client the tests build (``tests/service/goclient -bench-clients N``): N callers,
each on its own connection, sending dry-run ``Place`` calls back to back (a 16-node gang of
4 GPUs, ``domain=required``). Beside it, the same request through
:class:`nvtopo.service.PlacementState` in this process, so the cost of the RPC shows.

Usage: ``python benches/bench_service.py [--quick] [--write]``; ``--write`` puts the section
and its targets into ``benches/RESULTS.md`` (``benches/run.py`` also runs it as ``service``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import nvtopo  # noqa: E402
from benches._common import Section, Table, Target, fmt_ns, median, percentile  # noqa: E402

__all__ = ["FULL", "QUICK", "ServiceConfig", "run"]

RESULTS = ROOT / "benches" / "RESULTS.md"


@dataclass(frozen=True)
class ServiceConfig:
    cluster: str = "gb200-nvl72x1024"
    clients: tuple[int, ...] = (1, 8, 64)
    seconds: float = 5.0
    inproc_calls: int = 5000


FULL = ServiceConfig()
QUICK = ServiceConfig(cluster="gb200-nvl72x4", seconds=1.0, inproc_calls=500)
REQUEST = {"gpus": 64, "nodes": 16, "domain": "required"}


def _serve(cluster: str, socket: Path) -> subprocess.Popen[bytes]:
    from nvtopo.service import Client, ServiceError

    proc = subprocess.Popen(
        [sys.executable, "-m", "nvtopo", "serve", "--source", f"system:{cluster}",
         "--socket", str(socket)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nvtopo serve exited {proc.returncode}")
        if socket.exists():
            with Client(socket, timeout=2) as c:
                try:
                    if c.health() == "SERVING":
                        return proc
                except ServiceError:
                    pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("nvtopo serve did not get ready")


def _inproc(cfg: ServiceConfig) -> list[int]:
    from nvtopo.service import PlacementState

    state = PlacementState(nvtopo.cluster(cfg.cluster))
    req = nvtopo.PlacementRequest(**REQUEST)  # type: ignore[arg-type]
    for _ in range(50):
        state.place(req)
    clock = time.perf_counter_ns
    out = []
    for _ in range(cfg.inproc_calls):
        t0 = clock()
        state.place(req)
        out.append(clock() - t0)
    return out


def run(cfg: ServiceConfig = FULL) -> Section:
    sys.path.insert(0, str(ROOT))
    from tests.service.gobuild import build_goclient

    section = Section(f"Placement service: `Place` over the unix socket ({cfg.cluster})")
    goclient = build_goclient()
    rows = []
    measured: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        socket = Path(tmp) / "placement.sock"
        server = _serve(cfg.cluster, socket)
        try:
            for n in cfg.clients:
                out = subprocess.run(
                    [str(goclient), "-target", f"unix:{socket}", "-gpus", "64", "-nodes", "16",
                     "-domain", "required", "-bench-clients", str(n),
                     "-bench-seconds", str(cfg.seconds)],
                    capture_output=True, text=True, check=True, timeout=cfg.seconds + 120,
                )  # fmt: skip
                r = json.loads(out.stdout.strip().splitlines()[-1])
                measured[n] = r
                rows.append(
                    (
                        f"gRPC, {n} client{'s' if n > 1 else ''} (Go, one connection each)",
                        fmt_ns(r["p50us"] * 1e3),
                        fmt_ns(r["p99us"] * 1e3),
                        f"{r['callsPerSecond']:,.0f}",
                        f"{r['calls']:,} ({r['errors']} errors)",
                    )
                )
        finally:
            server.terminate()
            server.wait(30)
    ns = _inproc(cfg)
    rows.append(
        (
            "in-process `PlacementState.place`, 1 thread",
            fmt_ns(median(ns)),
            fmt_ns(percentile(ns, 99)),
            f"{1e9 / median(ns):,.0f}",
            f"{len(ns):,}",
        )
    )
    section.tables.append(
        Table(
            "Dry-run `Place` of a 16-node gang (64 GPUs, domain required)",
            ("caller", "p50", "p99", "calls/s", "calls"),
            tuple(rows),
            (
                "Server and load generator share the machine's cores. The in-process row is "
                "the same request on the same state without gRPC, so the difference is the "
                "RPC (protobuf, HTTP/2, the server's threads and Python's GIL). Each client "
                "calls again as soon as it has its answer, so with N clients the latency is "
                "about N / (calls/s): p99 ≤ 1 ms at 64 clients would take some 64,000 calls/s.",
            ),
        )
    )
    top = max(cfg.clients)
    if cfg.cluster == FULL.cluster and top in measured:
        r = measured[top]
        section.targets.append(
            Target(
                f"`Place` over the unix socket, {top} clients",
                "p99 ≤ 1 ms",
                fmt_ns(r["p99us"] * 1e3),
                r["p99us"] <= 1000,
            )
        )
        best = max(m["callsPerSecond"] for m in measured.values())
        section.targets.append(
            Target(
                "`Place` over the unix socket, calls/s",
                "≥ 5,000 calls/s",
                f"{best:,.0f} calls/s (best of {', '.join(map(str, cfg.clients))} clients)",
                best >= 5000,
            )
        )
    return section


_BEGIN = "<!-- bench_service: begin -->"
_END = "<!-- bench_service: end -->"


def write(section: Section, path: Path = RESULTS) -> None:
    """Put ``section`` (between markers) and its target rows into RESULTS.md."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    text = re.sub(rf"\n?{re.escape(_BEGIN)}.*?{re.escape(_END)}\n?", "\n", text, flags=re.S)
    rows = [f"| {t.what} | {t.target} | {t.measured} | {t.status} |" for t in section.targets]
    text = "\n".join(
        line for line in text.splitlines() if not line.startswith("| `Place` over the unix socket")
    )
    lines = text.splitlines()
    # Target rows go after the last row of the targets table.
    head = next((i for i, line in enumerate(lines) if line.startswith("| what | target |")), None)
    if head is not None and rows:
        end = head + 2
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        lines[end:end] = rows
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    info = (
        f"Measured {when} by `benches/bench_service.py` on the machine above, shared at the "
        f"time (1-minute load average {load:.1f} on its {os.cpu_count()} cores)."
    )
    body = [_BEGIN, f"## {section.title}", "", info, ""]
    for table in section.tables:
        body.append(table.markdown())
    body.append(_END)
    path.write_text("\n".join(lines).rstrip() + "\n\n" + "\n".join(body) + "\n")


def main(argv: list[str] | None = None) -> int:
    from benches._common import print_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 racks, 1 s per row")
    parser.add_argument("--write", action="store_true", help=f"update {RESULTS}")
    args = parser.parse_args(argv)
    section = run(QUICK if args.quick else FULL)
    print_section(section)
    if args.write:
        write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
