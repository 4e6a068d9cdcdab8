"""Kueue's own Go API types decode nvtopo's Kueue objects strictly.

``tests/export/kueuecheck`` is built from the ``sigs.k8s.io/kueue`` Go module (the version in
``tests/export/go.mod``) and decodes with unknown fields disallowed, so a field name Kueue
does not have, or a value of the wrong type, fails here.
"""

from __future__ import annotations

import subprocess

import pytest

import nvtopo
from nvtopo.cli import main
from tests.export.build import kueuecheck

pytestmark = pytest.mark.slow


def run_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(kueuecheck())], input=text, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_kueue_types_decode_the_export(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "kueue", "-s", "system:gb200-nvl72x4", "-o", fmt]) == 0
    done = run_check(capsys.readouterr().out)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "ok nvtopo topology.nvtopo.dev/rack,topology.nvtopo.dev/clique,kubernetes.io/hostname\n"
    )


def test_the_check_refuses_an_unknown_field_and_a_wrong_type() -> None:
    import yaml

    from nvtopo.export import kueue_topology

    good = kueue_topology(nvtopo.cluster("gb200-nvl72x2"))
    unknown = {**good, "spec": {**good["spec"], "levelz": []}}
    done = run_check(yaml.safe_dump(unknown))
    assert done.returncode == 1 and "levelz" in done.stderr
    # (a YAML scalar such as 7 is turned into the string a string field wants, as Kueue's
    # own decoder does; a mapping cannot be)
    wrong = {**good, "spec": {"levels": [{"nodeLabel": {"key": "rack"}}]}}
    done = run_check(yaml.safe_dump(wrong))
    assert done.returncode == 1 and "nodeLabel" in done.stderr
    levels = [{"nodeLabel": "kubernetes.io/hostname"}, {"nodeLabel": "topology.nvtopo.dev/clique"}]
    host_first = {**good, "spec": {"levels": levels}}
    done = run_check(yaml.safe_dump(host_first))
    assert done.returncode == 1 and "not the last" in done.stderr
