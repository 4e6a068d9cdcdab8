"""IMEX without Kubernetes: node readiness (``imex check``) and ``nodes_config.cfg``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import nvtopo
import nvtopo.discovery.nvml as nvml_source
from nvtopo.cli import cli, main
from nvtopo.cli.imex import imex as imex_group
from nvtopo.exceptions import NvtopoError, ParseError
from nvtopo.formats.smi_xml import parse_smi_xml
from nvtopo.imex import (
    check,
    fabric_problems,
    nodes_config,
    parse_address_file,
    parse_address_map,
    place_domain,
)
from nvtopo.model import NodeTopology

from .fake_nvml import FakeNvml, load, write_sysfs

DATA = Path(__file__).parent / "data"
IMEX = DATA / "imex"
CLIQUE = "3f1c8a52-7d4e-4b91-a6c2-5e8d0b9f7a13.32766"

if "imex" not in cli.commands:  # the CLI registers it; keep the tests independent
    cli.add_command(imex_group)


def tray(case: str) -> NodeTopology:
    return NodeTopology.from_json((IMEX / f"gb200-tray-{case}.json").read_text())


@pytest.fixture
def channels(tmp_path: Path) -> Path:
    """A channel folder holding channel0 (a character device) and unrelated entries."""
    folder = tmp_path / "imex-channels"
    folder.mkdir()
    # A link to /dev/null stands in for the driver's character device node.
    os.symlink("/dev/null", folder / "channel0")
    (folder / "channel12").write_text("")
    (folder / "README").write_text("")
    return folder


# -- check -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "reasons"),
    [
        ("completed", ()),
        ("in-progress", ("GPU 2: fabric state In Progress",)),
        ("insufficient-resources", ("GPU 1: fabric status Insufficient Resources",)),
        ("zero-cluster-uuid", ("GPUs 0-3: fabric cluster UUID is all zeros",)),
        ("unhealthy", ("GPU 3: fabric health Unhealthy",)),
        ("links-down", ("GPU 0: NVLinks 4, 5 down",)),
    ],
)
def test_check_fabric_cases(case: str, reasons: tuple[str, ...], channels: Path) -> None:
    report = check(tray(case), channels_dir=channels)
    assert report.reasons == reasons
    assert report.can_join is (not reasons)
    assert report.node == "gb200-tray-07"
    assert [c.channel for c in report.channels] == [0, 12]
    assert report.channels[0].device == (
        os.major(os.stat("/dev/null").st_rdev),
        os.minor(os.stat("/dev/null").st_rdev),
    )
    assert report.channels[1].device is None
    assert report.warnings == ()


def test_check_reports_each_gpu_in_words(channels: Path) -> None:
    report = check(tray("in-progress"), channels_dir=channels)
    states = [(g.index, g.state, g.status, g.clique, g.health) for g in report.gpus]
    assert states == [
        (0, "Completed", "Success", CLIQUE, "Healthy"),
        (1, "Completed", "Success", CLIQUE, "Healthy"),
        (2, "In Progress", "Success", None, "Unknown"),
        (3, "Completed", "Success", CLIQUE, "Healthy"),
    ]
    assert report.gpus[2].problems == ("fabric state In Progress",)
    assert report.clique is None
    assert check(tray("completed"), channels_dir=channels).clique == CLIQUE


def test_missing_channels_warn_or_fail(tmp_path: Path) -> None:
    empty = tmp_path / "none"
    report = check(tray("completed"), channels_dir=empty)
    assert report.can_join and report.channels == ()
    assert report.warnings[0].startswith(f"no IMEX channel devices in {empty}")
    strict = check(tray("completed"), channels_dir=empty, require_channel=True)
    assert not strict.can_join
    assert strict.reasons == (f"no IMEX channel devices in {empty}",)


def test_check_without_fabric(tmp_path: Path) -> None:
    h100 = nvtopo.system("dgx-h100")
    assert check(h100, channels_dir=tmp_path).reasons == (
        "GPUs 0-7: no multi-node NVLink fabric info",
    )
    # A cluster read back from node labels has no fabric records: not a reason there.
    assert fabric_problems(h100, require_fabric=False) == ()


def test_check_nvidia_smi_report_with_mixed_fabric(tmp_path: Path) -> None:
    text = (DATA / "captures" / "gb200-fabric-not-ready-smi-q-x.xml").read_text()
    report = check(parse_smi_xml(text), channels_dir=tmp_path)
    assert not report.can_join
    assert report.reasons[:2] == (
        "GPU 0: fabric state In Progress",
        "GPU 1: fabric status Insufficient Resources",
    )
    assert any("Degraded on GPU 2" in w for w in report.warnings)


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point NVML discovery at a recorded machine (answers and sysfs facts)."""

    def use(name: str) -> FakeNvml:
        data = load(name)
        monkeypatch.setattr(nvml_source, "SYSFS_ROOT", write_sysfs(data, tmp_path / name))
        fake = FakeNvml(data)
        monkeypatch.setattr(nvml_source, "_import_pynvml", lambda: fake)
        return fake

    return use


@pytest.mark.parametrize(
    ("recording", "reasons"),
    [
        ("gb200-tray", ()),
        ("gb200-tray-in-progress", ("GPU 2: fabric state In Progress",)),
        ("gb200-tray-unhealthy", ("GPU 1: fabric health Unhealthy",)),
    ],
)
def test_check_on_recorded_nvml(
    recorded: Any, recording: str, reasons: tuple[str, ...], tmp_path: Path
) -> None:
    recorded(recording)
    assert check(nvtopo.discover(name="tray"), channels_dir=tmp_path).reasons == reasons


# -- nodes_config.cfg --------------------------------------------------------------------------


def test_nodes_config_for_a_placement() -> None:
    racks = nvtopo.cluster("gb200-nvl72x4")
    placed = place_domain(racks, gpus=16, nodes=4)
    assert len(placed.placement.cliques) == 1
    names = placed.node_names
    assert nodes_config(names) == "".join(f"{n}\n" for n in names)
    addresses = {n: f"10.1.0.{i + 10}" for i, n in enumerate(names)}
    assert nodes_config(names, addresses).splitlines() == [addresses[n] for n in names]


@pytest.mark.parametrize(
    ("names", "addresses", "message"),
    [
        (["a", "b"], {"a": "10.0.0.1"}, "no address for node b"),
        (["a", "b"], {"a": "10.0.0.1", "b": "10.0.0.1"}, "nodes a and b share the address"),
        (["a"], {"a": "10.0.0.1:50000"}, "is neither an IP address nor a host name"),
        (["a", "a"], None, "node a is listed twice"),
        ([], None, "at least one node"),
    ],
)
def test_nodes_config_refuses(
    names: list[str], addresses: dict[str, str] | None, message: str
) -> None:
    with pytest.raises(NvtopoError, match=message):
        nodes_config(names, addresses)


def test_address_file_and_map() -> None:
    text = "# rack 0\n\ntray0 10.0.0.1  # first\ntray1=fd00::2\ntray2 tray2.rack0.example\n"
    assert parse_address_file(text) == {
        "tray0": "10.0.0.1",
        "tray1": "fd00::2",
        "tray2": "tray2.rack0.example",
    }
    with pytest.raises(ParseError, match=r"^hosts:3: expected NODE=ADDRESS or NODE ADDRESS"):
        parse_address_file("a 10.0.0.1\n\nb c d\n", source="hosts")
    with pytest.raises(ParseError, match=r"^hosts:2: node a is given two addresses"):
        parse_address_file("a 10.0.0.1\na 10.0.0.2\n", source="hosts")
    assert parse_address_map("a=10.0.0.1,b=10.0.0.2") == {"a": "10.0.0.1", "b": "10.0.0.2"}
    with pytest.raises(ParseError, match=r"'999\.1\.1\.1' \(node a\) is neither"):
        parse_address_map("a=999.1.1.1")


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_check_exit_status_and_json(capsys: pytest.CaptureFixture[str], channels: Path) -> None:
    ok = [
        "imex",
        "check",
        "--source",
        f"file:{IMEX / 'gb200-tray-completed.json'}",
        "--channels-dir",
        str(channels),
    ]
    assert main([*ok, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["canJoin"], doc["clique"], doc["reasons"]) == (True, CLIQUE, [])
    assert [c["channel"] for c in doc["channels"]] == [0, 12]
    assert main(ok) == 0
    out = capsys.readouterr().out
    assert f"verdict: can join a multi-node NVLink job (clique {CLIQUE})" in out

    bad = [
        "imex",
        "check",
        "--source",
        f"file:{IMEX / 'gb200-tray-in-progress.json'}",
        "--channels-dir",
        str(channels),
    ]
    assert main(bad) == 1
    out, err = capsys.readouterr()
    assert "  - GPU 2: fabric state In Progress" in out
    assert err == (
        "nvtopo: error: gb200-tray-07 cannot join a multi-node NVLink job: "
        "GPU 2: fabric state In Progress\n"
    )
    assert main([*bad, "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["canJoin"] is False


def test_cli_check_live_source(
    recorded: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    recorded("gb200-tray-unhealthy")
    assert main(["imex", "check", "--channels-dir", str(tmp_path), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["reasons"] == ["GPU 1: fabric health Unhealthy"]
    assert [g["health"] for g in doc["gpus"]] == ["Healthy", "Unhealthy", "Healthy", "Healthy"]


def test_cli_check_cluster_needs_a_node(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["imex", "check", "-s", "system:gb200-nvl72x2"]) == 3  # unreadable input
    assert "pick one with --node (e.g. --node rack0000-tray00)" in capsys.readouterr().err
    argv = [
        "imex",
        "check",
        "-s",
        "system:gb200-nvl72x2",
        "--node",
        "rack0001-tray03",
        "--channels-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0


def test_cli_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = ["imex", "config", "-s", "system:gb200-nvl72x4", "--gpus", "16", "--nodes", "4"]
    assert main(base) == 0
    names = capsys.readouterr().out.splitlines()
    expected = place_domain(nvtopo.cluster("gb200-nvl72x4"), gpus=16, nodes=4).node_names
    assert tuple(names) == expected
    hosts = tmp_path / "hosts"
    hosts.write_text("".join(f"{n} 10.2.0.{i}\n" for i, n in enumerate(names)))
    out = tmp_path / "nodes_config.cfg"
    assert main([*base, "--addresses", str(hosts), "--output-file", str(out)]) == 0
    assert out.read_text() == "".join(f"10.2.0.{i}\n" for i in range(4))
    assert "wrote" in capsys.readouterr().err
    mapping = ",".join(f"{n}=10.3.0.{i}" for i, n in enumerate(names))
    assert main([*base, "--address-map", mapping, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(n["name"], n["address"]) for n in doc["nodes"]] == [
        (n, f"10.3.0.{i}") for i, n in enumerate(names)
    ]
    assert doc["config"] == "".join(f"10.3.0.{i}\n" for i in range(4))


def test_cli_config_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("rack0000-tray00 10.0.0.1\nrack0000-tray01\n")
    argv = ["imex", "config", "-s", "system:gb200-nvl72x2", "-k", "8", "--addresses", str(hosts)]
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        f"nvtopo: error: {hosts}:2: expected NODE=ADDRESS or NODE ADDRESS, got 'rack0000-tray01'\n"
    )
    argv = [
        "imex",
        "config",
        "-s",
        "system:gb200-nvl72x2",
        "-k",
        "8",
        "--address-map",
        "rack0000-tray00=10.0.0.1",
    ]
    assert main(argv) == 1
    assert capsys.readouterr().err == (
        "nvtopo: error: no address for node rack0000-tray01 in the address map\n"
    )


@pytest.mark.gpu
def test_check_on_this_machines_gpus(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The live verdict agrees with the rule on what NVML reports (skipped without NVML)."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        pytest.skip(f"NVML cannot start here: {type(exc).__name__}: {exc}")
    pynvml.nvmlShutdown()
    topology = nvtopo.discover()
    report = check(topology, channels_dir=tmp_path)
    assert [g.index for g in report.gpus] == list(topology.gpu_indices)
    assert report.reasons == fabric_problems(topology)
    assert report.can_join is (not report.reasons)
    code = main(["imex", "check", "--channels-dir", str(tmp_path), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert (code == 0) is doc["canJoin"] is report.can_join
