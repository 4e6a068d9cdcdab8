"""What every benchmark shares: timing, statistics, tables, targets, the machine."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "Section",
    "Table",
    "Target",
    "fmt_ns",
    "fmt_ratio",
    "judge_full_size",
    "machine",
    "median",
    "percentile",
    "print_section",
    "rss_bytes",
    "script_main",
    "time_calls",
]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by the nearest-rank rule; samples need not be sorted."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def time_calls(fn: Callable[[], Any], reps: int, warmup: int = 3) -> list[int]:
    """Nanoseconds of each of ``reps`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    out = []
    for _ in range(reps):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return out


def fmt_ns(ns: float) -> str:
    """``850 ns``, ``3.2 µs``, ``41 ms``, ``2.5 s``: three significant digits or so."""
    if ns != ns:  # NaN: nothing measured
        return "–"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            v = ns / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{ns:.0f} ns"


def fmt_ratio(x: float) -> str:
    if x != x:
        return "–"
    return f"{x:,.0f}×" if x >= 100 else f"{x:.3g}×"


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the peak, which is all getrusage gives
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass(frozen=True)
class Table:
    """One result table: a title, column headers, rows of already formatted cells."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join(" --- " for _ in self.headers) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        for note in self.notes:  # one paragraph each
            lines += ["", note]
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        widths = [len(h) for h in self.headers]
        for r in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [self.title, line.format(*self.headers), "  ".join("-" * w for w in widths)]
        out += [line.format(*r) for r in self.rows]
        return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Target:
    """A DESIGN.md performance target and where this run stands against it."""

    what: str
    target: str
    measured: str
    #: True met, False not met, None not measured in this run (the missing piece is named).
    met: bool | None

    @property
    def status(self) -> str:
        return {True: "met", False: "not met", None: "not measured"}[self.met]


@dataclass
class Section:
    """What one benchmark module reports."""

    title: str
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Medians (ns) through Python keyed like the core's criterion ids without the group
    #: prefix (``"dgx2-v100/all-free/3"``), so the runner can put the two side by side.
    python_ns: dict[str, float] = field(default_factory=dict)


def machine() -> dict[str, str]:
    """CPU model, core count, Python and date of this run."""
    cpu = platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" in fields:
        detail = [f"family {fields.get('cpu family', '?')}", f"model {fields.get('model', '?')}"]
        if "hypervisor" in fields.get("flags", "").split():
            detail.append("virtual machine")
        cpu = f"{fields['model name']} ({', '.join(detail)})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": cpu,
        "cores": str(cores),
        "Python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "OS": f"{platform.system()} {platform.release()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def print_section(section: Section) -> None:
    """A benchmark section on the terminal: a heading with the machine, tables, targets."""
    info = machine()
    print(f"# {section.title}  ({info['CPU']}, {info['cores']} cores, {info['Python']})\n")
    for table in section.tables:
        print(table.text())
        for note in table.notes:
            print(note)
    for t in section.targets:
        print(f"\ntarget: {t.what} {t.target}: {t.measured} -> {t.status}")
    for note in section.notes:
        print(note)


#: Nodes of DESIGN's cluster-size targets (1,024 NVL72 racks).
FULL_NODES = 18_432


def judge_full_size(
    section: Section,
    nodes: int,
    what: str,
    target: str,
    wall_s: float,
    cpu_s: float,
    limit_s: float,
) -> None:
    """Judge a target set for 18,432 nodes on a median wall time; a smaller (quick) run
    says the target is not judged."""
    if nodes >= FULL_NODES:
        measured = f"{wall_s:.2f} s median wall ({cpu_s:.2f} s CPU)"
        section.targets.append(Target(what, target, measured, wall_s <= limit_s))
    else:
        section.notes.append(f"Quick run on {nodes} nodes: the 18,432-node target is not judged.")


def script_main(doc: str, run: Callable[[bool], Section], argv: list[str] | None) -> int:
    """A benchmark script run alone: ``--quick`` for 4 racks instead of 1,024."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 racks instead of 1,024")
    args = parser.parse_args(argv)
    print_section(run(args.quick))
    return 0
