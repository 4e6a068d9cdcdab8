"""Run the core's criterion benches and read their medians back.

Criterion writes one ``benchmark.json`` (the bench's id) and ``new/estimates.json`` (its
statistics, in nanoseconds) per bench under ``$CARGO_TARGET_DIR/criterion``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CriterionResult", "bench_sources", "read_results", "run_criterion"]

ROOT = Path(__file__).resolve().parent.parent
CORE_BENCHES = ROOT / "rust" / "nvtopo-core" / "benches"


@dataclass(frozen=True)
class CriterionResult:
    id: str  # criterion's full id: "group/function/parameter"
    median_ns: float
    low_ns: float  # 95% confidence interval of the median
    high_ns: float


def target_dir() -> Path:
    """The cargo target folder the Makefile uses (``~/.cache/nvtopo/cargo-target``)."""
    env = os.environ.get("CARGO_TARGET_DIR")
    return Path(env) if env else Path.home() / ".cache" / "nvtopo" / "cargo-target"


def bench_sources() -> list[Path]:
    """The core's criterion bench files that measure something (not an empty ``main``)."""
    if not CORE_BENCHES.is_dir():
        return []
    return sorted(p for p in CORE_BENCHES.glob("*.rs") if "criterion_main!" in p.read_text())


def run_criterion(
    warm_up_s: float = 0.3, measure_s: float = 1.0, timeout_s: float = 480
) -> tuple[list[CriterionResult], str]:
    """``cargo bench -p nvtopo-core --bench ...`` with short times; results and a status line.

    The status line says what happened when nothing could be measured (no benches, cargo
    missing, build failure, timeout) so the report can say it instead of failing.
    """
    sources = bench_sources()
    if not sources:
        return [], "no criterion benches in rust/nvtopo-core/benches yet"
    env = dict(os.environ, CARGO_TARGET_DIR=str(target_dir()))
    # Name each bench target: `--benches` would also run the library's libtest harness,
    # which rejects criterion's options.
    targets = [arg for p in sources for arg in ("--bench", p.stem)]
    cmd = [
        "cargo", "bench", "-q", "-p", "nvtopo-core", *targets, "--",
        "--warm-up-time", str(warm_up_s), "--measurement-time", str(measure_s), "--noplot",
    ]  # fmt: skip
    started = time.time()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT / "rust", env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except FileNotFoundError:
        return [], "cargo not found"
    except subprocess.TimeoutExpired:
        return read_results(started), f"cargo bench ran past {timeout_s:.0f} s"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return read_results(started), f"cargo bench failed: {last}"
    results = read_results(started)
    return results, f"{len(results)} criterion benches" if results else "no results written"


def read_results(since: float = 0.0) -> list[CriterionResult]:
    """Every criterion result under the target folder written at or after ``since``."""
    root = target_dir() / "criterion"
    out = []
    for meta in sorted(root.rglob("new/benchmark.json")):
        estimates = meta.parent / "estimates.json"
        if not estimates.is_file() or estimates.stat().st_mtime < since:
            continue
        try:
            full_id = json.loads(meta.read_text())["full_id"]
            median = json.loads(estimates.read_text())["median"]
            ci = median["confidence_interval"]
            out.append(
                CriterionResult(
                    full_id,
                    float(median["point_estimate"]),
                    float(ci["lower_bound"]),
                    float(ci["upper_bound"]),
                )
            )
        except (OSError, ValueError, KeyError):
            continue  # a half-written file from an interrupted run: skip it
    return sorted(out, key=lambda r: natural_key(r.id))


def natural_key(text: str) -> tuple[tuple[int, str], ...]:
    """Sort key that puts ``all-free/2`` before ``all-free/10``."""
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"(\d+)", text))
