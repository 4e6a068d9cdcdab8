"""``nvidia-smi -q -x`` parsing: GPUs, fabric state and health, and refusals with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvtopo.exceptions import ParseError
from nvtopo.formats.smi_xml import parse_smi_xml
from nvtopo.model import ZERO_CLUSTER_UUID, Fabric, NodeTopology, Platform

CAPTURES = Path(__file__).parent / "data" / "captures"
CLUSTER = "5cd30dc8-2f7e-4c3d-9a51-0e0f3a7d2b11"


def report(name: str) -> str:
    return (CAPTURES / name).read_text()


def parse(name: str) -> NodeTopology:
    return parse_smi_xml(report(name), source=name)


def error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_smi_xml(text, source="q.xml")
    return info.value


def line_of(text: str, needle: str, nth: int = 1) -> int:
    numbers = [n for n, line in enumerate(text.split("\n"), start=1) if needle in line]
    return numbers[nth - 1]


def test_gb200_tray() -> None:
    t = parse("gb200-tray-smi-q-x.xml")
    assert t.driver_version == "580.105.08" and t.cuda_version == "13.0"
    assert t.gpu_indices == (0, 1, 2, 3)
    g = t.gpu(2)
    assert g.name == "NVIDIA GB200" and g.brand == "NVIDIA" and g.architecture == "Blackwell"
    assert g.uuid == "GPU-c4a9e2f1-6b7d-4e3a-8f1c-2d5b9a0e7f03"
    assert g.memory_mib == 189471
    assert g.pci_bus_id == "00000018:01:00.0"
    assert g.mig_mode is False and g.minor == 2
    assert g.compute_capability is None  # -q -x does not print it
    assert g.platform == Platform(
        chassis_serial="1821225190271", slot=14, tray=3, host_id=1, module_id=3
    )
    # Healthy: every NVML health field reported, none set (bandwidth full = 2, the rest
    # false = 2, configuration none = 1, partition assigned = 1).
    mask = 2 | 2 << 2 | 2 << 4 | 2 << 6 | 1 << 8 | 1 << 12
    assert g.fabric == Fabric(CLUSTER, 7, "completed", "success", "healthy", mask)
    assert t.clique == f"{CLUSTER}.7"
    assert t.pairs == () and t.nics == ()


def test_hgx_h100_single_node_fabric_and_mig() -> None:
    t = parse("hgx-h100-smi-q-x.xml")
    assert t.driver_version == "550.90.07" and t.cuda_version == "12.4"
    assert [g.mig_mode for g in t.gpus] == [False, True]
    assert t.gpu(0).memory_mib == 81559 and t.gpu(0).architecture == "Hopper"
    assert t.gpu(1).pci_bus_id == "00000000:2A:00.0"
    fabric = t.gpu(0).fabric
    assert fabric is not None
    assert fabric.state == "completed" and fabric.cluster_uuid == ZERO_CLUSTER_UUID
    assert fabric.health == "unknown" and fabric.health_mask == 0
    # A zero cluster UUID is no multi-node domain: the node is its own.
    assert t.clique is None
    assert t.gpu(0).platform is None  # that DTD has no platformInfo


def test_fabric_not_ready() -> None:
    t = parse("gb200-fabric-not-ready-smi-q-x.xml")
    registering, refused, degraded = (g.fabric for g in t.gpus)
    assert registering == Fabric(state="in_progress")
    assert refused is not None and refused.state == "completed"
    assert refused.status == "insufficient_resources"
    assert refused.cluster_uuid == ZERO_CLUSTER_UUID and refused.clique is None
    assert degraded is not None and degraded.health == "degraded"
    assert degraded.health_mask & 0b11 == 1  # NVML_GPU_FABRIC_HEALTH_MASK_DEGRADED_BW_TRUE
    assert degraded.clique == f"{CLUSTER}.7"  # degraded still counts; unhealthy would not
    assert t.clique is None  # the GPUs disagree
    platform = t.gpu(1).platform
    assert platform is not None and platform.tray == 4 and platform.module_id == 2


def test_old_driver_without_fabric() -> None:
    t = parse("dgx1-v100-smi-q-x.xml")
    assert t.driver_version == "470.182.03"
    g = t.gpu(1)
    assert g.name == "Tesla V100-SXM2-32GB" and g.brand == "Tesla"
    assert g.architecture is None and g.fabric is None and g.platform is None
    assert g.mig_mode is None and g.memory_mib == 32510


def test_health_derived_without_summary() -> None:
    text = report("hgx-h100-smi-q-x.xml").replace(
        "<bandwidth>N/A</bandwidth>",
        "<bandwidth>Full</bandwidth><route_unhealthy>True</route_unhealthy>",
        1,
    )
    fabric = parse_smi_xml(text).gpu(0).fabric
    assert fabric is not None and fabric.health == "unhealthy"
    assert fabric.health_mask == 2 | 1 << 4
    healthy = report("hgx-h100-smi-q-x.xml").replace(
        "<bandwidth>N/A</bandwidth>", "<bandwidth>Full</bandwidth>", 1
    )
    fabric = parse_smi_xml(healthy).gpu(0).fabric
    assert fabric is not None and fabric.health == "healthy"


def test_leading_prompt_keeps_line_numbers() -> None:
    text = "$ nvidia-smi -q -x\n[rc=0]\n" + report("gb200-tray-smi-q-x.xml").replace(
        "<state>Completed</state>", "<state>Registering</state>", 1
    )
    err = error(text)
    assert err.line == line_of(text, "<state>Registering</state>")


# -- refusals ------------------------------------------------------------------------------


def test_malformed_xml_names_the_line() -> None:
    text = report("gb200-tray-smi-q-x.xml")
    cut = text[: text.index("<fb_memory_usage>", 3000)] + "<fb_memory_usage>\n\t\t\t<total>189"
    err = error(cut)
    assert "malformed XML" in str(err)
    assert err.line == cut.count("\n") + 1
    assert str(err).startswith(f"q.xml:{err.line}: ")


def test_mismatched_tag() -> None:
    text = report("dgx1-v100-smi-q-x.xml").replace("</uuid>", "</uid>", 1)
    err = error(text)
    assert "mismatched tag" in str(err) and err.line == line_of(text, "</uid>")


def test_unknown_fabric_state() -> None:
    text = report("gb200-tray-smi-q-x.xml")
    bad = text.replace("<state>Completed</state>", "<state>Registering</state>")
    err = error(bad)
    assert "fabric <state> is 'Registering'" in str(err)
    assert err.line == line_of(bad, "<state>Registering</state>")


@pytest.mark.parametrize(
    ("old", "new", "expected", "needle"),
    [
        ("<total>189471 MiB</total>", "<total>185 GiB</total>", "not '<n> MiB'", "185 GiB"),
        (
            "<current_mig>Disabled</current_mig>",
            "<current_mig>Maybe</current_mig>",
            "Maybe",
            "Maybe",
        ),
        ("<cliqueId>7</cliqueId>", "<cliqueId>seven</cliqueId>", "cliqueId", "seven"),
        (f"<clusterUuid>{CLUSTER}", "<clusterUuid>not-a-uuid", "not a UUID", "not-a-uuid"),
        ("<summary>Healthy</summary>", "<summary>Fine</summary>", "summary is 'Fine'", "Fine"),
        ("<bandwidth>Full</bandwidth>", "<bandwidth>Half</bandwidth>", "bandwidth", "Half"),
        ("<minor_number>0</minor_number>", "<minor_number>zero</minor_number>", "minor", "zero"),
    ],
)
def test_bad_values(old: str, new: str, expected: str, needle: str) -> None:
    text = report("gb200-tray-smi-q-x.xml").replace(old, new, 1)
    err = error(text)
    assert expected in str(err)
    assert err.line == line_of(text, needle)


def test_not_a_report() -> None:
    err = error('<?xml version="1.0"?>\n<system version="1">\n</system>\n')
    assert "root element is <system>" in str(err) and err.line == 2


def test_report_without_gpus() -> None:
    text = "<nvidia_smi_log>\n<driver_version>580.105.08</driver_version>\n</nvidia_smi_log>\n"
    assert "no <gpu> elements" in str(error(text))


def test_not_xml_at_all() -> None:
    err = error("GPU 0: NVIDIA H200 (UUID: GPU-46861a32-c845-a369-1d11-71f6ba8ef477)\n")
    assert "malformed XML" in str(err) and err.line == 1
