"""Conventions users bring from kubectl: ``-o`` is ``--format``, uncut tables when piped,
``-o yaml`` that reads back, ``--dry-run`` and opt-in ``--prune``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nvtopo.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_dash_o_is_the_format_and_writes_no_file(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "dump", "-s", "system:dgx-h100", "-o", "yaml")
    assert code == 0, err
    assert "kind: NodeTopology" in out
    assert list(tmp_path.iterdir()) == []  # no file named `yaml`
    code, out, err = run(capsys, "place", "-s", "system:dgx-h100", "--gpus", "2", "-o", "json")
    assert code == 0, err
    assert json.loads(out)["gpus"]


@pytest.mark.parametrize(
    "args",
    [
        ["systems"],
        ["slices", "-s", "system:dgx-h100", "--node", "n1"],
        ["claim", "--gpus", "2", "--name", "c"],
        ["imex", "check", "-s", "system:gb200-tray"],
        ["imex", "config", "-s", "system:gb200-nvl72", "--gpus", "8"],
        ["compute-domain", "plan", "-s", "system:gb200-nvl72", "--gpus", "8", "--name", "j"],
    ],
)
def test_every_subcommand_takes_dash_o_json(
    capsys, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a file named `json` would land here
    code, out, err = run(capsys, *args, "-o", "json")
    assert code in (0, 1), err  # imex check of a lone tray may say "not ready"
    assert "Error" not in err and "no such option" not in err
    json.loads(out)


def test_output_file_is_named_output_file(capsys, tmp_path: Path) -> None:
    target = tmp_path / "nodes_config.cfg"
    code, _, err = run(
        capsys, "imex", "config", "-s", "system:gb200-nvl72", "--gpus", "8",
        "--output-file", str(target),
    )  # fmt: skip
    assert code == 0, err
    assert len(target.read_text().splitlines()) == 2


def test_tables_are_not_cut_when_piped() -> None:
    """``nvtopo systems | cat``: every name and description whole, whatever $COLUMNS says."""
    import nvtopo

    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["COLUMNS"] = "60"  # a narrow terminal's value leaking into a pipe must not cut
    done = subprocess.run(
        [sys.executable, "-m", "nvtopo", "systems"],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert "…" not in done.stdout
    for info in nvtopo.catalog.systems():
        assert info.name in done.stdout and info.description in done.stdout


def test_cluster_table_keeps_whole_clique_ids(capsys) -> None:
    import nvtopo

    code, out, err = run(capsys, "dump", "-s", "system:gb200-nvl72x2")
    assert code == 0, err
    for clique in nvtopo.cluster("gb200-nvl72x2").cliques:
        assert clique in out
