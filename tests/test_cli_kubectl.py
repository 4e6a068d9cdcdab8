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


@pytest.mark.parametrize("source", ["system:dgx-h100", "system:gb200-nvl72x2"])
def test_yaml_output_reads_back_through_file(capsys, tmp_path: Path, source: str) -> None:
    code, as_json, err = run(capsys, "dump", "-s", source, "-o", "json")
    assert code == 0, err
    code, as_yaml, err = run(capsys, "dump", "-s", source, "-o", "yaml")
    assert code == 0, err
    path = tmp_path / "topology.yaml"
    path.write_text(as_yaml)
    code, again, err = run(capsys, "dump", "-s", f"file:{path}", "-o", "json")
    assert code == 0, err
    assert json.loads(again) == json.loads(as_json)


def test_bad_yaml_file_is_one_line_with_its_line(capsys, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: nvtopo.dev/v1\nkind: NodeTopology\ngpus: [\n  - index: 0\n")
    code, _, err = run(capsys, "dump", "-s", f"file:{path}")
    assert code == 1 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and f"{path}:" in err and "invalid YAML" in err
    path.write_text("- just\n- a list\n")
    code, _, err = run(capsys, "dump", "-s", f"file:{path}")
    assert code == 1 and len(err.splitlines()) == 1 and "expected a JSON or YAML object" in err


def test_systems_in_yaml_is_the_json_rows(capsys) -> None:
    import yaml

    code, as_json, _ = run(capsys, "systems", "-o", "json")
    assert code == 0
    code, as_yaml, err = run(capsys, "systems", "-o", "yaml")
    assert code == 0, err
    assert yaml.safe_load(as_yaml) == json.loads(as_json)


def test_compute_domain_plan_json_and_yaml_print_the_same_objects(capsys) -> None:
    """JSON is the plan (``nvtopo launch --placement`` reads its placement); its manifests
    are the very objects the YAML documents hold."""
    import yaml

    base = ["compute-domain", "plan", "-s", "system:gb200-nvl72x2", "--name", "t", "-k", "8"]
    code, as_json, err = run(capsys, *base, "-o", "json")
    assert code == 0, err
    code, as_yaml, err = run(capsys, *base, "-o", "yaml")
    assert code == 0, err
    assert json.loads(as_json)["manifests"] == list(yaml.safe_load_all(as_yaml))


def test_publish_result_in_yaml_is_its_json(capsys) -> None:
    import yaml

    from nvtopo.cli.publish import _show
    from nvtopo.dra.publish import PublishResult

    result = PublishResult(
        driver="gpu.nvtopo.dev", pools=3, pools_changed=1, created=1, updated=0, deleted=0,
        unchanged=2, requests=4, writes=1, retries=0, conflicts=0, dry_run=False, elapsed_s=0.5,
    )  # fmt: skip
    _show(result, "yaml", None)
    assert yaml.safe_load(capsys.readouterr().out) == result.to_json()
    _show(result, "yaml", "interval")  # watch mode: one document per publish
    _show(result, "yaml", "nvml event")
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["reason"] for d in docs] == ["interval", "nvml event"]
    assert docs[0]["created"] == 1
