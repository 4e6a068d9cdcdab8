"""The benchmark report keeps the sections other scripts wrote."""

from __future__ import annotations

from benches.run import keep_other_sections

REPORT = "# Benchmark results\n\n## Targets\n\n| a |\n\n## GPU sets\n\nnew figures\n"
PREVIOUS = (
    "# Benchmark results\n\n## Targets\n\nold targets\n\n## GPU sets\n\nold figures\n\n"
    "## Allocator on the real kube-scheduler\n\ngang 1.7 s\n\n"
    "## Kubelet plugin (earlier run)\n\nprepare 40 ms\n"
)


def test_sections_this_run_did_not_write_are_kept_and_marked() -> None:
    out = keep_other_sections(REPORT, PREVIOUS)
    assert "new figures" in out and "old figures" not in out and "old targets" not in out
    assert "## Allocator on the real kube-scheduler (earlier run)\n\ngang 1.7 s" in out
    # Marked once, however many runs it has been kept through.
    assert out.count("## Kubelet plugin (earlier run)") == 1 and "prepare 40 ms" in out
    assert "(earlier run) (earlier run)" not in out


def test_nothing_to_keep_leaves_the_report_as_it_is() -> None:
    assert keep_other_sections(REPORT, REPORT) == REPORT
