"""The `nvtopo` command line: every source, every dump format, clean one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import nvtopo
import nvtopo.formats.jsonio
from nvtopo.cli import main
from nvtopo.formats.jsonio import node_to_json

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
    rows = json.loads(out)
    names = {s["name"] for s in rows}
    assert set(rows[0]) == {"name", "kind", "gpu", "gpusPerNode", "nodes", "description"}
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


# -- user mistakes found in acceptance review: each one line, non-zero exit, no traceback --

ZERO = "00000000-0000-0000-0000-000000000000"
RACK = "5cd30dc8-2f7e-4c3d-9a51-0e0f3a7d2b11"


def _cluster_file(tmp_path: Path, nodes: list[dict[str, object]]) -> str:
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps({"apiVersion": "nvtopo.dev/v1", "kind": "Cluster", "nodes": nodes}))
    return f"file:{path}"


def _capture(tmp_path: Path, edit: str, new: str, count: int = 1) -> str:
    text = (DATA / "captures" / "dgx1-v100-topo-m.txt").read_text().replace(edit, new, count)
    path = tmp_path / "topo.txt"
    path.write_text(text)
    return f"smi-topo:{path}"


def _one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, _out, err = run(capsys, *args)
    assert code != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_nvlink_counts_past_any_gpu_are_refused_not_overflowed(capsys, tmp_path: Path) -> None:
    huge = _capture(tmp_path, " NV2 ", " NV99999999999999999999 ", 100)
    err = _one_line_error(capsys, "place", "--source", huge, "--gpus", "2")
    assert "topo.txt:3: row GPU0, column GPU3" in err and "1 to 64 links" in err
    zero = _capture(tmp_path, " NV1 ", " NV0 ", 100)
    assert "'NV0'" in _one_line_error(capsys, "dump", "--source", zero)
    doc = nvtopo_json("pcie-4x-a100-bridged")
    doc["pairs"][0]["nvlinks"] = 10**12
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc))
    err = _one_line_error(capsys, "place", "--source", f"file:{path}", "--gpus", "2")
    assert "$.pairs[0].nvlinks" in err


def nvtopo_json(name: str) -> dict[str, object]:
    import nvtopo

    doc: dict[str, object] = node_to_json(nvtopo.system(name))
    return doc


def test_huge_numbers_on_the_command_line(capsys) -> None:
    big = "99999999999999999999"
    err = _one_line_error(capsys, "place", "--source", "system:dgx-h100", "--gpus", big)
    assert "between 1 and 8" in err
    err = _one_line_error(
        capsys, "place", "--source", "system:dgx-h100", "--gpus", "2", "--available", f"0,{big}"
    )
    assert f"GPU {big} in available is not on this node" in err
    err = _one_line_error(capsys, "place", "--source", "system:gb200-nvl72x2", "--gpus", big)
    assert f"only 144 free GPUs in the cluster, {big} requested" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("null", "found null"),
        ("[1]", "found an array"),
    ],
)
def test_json_files_that_are_no_document(capsys, tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text)
    assert expected in _one_line_error(capsys, "dump", "--source", f"file:{path}")


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ([], "$.nodes: [] should be non-empty"),
        ([{"name": "a", "system": "gb200-tray", "clique": "bad"}], "is not a clique id"),
        ([{"name": "a", "system": "gb200-tray", "clique": RACK}], "is not a clique id"),
        ([{"name": "a", "system": "gb200-tray", "clique": "-" * 36 + ".1"}], "not a clique id"),
        ([{"name": "a", "system": "gb200-tray", "clique": f"{RACK}.{10**12}"}], "clique id"),
    ],
)
@pytest.mark.parametrize("command", [["dump"], ["place", "--gpus", "4"]])
def test_cluster_files_with_bad_nodes_or_cliques(
    capsys, tmp_path: Path, nodes: list[dict[str, object]], expected: str, command: list[str]
) -> None:
    source = _cluster_file(tmp_path, nodes)
    assert expected in _one_line_error(capsys, *command, "--source", source)


def test_an_all_zero_cluster_uuid_declares_no_nvlink_domain(capsys, tmp_path: Path) -> None:
    """DESIGN: a clique counts only when the cluster UUID is not all zeros."""
    nodes = [{"name": n, "system": "gb200-tray", "clique": f"{ZERO}.1"} for n in "ab"]
    source = _cluster_file(tmp_path, nodes)
    args = ("place", "--source", source, "--gpus", "8", "--nodes", "2", "--domain", "required")
    assert "no clique has 2 nodes" in _one_line_error(capsys, *args)
    own = nvtopo.system("gb200-tray").clique
    nodes = [{"name": n, "system": "gb200-tray", "clique": own} for n in "ab"]
    code, out, err = run(
        capsys, *args[:2], _cluster_file(tmp_path, nodes), *args[3:], "--format", "json"
    )
    assert code == 0, err
    assert json.loads(out)["cliques"] == [own]


def test_a_declared_clique_that_the_gpus_contradict_counts_for_nothing(
    capsys, tmp_path: Path
) -> None:
    """DESIGN, Contract 2: a node whose declared clique disagrees with its GPUs is in none."""
    nodes = [{"name": n, "system": "gb200-tray", "clique": f"{RACK}.1"} for n in "ab"]
    args = ("place", "--source", _cluster_file(tmp_path, nodes), "--gpus", "8", "--nodes", "2")
    err = _one_line_error(capsys, *args, "--domain", "required")
    assert "no clique has 2 nodes" in err
    cluster = nvtopo.formats.jsonio.cluster_from_json(Path(args[2].split(":", 1)[1]).read_text())
    own = nvtopo.system("gb200-tray").clique
    assert cluster.clique_problems == {n: f"declared clique {RACK}.1, GPUs say {own}" for n in "ab"}


def test_a_stray_line_inside_the_matrix_is_named(capsys, tmp_path: Path) -> None:
    row = "GPU3    NV2"
    source = _capture(tmp_path, row, "pasted by mistake\n" + row)
    err = _one_line_error(capsys, "dump", "--source", source)
    assert (
        "topo.txt:6: 'pasted by mistake' interrupts the matrix: row GPU3 follows on line 7" in err
    )


@pytest.mark.parametrize("fmt", ["table", "matrix", "json", "yaml", "dot", "svg"])
def test_output_file_for_every_format(capsys, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"out.{fmt}"
    code, out, err = run(
        capsys, "dump", "-s", "system:dgx1-v100", "--format", fmt, "--output-file", str(path)
    )
    assert code == 0, err
    assert out == ""
    assert f"wrote {path}" in err
    text = path.read_text()
    if fmt == "json":
        assert len(json.loads(text)["gpus"]) == 8
    elif fmt == "yaml":
        assert "name: dgx1-v100" in text and "- index: 7" in text
    else:
        assert "GPU7" in text or "gpu7" in text


def test_output_file_that_cannot_be_written(capsys, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.json"
    err = _one_line_error(
        capsys, "dump", "-s", "system:dgx1-v100", "--format", "json", "--output-file", str(target)
    )
    assert f"--output-file {target}: No such file or directory" in err


def test_captures_saved_on_windows_read(capsys, tmp_path: Path, monkeypatch) -> None:
    """A UTF-8 BOM (Notepad) and UTF-16 with BOM (PowerShell `>`), from a file or stdin."""
    import io

    text = (DATA / "captures" / "dgx-h100-topo-m.txt").read_text()
    for name, data in (("utf8", b"\xef\xbb\xbf" + text.encode()), ("utf16", text.encode("utf-16"))):
        path = tmp_path / f"{name}.txt"
        path.write_bytes(data)
        code, out, err = run(capsys, "dump", "-s", f"smi-topo:{path}", "--format", "json")
        assert code == 0, err
        assert len(json.loads(out)["gpus"]) == 8
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
        code, out, err = run(capsys, "dump", "-s", "smi-topo:-", "--format", "json")
        assert code == 0, err
        assert len(json.loads(out)["gpus"]) == 8
    doc = "\ufeff" + json.dumps(nvtopo_json("dgx1-v100"))
    path = tmp_path / "bom.json"
    path.write_bytes(doc.encode())
    code, out, err = run(capsys, "dump", "-s", f"file:{path}", "--format", "json")
    assert code == 0, err
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff\x00garbage")))
    assert "<stdin>: not UTF-8 text" in _one_line_error(capsys, "dump", "-s", "file:-")
