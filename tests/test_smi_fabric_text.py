"""``nvidia-smi -q`` Fabric text, ``nvidia-smi nvlink -s`` and ``-R``: read, or refused naming
the command whose output is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

import nvtopo
from nvtopo.exceptions import ParseError
from nvtopo.formats.smi_fabric_text import looks_like_smi_query, parse_smi_fabric_text
from nvtopo.formats.smi_nvlink import looks_like_nvlink, parse_nvlink

DATA = Path(__file__).parent / "data"
FABRIC = DATA / "fabric"
CLUSTER = "3f1c8a52-7d4e-4b91-a6c2-5e8d0b9f7a13"


def _read(name: str) -> str:
    return (FABRIC / name).read_text()


def test_completed_report_matches_the_nvml_reading_of_the_same_tray() -> None:
    node = parse_smi_fabric_text(_read("gb200-tray-smi-q-completed.txt"))
    json_node = nvtopo.NodeTopology.from_json(
        (DATA / "imex" / "gb200-tray-completed.json").read_text()
    )
    assert [g.uuid for g in node.gpus] == [g.uuid for g in json_node.gpus]
    assert node.clique == f"{CLUSTER}.32766" == json_node.clique
    for text_gpu, nvml_gpu in zip(node.gpus, json_node.gpus, strict=True):
        assert text_gpu.fabric is not None and nvml_gpu.fabric is not None
        assert (text_gpu.fabric.state, text_gpu.fabric.status, text_gpu.fabric.health) == (
            nvml_gpu.fabric.state,
            nvml_gpu.fabric.status,
            nvml_gpu.fabric.health,
        )
    assert node.driver_version == "580.95.05"
    assert node.gpus[1].pci_bus_id == "00000009:01:00.0".upper() or node.gpus[1].pci_bus_id


@pytest.mark.parametrize(
    ("name", "gpu", "state", "status", "health", "clique"),
    [
        ("in-progress", 2, "in_progress", "success", "unknown", None),
        ("insufficient-resources", 1, "completed", "insufficient_resources", "healthy", None),
        ("zero-cluster-uuid", 0, "completed", "success", "healthy", None),
        ("unhealthy", 3, "completed", "success", "unhealthy", None),
    ],
)
def test_fabric_cases(
    name: str, gpu: int, state: str, status: str, health: str, clique: None
) -> None:
    node = parse_smi_fabric_text(_read(f"gb200-tray-smi-q-{name}.txt"))
    fabric = node.gpus[gpu].fabric
    assert fabric is not None
    assert (fabric.state, fabric.status, fabric.health, fabric.clique) == (
        state,
        status,
        health,
        clique,
    )
    assert node.clique is None


def test_unhealthy_sets_the_route_unhealthy_bit() -> None:
    node = parse_smi_fabric_text(_read("gb200-tray-smi-q-unhealthy.txt"))
    healthy, sick = node.gpus[0].fabric, node.gpus[3].fabric
    assert healthy is not None and sick is not None
    assert (sick.health_mask >> 4) & 0b11 == 1 and (healthy.health_mask >> 4) & 0b11 == 2


def test_nvlink_status_and_remote() -> None:
    down = parse_nvlink(_read("gb200-tray-nvlink-s-links-down.txt"), "status")
    assert [g.index for g in down] == [0, 1, 2, 3]
    assert [link.link for link in down[0].links if link.state == "down"] == [4, 5]
    assert all(link.state == "up" for link in down[1].links) and len(down[1].links) == 18
    remote = parse_nvlink(_read("gb200-tray-nvlink-r.txt"), "remote")
    assert remote[0].links[2].remote_pci_bus_id == "00000000:11:00.0"
    assert looks_like_nvlink(_read("gb200-tray-nvlink-r.txt")) == "remote"
    assert looks_like_nvlink(_read("gb200-tray-nvlink-s.txt")) == "status"
    assert looks_like_nvlink(_read("gb200-tray-smi-q-completed.txt")) is None
    assert looks_like_smi_query(_read("gb200-tray-smi-q-completed.txt"))


def test_h200_vm_prints_nothing_to_nvlink_status() -> None:
    text = (DATA / "h200-vm" / "smi.txt").read_text()
    block = text.split("$ nvidia-smi nvlink -s\n[rc=0]\n", 1)[1].split("$ ", 1)[0]
    assert parse_nvlink(block, "status") == ()


@pytest.mark.parametrize(
    ("reader", "text", "message"),
    [
        (
            "status",
            "GPU 0: X (UUID: GPU-1)\n\t Link 0: Remote Device 00000000:10:00.0: Link 0\n",
            "not `nvidia-smi nvlink -s` output: link 0: 'Remote Device",
        ),
        (
            "remote",
            "GPU 0: X (UUID: GPU-1)\n\t Link 0: 53.125 GB/s\n",
            "not `nvidia-smi nvlink -R` output: link 0: '53.125 GB/s'",
        ),
        (
            "status",
            "        GPU0    GPU1\nGPU0     X      NV18\n",
            "not `nvidia-smi nvlink -s` output: unexpected line",
        ),
        ("query", "GPU 0: X (UUID: GPU-1)\n\t Link 0: 53.125 GB/s\n", "not `nvidia-smi -q` output"),
        (
            "query",
            "GPU 00000008:01:00.0\n    Product Name : NVIDIA GB200\n",
            "GPU 0 (00000008:01:00.0) has no Fabric section",
        ),
    ],
)
def test_refusals_name_the_command(reader: str, text: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        if reader == "query":
            parse_smi_fabric_text(text, source="paste.txt")
        else:
            parse_nvlink(text, reader, source="paste.txt")  # type: ignore[arg-type]
    assert str(err.value).startswith("paste.txt")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_fabric_value_names_the_line() -> None:
    text = _read("gb200-tray-smi-q-completed.txt").replace(
        "Bandwidth                     : Full", "Bandwidth                     : Fast", 1
    )
    with pytest.raises(
        ParseError, match=r"^<text>:\d+: GPU 0: fabric <health/bandwidth> is 'Fast'"
    ):
        parse_smi_fabric_text(text)


@pytest.mark.parametrize(
    ("source", "capture", "message"),
    [
        (
            "smi-xml",
            "gb200-tray-smi-q-completed.txt",
            "this is `nvidia-smi -q` output; this source needs `nvidia-smi -q -x` output; "
            "`nvtopo doctor --capture` reads it",
        ),
        (
            "smi-topo",
            "gb200-tray-nvlink-s.txt",
            "this is `nvidia-smi nvlink -s` output; this source needs `nvidia-smi topo -m` "
            "output; `nvtopo doctor --capture` reads it",
        ),
        (
            "smi-xml",
            "gb200-tray-nvlink-r.txt",
            "this is `nvidia-smi nvlink -R` output; this source needs `nvidia-smi -q -x` "
            "output; `nvtopo doctor --capture` reads it",
        ),
    ],
)
def test_sources_name_the_command_of_a_misplaced_capture(
    source: str, capture: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from nvtopo.cli import main

    path = FABRIC / capture
    assert main(["dump", "--source", f"{source}:{path}"]) == 1
    assert capsys.readouterr().err == f"nvtopo: error: {path}: {message}\n"


def test_topo_and_xml_captures_still_read() -> None:
    from nvtopo.cli.sources import load_source

    topo = load_source(f"smi-topo:{DATA / 'captures' / 'dgx-h100-topo-m.txt'}")
    xml = load_source(f"smi-xml:{DATA / 'captures' / 'gb200-tray-smi-q-x.xml'}")
    assert len(topo.gpus) == 8 and len(xml.gpus) == 4  # type: ignore[union-attr]
