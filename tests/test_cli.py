"""The `nvtopo` command line: every source, every dump format, clean one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nvtopo.cli import main

DATA = Path(__file__).parent / "data"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["table", "matrix", "json", "yaml", "dot", "svg"])
def test_dump_every_format_on_a_catalog_system(capsys, fmt: str) -> None:
    code, out, err = run(capsys, "dump", "--source", "system:dgx-h100", "--format", fmt)
    assert code == 0, err
    assert out
    if fmt == "json":
        doc = json.loads(out)
        assert doc["kind"] == "NodeTopology" and len(doc["gpus"]) == 8
    if fmt == "matrix":
        assert out.splitlines()[0].split("\t")[:3] == ["", "GPU0", "GPU1"] or "GPU0" in out
        assert "NV18" in out
    if fmt == "svg":
        assert "<svg" in out and "GPU7" in out
    if fmt == "dot":
        assert out.startswith("graph ") and "gpu7" in out


def test_dump_json_round_trips_through_file_source(capsys, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "dump", "--source", "system:dgx1-v100", "--format", "json")
    assert code == 0
    path = tmp_path / "dgx1.json"
    path.write_text(out)
    code, again, _ = run(capsys, "dump", "--source", f"file:{path}", "--format", "json")
    assert code == 0
    assert json.loads(again) == json.loads(out)


def test_matrix_printed_back_parses_to_the_same_paths(capsys, tmp_path: Path) -> None:
    import nvtopo

    code, out, _ = run(capsys, "dump", "--source", "system:dgx-a100", "--format", "matrix")
    assert code == 0
    path = tmp_path / "topo.txt"
    path.write_text(out)
    code, _, err = run(capsys, "dump", "--source", f"smi-topo:{path}", "--format", "json")
    assert code == 0, err
    back = nvtopo.NodeTopology.from_nvidia_smi(out)
    orig = nvtopo.system("dgx-a100")
    for a in orig.gpu_indices:
        for b in orig.gpu_indices:
            assert back.path_class(a, b) == orig.path_class(a, b)


def test_smi_topo_source_reads_the_h200_capture(capsys) -> None:
    code, out, err = run(
        capsys, "dump", "--source", f"smi-topo:{DATA / 'h200-vm' / 'smi.txt'}", "--format", "json"
    )
    assert code == 0, err
    assert len(json.loads(out)["gpus"]) == 1


def test_cluster_source_table_and_node_pick(capsys) -> None:
    code, out, _ = run(capsys, "dump", "--source", "system:gb200-nvl72x2")
    assert code == 0
    assert "36 nodes" in out and "2 NVLink domain" in out
    code, out, err = run(capsys, "dump", "--source", "system:gb200-nvl72x2", "--format", "matrix")
    assert code == 1 and "--node" in err
    name = json.loads(
        run(capsys, "dump", "--source", "system:gb200-nvl72x2", "--format", "json")[1]
    )["nodes"][0]["name"]
    code, out, _ = run(
        capsys, "dump", "--source", "system:gb200-nvl72x2", "--node", name, "--format", "matrix"
    )
    assert code == 0 and "NV18" in out


def test_systems_lists_the_catalog(capsys) -> None:
    code, out, _ = run(capsys, "systems", "--format", "json")
    assert code == 0
    names = {s["name"] for s in json.loads(out)}
    assert {
        "dgx1-v100",
        "dgx2-v100",
        "dgx-a100",
        "dgx-h100",
        "hgx-h200",
        "hgx-b200",
        "gb200-tray",
        "gb200-nvl72",
        "gb300-nvl72",
        "pcie-4x-a100-bridged",
        "pcie-8x-l40s",
    } <= names


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["dump", "--source", "system:dgx-h900"], "dgx-h900"),
        (
            ["dump", "--source", "smi-topo:/nonexistent/topo.txt"],
            "/nonexistent/topo.txt: no such file",
        ),
        (["dump", "--source", "floppy:/x"], "unknown source"),
        (["dump", "--source", "smi-topo:"], "a path is needed"),
        (
            ["place", "--source", "system:dgx-h100", "--gpus", "4", "--available", "0,x"],
            "expected GPU indices",
        ),
    ],
)
def test_bad_input_gives_one_line_and_nonzero_exit(capsys, args: list[str], expected: str) -> None:
    code, _out, err = run(capsys, *args)
    assert code != 0
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_truncated_json_file(capsys, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "dump", "--source", "system:dgx-h100", "--format", "json")
    bad = tmp_path / "cut.json"
    bad.write_text(out[: len(out) // 3])
    code, _, err = run(capsys, "dump", "--source", f"file:{bad}")
    assert code == 1
    assert f"{bad}:" in err and "invalid JSON" in err
    assert len(err.strip().splitlines()) == 1


def test_cut_capture_is_refused_through_the_console_script(tmp_path: Path) -> None:
    """The real entry point (a subprocess): a capture cut short, no traceback, exit 1."""
    text = (DATA / "gb200-tray-topo-m.txt").read_text().splitlines()
    cut = tmp_path / "cut.txt"
    cut.write_text("\n".join(line for line in text[:-2] if not line.startswith("#")) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "nvtopo", "dump", "--source", f"smi-topo:{cut}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert str(cut) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_stdin_source(monkeypatch, capsys) -> None:
    import io

    text = (DATA / "gb200-tray-topo-m.txt").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    monkeypatch.setattr("sys.stdin", io.StringIO(body))
    code, out, err = run(capsys, "dump", "--source", "smi-topo:-", "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc["gpus"]) == 4
