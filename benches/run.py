"""Run every benchmark, print its tables, and rewrite ``benches/RESULTS.md``.

Usage: ``make bench`` (or ``python benches/run.py [--quick] [--output PATH]``).
``--quick`` is a smoke run of the same code paths on small inputs; it writes a report only
where ``--output`` says.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, Python puts benches/ first on the path, where trace.py would shadow the
# standard library's `trace`: put the repository root there instead, so that `benches` is
# imported as a package.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "benches":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benches import (  # noqa: E402
    bench_core,
    bench_place,
    bench_publish,
    bench_readback,
    bench_select,
    bench_service,
    bench_slices,
    trace,
)
from benches._common import Section, Table, Target, fmt_ns, fmt_ratio, machine  # noqa: E402
from benches._criterion import CriterionResult, run_criterion  # noqa: E402

__all__ = ["main"]

RESULTS = ROOT / "benches" / "RESULTS.md"
PARTS = (
    "criterion",
    "core",
    "select",
    "place",
    "trace",
    "slices",
    "readback",
    "publish",
    "service",
)

#: DESIGN.md targets, listed as not measured when no part of this run judged them.
UNJUDGED = (
    Target(
        "ResourceSlices for 18,432 nodes",
        "built in ≤ 2 s",
        "not judged in this run (needs the full 18,432-node run)",
        None,
    ),
    Target(
        "reading back 18,432 nodes from their slices and claims",
        "≤ 2 s",
        "not judged in this run (needs the full 18,432-node run)",
        None,
    ),
    Target(
        "republishing unchanged slices",
        "zero API writes",
        "not judged in this run (needs a kube-apiserver: run `--only publish`)",
        None,
    ),
)


def criterion_section(results: list[CriterionResult], status: str) -> Section:
    """The core's medians, and the two core targets where the bench ids name the case."""
    section = Section("Rust core (criterion, `rust/nvtopo-core/benches`)")
    if results:
        section.tables.append(
            Table(
                "Criterion medians (short measurement times; 95% interval of the median)",
                ("bench", "median", "interval"),
                tuple(
                    (r.id, fmt_ns(r.median_ns), f"{fmt_ns(r.low_ns)} – {fmt_ns(r.high_ns)}")
                    for r in results
                ),
            )
        )
    else:
        section.notes.append(f"Not measured: {status}.")
    eight = [r for r in results if _is_8gpu_select(r.id)]
    sixteen = [r for r in results if _is_16gpu_select(r.id)]
    section.targets.append(
        _worst_target(
            eight,
            "`select_gpus`, 8-GPU node, random availability, core",
            "median ≤ 0.5 µs",
            500,
            status,
        )
    )
    # Two fixed 16-GPU shapes only: shown for reference, the any-topology target is judged
    # on 200 random nodes in the "core" part.
    if sixteen:
        worst = max(sixteen, key=lambda r: r.median_ns)
        section.notes.append(
            f"16-GPU criterion cases (two fixed shapes), slowest median: "
            f"{fmt_ns(worst.median_ns)} ({worst.id}); the target on any 16-GPU topology is "
            "judged in the next section."
        )
    by_id = {r.id: r for r in results}
    for r in results:
        if "/brute-force/" in r.id:
            fast = by_id.get(r.id.replace("/brute-force/", "/all-free/"))
            if fast is not None:
                section.notes.append(
                    f"Core against its own exhaustive search: `{r.id}` {fmt_ns(r.median_ns)}, "
                    f"`{fast.id}` {fmt_ns(fast.median_ns)} "
                    f"({fmt_ratio(r.median_ns / fast.median_ns)} faster)."
                )
    return section


def _worst_target(
    results: list[CriterionResult],
    what: str,
    target: str,
    limit_ns: float,
    status: str,
    *,
    label: str = "",
) -> Target:
    """The target judged on the slowest of ``results`` (not measured when there are none)."""
    if not results:
        return Target(what, target, status, None)
    worst = max(results, key=lambda r: r.median_ns)
    measured = f"{fmt_ns(worst.median_ns)} ({label}{worst.id})"
    return Target(what, target, measured, worst.median_ns <= limit_ns)


def _is_8gpu_select(bench_id: str) -> bool:
    """The core's 8-GPU random-availability bench (``select/dgx1-v100/random-availability``)."""
    return bench_id.startswith("select/") and "random-availability" in bench_id


def _is_16gpu_select(bench_id: str) -> bool:
    """The core's every-k benches on 16-GPU nodes (``select/<node>/all-free/<k>``)."""
    return bench_id.startswith("select/") and "/all-free/" in bench_id


def side_by_side(results: list[CriterionResult], sections: list[Section]) -> Section | None:
    """Python medians next to the core's for the same case: what the binding costs."""
    python = {k: v for s in sections for k, v in s.python_ns.items()}
    rows = []
    for r in results:
        key = r.id.removeprefix("select/")
        if key in python:
            rows.append(
                (
                    key,
                    fmt_ns(r.median_ns),
                    fmt_ns(python[key]),
                    fmt_ratio(python[key] / r.median_ns),
                )
            )
    if not rows:
        return None
    section = Section("`select_gpus`: core and Python side by side")
    section.tables.append(
        Table(
            "Medians of the same case in the core (criterion) and through Python",
            ("case", "core", "through Python", "Python / core"),
            tuple(rows),
            (
                "`all-free/<k>`: the same request on both sides (the criterion bench builds "
                "its own DGX-2-like node: every pair NV6 through NVSwitch). "
                "`random-availability`: both draw random cases, each with its own generator.",
            ),
        )
    )
    return section


def render(sections: list[Section], info: dict[str, str], quick: bool, took_s: float) -> str:
    targets = [t for s in sections for t in s.targets]
    judged = {t.what.split(" for ")[0] for t in targets}
    targets += [t for t in UNJUDGED if t.what.split(" for ")[0] not in judged]
    lines = [
        "# Benchmark results",
        "",
        "Written by `benches/run.py` (`make bench`); do not edit by hand. Every table is "
        "measured in one run on the machine below, except the sections marked "
        f"“{_EARLIER.strip()}”: those come from their own scripts (`bench_allocator.py`, "
        "`bench_kubelet.py`) or from parts this run left out, and keep their figures until "
        "they are rerun.",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {k} | {v} |" for k, v in info.items()),
        f"| run | {'--quick (smoke run, small inputs)' if quick else 'full'}, {took_s:.0f} s |",
        "",
        '## Targets (DESIGN.md, "Performance targets")',
        "",
        "| what | target | this run | status |",
        "| --- | --- | --- | --- |",
        *(f"| {t.what} | {t.target} | {t.measured} | {t.status} |" for t in targets),
        "",
        "DESIGN.md's anchor, NVIDIA's go-gpuallocator (the device plugin's best-effort "
        "policy) measured beside nvtopo on this machine kind and the same case mix (k uniform "
        "in 1..n, then a random free set of at least k GPUs): DGX-1 median 7.8 µs (376 ns at "
        "k = 1); 16-GPU NVSwitch node 2–24 s for k = 2..15; on a B200 whose GPU 2 lost its "
        "NVLinks it took GPU 2 in 53 of 100 cases. That Go code is not served as a Go module "
        "here, so these figures are quoted, not rerun; the Python rendering of its policy in "
        "`benches/baselines.py` is a reference for the sets it picks only, never for its "
        "speed.",
        "",
    ]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for table in s.tables:
            lines.append(table.markdown())
        for note in s.notes:
            lines += [note, ""]
    return "\n".join(lines).rstrip() + "\n"


_EARLIER = " (earlier run)"


def keep_other_sections(report: str, previous: str) -> str:
    """``report`` with the sections of ``previous`` that this run did not write appended,
    marked as from an earlier run: those that other scripts write (`bench_allocator.py`,
    `bench_kubelet.py`) and the parts left out of a partial run."""
    written = {
        line[3:].removesuffix(_EARLIER) for line in report.splitlines() if line.startswith("## ")
    }
    kept = []
    for chunk in previous.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        bare = title.removesuffix(_EARLIER)
        if bare in written or bare.startswith("Targets"):
            continue
        kept.append(f"## {bare}{_EARLIER}\n{body.rstrip()}\n")
    if not kept:
        return report
    return report.rstrip() + "\n\n" + "\n".join(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on small inputs")
    parser.add_argument("--output", type=Path, help=f"report path (default {RESULTS} when full)")
    parser.add_argument(
        "--only", choices=PARTS, action="append",
        help="run only these parts (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    output = args.output or (None if args.quick else RESULTS)
    parts = args.only or list(PARTS)
    if args.quick and not args.only:
        # The cargo builds alone take minutes, and publishing starts a kube-apiserver.
        parts = [p for p in parts if p not in ("criterion", "core", "publish")]

    started = time.perf_counter()
    info = machine()
    print(" · ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    sections: list[Section] = []
    criterion_results: list[CriterionResult] = []
    failed = False
    for part in parts:
        t0 = time.perf_counter()
        print(f"\n== {part} ...", flush=True)
        try:
            if part == "criterion":
                results, status = run_criterion()
                criterion_results = results
                section = criterion_section(results, status)
            elif part == "core":
                section = bench_core.run(bench_core.QUICK if args.quick else bench_core.FULL)
            elif part == "select":
                section = bench_select.run(bench_select.QUICK if args.quick else bench_select.FULL)
            elif part == "place":
                section = bench_place.run(bench_place.QUICK if args.quick else bench_place.FULL)
            elif part == "trace":
                section = trace.run(trace.QUICK if args.quick else trace.FULL)
            elif part == "slices":
                section = bench_slices.run(bench_slices.QUICK if args.quick else bench_slices.FULL)
            elif part == "readback":
                cfg_rb = bench_readback.QUICK if args.quick else bench_readback.FULL
                section = bench_readback.run(cfg_rb)
            elif part == "service":
                cfg_s = bench_service.QUICK if args.quick else bench_service.FULL
                section = bench_service.run(cfg_s)
            else:
                cfg = bench_publish.QUICK if args.quick else bench_publish.FULL
                section = bench_publish.run(cfg)
        except Exception as exc:  # one broken part must not hide the others' results
            failed = True
            traceback.print_exc()
            section = Section(f"{part}: failed")
            section.notes.append(f"Not measured: {type(exc).__name__}: {exc}")
        sections.append(section)
        for table in section.tables:
            print("\n" + table.text(), end="")
            for note in table.notes:
                print(note)
        for note in section.notes:
            print(note)
        print(f"({part}: {time.perf_counter() - t0:.1f} s)", flush=True)

    if criterion_results:
        extra = side_by_side(criterion_results, sections)
        if extra is not None:
            sections.append(extra)
            print("\n" + extra.tables[0].text(), end="")

    print("\nTargets")
    for t in [t for s in sections for t in s.targets]:
        print(f"  [{t.status:>12}] {t.what}: {t.target}; this run {t.measured}")
    took = time.perf_counter() - started
    if output is not None:
        report = render(sections, info, args.quick, took)
        if output.exists():
            report = keep_other_sections(report, output.read_text())
        output.write_text(report)
        print(f"\nwrote {output} ({took:.0f} s in all)")
        if output == RESULTS:
            update_readme(report)
    return 1 if failed else 0


README = ROOT / "README.md"
_START, _END = "<!-- bench-targets:start -->", "<!-- bench-targets:end -->"


def update_readme(report: str) -> None:
    """Copy the machine line and the targets table of ``report`` into README.md's markers."""
    text = README.read_text()
    if _START not in text or _END not in text:
        return
    lines = report.splitlines()
    machine_rows = {
        row.split("|")[1].strip(): row.split("|")[2].strip()
        for row in lines
        if row.startswith("| ") and row.count("|") == 3
    }
    head = lines.index('## Targets (DESIGN.md, "Performance targets")')
    table = []
    for row in lines[head + 2 :]:
        if not row.startswith("|"):
            break
        table.append(row)
    where = (
        f"Measured on {machine_rows.get('CPU', '?')}, {machine_rows.get('cores', '?')} cores, "
        f"{machine_rows.get('date', '?')}:"
    )
    block = "\n".join([_START, where, "", *table, _END])
    before, rest = text.split(_START, 1)
    after = rest.split(_END, 1)[1]
    README.write_text(before + block + after)
    print(f"updated the benchmark table in {README.name}")


if __name__ == "__main__":
    sys.exit(main())
