"""Paths the source does not give are unknown, not SYS; one node from several reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nvtopo.cli import main
from nvtopo.formats.merge import merge_topologies
from nvtopo.formats.smi_topo import parse_topo_matrix
from nvtopo.formats.smi_xml import parse_smi_xml
from nvtopo.select import select_gpus

DATA = Path(__file__).parent / "data"
XML = DATA / "captures" / "gb200-tray-smi-q-x.xml"
TOPO = DATA / "gb200-tray-topo-m.txt"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_an_xml_report_has_unknown_paths_and_says_so() -> None:
    t = parse_smi_xml(XML.read_text())
    assert len(t.unknown_pairs) == 6 and t.path_class(0, 1) == "?"
    s = select_gpus(t, 2)
    assert s.bottleneck_path == "?" and s.unknown_pairs == ((0, 1),)
    text = s.explain()
    assert "over ?" in text and "assumes SYS" in text
    assert s.to_json()["unknownPairs"] == [[0, 1]]


def test_dump_prints_unknown_paths_as_question_marks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "dump", "--source", f"smi-xml:{XML}", "--format", "matrix")
    assert code == 0, err
    row = out.splitlines()[1].split("\t")
    assert row[:5] == ["GPU0", " X ", "?", "?", "?"]
    assert "SYS" not in out.split("Legend:")[0]
    code, out, err = run(capsys, "place", "--source", f"smi-xml:{XML}", "--gpus", "2")
    assert code == 0, err
    assert "assumes SYS" in out


def test_a_topo_matrix_knows_every_gpu_path() -> None:
    assert parse_topo_matrix(TOPO.read_text()).unknown_pairs == ()


def test_one_node_from_a_matrix_and_an_xml_report(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("dump", "--source", f"smi-topo:{TOPO}", "--source", f"smi-xml:{XML}")
    code, out, err = run(capsys, *args, "--format", "json")
    assert code == 0, err
    doc = json.loads(out)
    xml = parse_smi_xml(XML.read_text())
    topo = parse_topo_matrix(TOPO.read_text())
    assert [g["uuid"] for g in doc["gpus"]] == [g.uuid for g in xml.gpus]
    assert [g.get("cpuAffinity") for g in doc["gpus"]] == [g.cpu_affinity for g in topo.gpus]
    assert all(g["fabric"]["state"] == "completed" for g in doc["gpus"])
    assert {p["nvlinks"] for p in doc["pairs"]} == {18} and len(doc["pairs"]) == 6
    code, out, err = run(capsys, "place", *args[1:], "--gpus", "2")
    assert code == 0, err
    assert "assumes" not in out and "NV18" in out


def test_reports_of_different_nodes_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    other = DATA / "captures" / "dgx-h100-topo-m.txt"
    code, out, err = run(
        capsys, "dump", "--source", f"smi-topo:{other}", "--source", f"smi-xml:{XML}"
    )
    assert code == 1 and out == ""
    assert "are these captures of one node?" in err and err.count("\n") == 1


def test_conflicting_fields_are_named() -> None:
    xml = parse_smi_xml(XML.read_text())
    changed = xml.replace_gpus(
        g.__class__(**{**vars(g), "memory_mib": 1}) if g.index == 1 else g for g in xml.gpus
    )
    with pytest.raises(ValueError, match=r"GPU 1 memory_mib: a says \d+, b says 1"):
        merge_topologies([("a", xml), ("b", changed)])
