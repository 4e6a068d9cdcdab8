"""Kueue's and Volcano's own Go API types decode nvtopo's objects strictly.

``tests/export/objcheck`` is built from the ``sigs.k8s.io/kueue`` and ``volcano.sh/apis`` Go
modules (the versions in ``tests/export/go.mod``) and decodes with unknown fields disallowed,
so a field name they do not have, or a value of the wrong type, fails here.
"""

from __future__ import annotations

import subprocess

import pytest

import nvtopo
from nvtopo.cli import main
from tests.export.build import objcheck

pytestmark = pytest.mark.slow


def run_check(text: str, api: str = "kueue") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(objcheck()), "-api", api], input=text, capture_output=True, text=True, timeout=60
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


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_volcano_types_decode_the_hypernodes(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--to", "volcano", "-s", "system:gb200-nvl72x4", "-o", fmt]) == 0
    done = run_check(capsys.readouterr().out, "volcano")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 8
    assert sum(line.endswith("tier=1 members=18") for line in lines) == 4
    assert sum(line.endswith("tier=2 members=1") for line in lines) == 4


def test_the_volcano_check_refuses_what_its_types_do_not_have() -> None:
    import yaml

    from nvtopo.export import volcano_hypernodes

    good = volcano_hypernodes(nvtopo.cluster("gb200-nvl72x2"))[0]
    as_text = {**good, "spec": {**good["spec"], "tier": "one"}}
    done = run_check(yaml.safe_dump(as_text), "volcano")
    assert done.returncode == 1 and "tier" in done.stderr
    typo = {**good, "spec": {**good["spec"], "tierLevel": 1}}
    done = run_check(yaml.safe_dump(typo), "volcano")
    assert done.returncode == 1 and "tierLevel" in done.stderr
