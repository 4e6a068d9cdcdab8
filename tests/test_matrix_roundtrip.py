"""The ``topo -m`` renderer, and model → matrix text → model round trips."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nvtopo.exceptions import TopologyError
from nvtopo.formats.smi_topo import parse_topo_matrix
from nvtopo.model import PCIE_CLASSES, Gpu, GpuPair, Nic, NodeTopology
from nvtopo.render.matrix import render_matrix

CAPTURES = Path(__file__).parent / "data" / "captures"

_cpulists = st.lists(
    st.tuples(st.integers(0, 255), st.integers(0, 40)), min_size=1, max_size=4
).map(lambda parts: ",".join(str(a) if d == 0 else f"{a}-{a + d}" for a, d in parts))


@st.composite
def topologies(draw: st.DrawFn) -> NodeTopology:
    n = draw(st.integers(1, 16))
    if draw(st.booleans()):
        indices = list(range(n))
    else:  # GPUs hidden from the node leave gaps in the numbering
        indices = sorted(draw(st.sets(st.integers(0, 31), min_size=n, max_size=n)))
    gpus = []
    for index in indices:
        numa = tuple(sorted(draw(st.sets(st.integers(0, 33), max_size=4))))
        gpus.append(
            Gpu(
                index,
                cpu_affinity=draw(st.none() | _cpulists),
                numa_affinity=numa,
                numa_node=numa[0] if len(numa) == 1 else None,
            )
        )
    pairs = []
    for a, b in combinations(indices, 2):
        # A topo -m capture gives every pair's path (unknown paths print `?`, tested apart).
        if draw(st.booleans()):
            pairs.append(GpuPair(a, b, nvlinks=draw(st.integers(1, 18))))
        else:
            pairs.append(GpuPair(a, b, pcie=draw(st.sampled_from(PCIE_CLASSES))))
    count = draw(st.integers(0, 6))
    between = {
        (j, k): draw(st.sampled_from(PCIE_CLASSES)) for j, k in combinations(range(count), 2)
    }

    def nic_paths(k: int) -> tuple[str, ...]:
        return tuple("X" if j == k else between[min(j, k), max(j, k)] for j in range(count))

    nics = []
    for k in range(count):
        paths = tuple(draw(st.lists(st.sampled_from(PCIE_CLASSES), min_size=n, max_size=n)))
        if draw(st.booleans()):
            device = draw(st.none() | st.sampled_from([f"mlx5_{k}", f"mlx5_bond_{k}", "ibp0"]))
            nics.append(Nic(f"NIC{k}", device=device, gpu_paths=paths, nic_paths=nic_paths(k)))
        else:  # older drivers name the columns after the device
            name = f"mlx5_{k}"
            nics.append(Nic(name, device=name, gpu_paths=paths, nic_paths=nic_paths(k)))
    return NodeTopology(gpus=tuple(gpus), pairs=tuple(pairs), nics=tuple(nics))


def assert_same_matrix(parsed: NodeTopology, original: NodeTopology) -> None:
    assert parsed.gpu_indices == original.gpu_indices
    for got, want in zip(parsed.gpus, original.gpus, strict=True):
        assert got.cpu_affinity == want.cpu_affinity
        assert got.numa_affinity == want.numa_affinity
        assert got.numa_node == want.numa_node
    for a, b in combinations(original.gpu_indices, 2):
        assert parsed.path_class(a, b) == original.path_class(a, b), (a, b)
    assert parsed.nics == original.nics


@settings(deadline=None, max_examples=150)
@given(topologies(), st.booleans())
def test_round_trip(t: NodeTopology, color: bool) -> None:
    text = render_matrix(t, color=color)
    parsed = parse_topo_matrix(text)
    assert_same_matrix(parsed, t)
    assert render_matrix(parsed, color=color) == text


@settings(deadline=None, max_examples=50)
@given(topologies())
def test_round_trip_through_a_paste(t: NodeTopology) -> None:
    # Pasted into an issue, the tabs become spaces and a prompt line comes first.
    text = "$ nvidia-smi topo -m\n" + render_matrix(t, color=True).expandtabs(8)
    assert_same_matrix(parse_topo_matrix(text), t)


@pytest.mark.parametrize("name", sorted(p.name for p in CAPTURES.glob("*-topo-m.txt")))
def test_real_captures_round_trip(name: str) -> None:
    t = parse_topo_matrix((CAPTURES / name).read_text())
    assert_same_matrix(parse_topo_matrix(render_matrix(t)), t)


def test_layout_like_the_tool() -> None:
    t = parse_topo_matrix((CAPTURES / "dgx-h100-topo-m.txt").read_text())
    lines = render_matrix(t).split("\n")
    nics = "\t".join(f"NIC{k}" for k in range(8))
    gpus = "\t".join(f"GPU{k}" for k in range(8))
    assert lines[0] == f"\t{gpus}\t{nics}\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID"
    assert lines[1] == (
        "GPU0\t X \t" + "NV18\t" * 7 + "PIX\tNODE\tNODE\tNODE\tSYS\tSYS\tSYS\tSYS"
        "\t0-47,96-143\t0\t\tN/A"
    )
    assert lines[9].startswith("NIC0\tPIX\tNODE\tNODE\tNODE\tSYS\tSYS\tSYS\tSYS\t X \t")
    assert "Legend:" in lines
    at = lines.index("NIC Legend:")
    assert lines[at + 1 :] == ["", *(f"  NIC{k}: mlx5_{k}" for k in range(8)), ""]
    assert lines[-1] == ""  # newline-terminated


def test_color_underlines_the_header() -> None:
    t = NodeTopology(gpus=(Gpu(0), Gpu(1)), pairs=(GpuPair(0, 1, nvlinks=4),))
    first = render_matrix(t, color=True).split("\n")[0]
    assert first == "\t\x1b[4mGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m"
    assert "\x1b" not in render_matrix(t)


def test_unknown_affinity_prints_not_available_and_unknown_paths_a_question_mark() -> None:
    t = NodeTopology(gpus=(Gpu(0), Gpu(1, cpu_affinity="8-15", numa_affinity=(1, 3, 4, 5))))
    lines = render_matrix(t).split("\n")
    assert lines[1] == "GPU0\t X \t?\tN/A\tN/A\t\tN/A"
    assert lines[2] == "GPU1\t?\t X \t8-15\t1,3-5\t\tN/A"


def test_nic_to_nic_cells_are_the_captures() -> None:
    # Real DGX-1: mlx5_2 and mlx5_3 hang off the same host bridge (PHB), mlx5_2 and
    # mlx5_0 sit on different sockets (SYS); the capture's NIC rows say so and are kept.
    t = parse_topo_matrix((CAPTURES / "dgx1-v100-topo-m.txt").read_text())
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in render_matrix(t).split("\n")}
    assert rows["mlx5_2"][8:] == [" X ", "SYS", "PHB", "SYS"]
    assert rows["mlx5_1"][8:] == ["SYS", "PHB", "SYS", " X "]


@pytest.mark.parametrize("name", ["pcie-8x-rtx4090-topo-m.txt"])
def test_nic_to_nic_pix_of_a_capture_is_printed_as_pix(name: str) -> None:
    """Two ports of one card are PIX to each other; no bound through the GPUs says so."""
    text = (CAPTURES / name).read_text()
    t = parse_topo_matrix(text)
    printed = parse_topo_matrix(render_matrix(t))
    assert [n.nic_paths for n in printed.nics] == [n.nic_paths for n in t.nics]
    cells = {c for n in t.nics for c in n.nic_paths}
    assert "PIX" in cells


def test_nic_to_nic_paths_the_source_lacks_print_a_question_mark() -> None:
    t = NodeTopology(
        gpus=(Gpu(0),),
        nics=(Nic("NIC0", gpu_paths=("PIX",)), Nic("NIC1", gpu_paths=("PIX",))),
    )
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in render_matrix(t).split("\n")}
    assert rows["NIC0"] == ["PIX", " X ", "?"]
    assert rows["NIC1"] == ["PIX", "?", " X "]


def test_nic_names_that_cannot_be_columns_are_numbered() -> None:
    gpus = (Gpu(0),)
    t = NodeTopology(
        gpus=gpus,
        nics=(
            Nic("eth 0", gpu_paths=("PHB",), nic_paths=("X", "SYS")),
            Nic("GPU9", gpu_paths=("SYS",), nic_paths=("SYS", "X")),
        ),
    )
    parsed = parse_topo_matrix(render_matrix(t))
    assert [(n.name, n.device) for n in parsed.nics] == [("NIC0", "eth 0"), ("NIC1", "GPU9")]
    assert [n.gpu_paths for n in parsed.nics] == [("PHB",), ("SYS",)]


def test_nic_without_paths_is_left_out() -> None:
    t = NodeTopology(gpus=(Gpu(0),), nics=(Nic("NIC0", device="mlx5_0"),))
    assert "NIC0" not in render_matrix(t)


def test_no_gpus() -> None:
    with pytest.raises(TopologyError, match="no GPUs"):
        render_matrix(NodeTopology(gpus=()))
