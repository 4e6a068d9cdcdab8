"""``nvidia-smi topo -m`` parsing: real captures, and the ways real text goes wrong."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nvtopo.exceptions import NvtopoWarning, ParseError
from nvtopo.formats.smi_topo import parse_topo_matrix
from nvtopo.model import NodeTopology

DATA = Path(__file__).parent / "data"
CAPTURES = DATA / "captures"


def capture(name: str) -> str:
    """A saved capture without its ``# source:`` line (the parser reads real text only)."""
    text = (CAPTURES / name).read_text()
    first, _, rest = text.partition("\n")
    assert first.startswith("# source: https://"), name
    return rest


def nvlink_degree(t: NodeTopology, gpu: int) -> int:
    return sum(p.nvlinks for p in t.iter_pairs() if gpu in (p.a, p.b))


def error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_topo_matrix(text, source="topo.txt")
    return info.value


def line_of(text: str, prefix: str) -> int:
    """1-based number of the first line of ``text`` that starts with ``prefix``."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith(prefix):
            return number
    raise AssertionError(f"no line starts with {prefix!r}")


# -- real captures -----------------------------------------------------------------------


def test_dgx1_v100_hybrid_cube_mesh() -> None:
    t = parse_topo_matrix(capture("dgx1-v100-topo-m.txt"))
    assert t.gpu_indices == tuple(range(8))
    assert t.path_class(0, 1) == "NV1"
    assert t.path_class(0, 3) == "NV2"
    assert t.path_class(0, 4) == "NV2"
    assert t.path_class(0, 5) == "SYS"
    assert t.pair(3, 7).nvlinks == 1
    # Every V100 has 6 NVLinks: two single links and two bonded pairs.
    assert all(nvlink_degree(t, g) == 6 for g in range(8))
    assert sum(p.nvlinks == 2 for p in t.pairs) == 8
    assert t.pair(0, 5).pcie == "SYS" and t.pair(0, 1).pcie is None
    assert [n.name for n in t.nics] == ["mlx5_2", "mlx5_0", "mlx5_3", "mlx5_1"]
    mlx5_0 = t.nics[1]
    assert mlx5_0.device == "mlx5_0"
    assert mlx5_0.gpu_paths == ("PIX", "PIX", "PHB", "PHB", "SYS", "SYS", "SYS", "SYS")
    # Only a CPU Affinity column: no NUMA affinity, no NUMA node.
    assert {g.cpu_affinity for g in t.gpus} == {"0-19,40-59"}
    assert all(g.numa_affinity == () and g.numa_node is None for g in t.gpus)


def test_dgx1_p100_old_driver_soc_and_glued_header() -> None:
    # The paste lost the tabs between the first header names ("GPU0GPU1...GPU7mlx5_0").
    t = parse_topo_matrix(capture("dgx1-p100-topo-m.txt"))
    assert len(t.gpus) == 8 and len(t.nics) == 4
    assert t.path_class(0, 4) == "NV1"
    assert t.path_class(0, 5) == "SYS"  # printed as SOC by that driver
    assert all(nvlink_degree(t, g) == 4 for g in range(8))  # P100: 4 NVLinks each
    assert t.nics[0].name == "mlx5_0"
    assert t.nics[0].gpu_paths[4:] == ("SYS", "SYS", "SYS", "SYS")
    assert t.gpu(7).cpu_affinity == "1-1"


def test_dgx_a100_nic_legend_and_numa() -> None:
    t = parse_topo_matrix(capture("dgx-a100-topo-m.txt"))
    assert len(t.gpus) == 8
    assert {p.path_class for p in t.iter_pairs()} == {"NV12"}
    assert len(t.pairs) == 28
    assert [n.name for n in t.nics] == [f"NIC{k}" for k in range(10)]
    assert [n.device for n in t.nics] == [f"mlx5_{k}" for k in range(10)]
    assert t.nics[4].gpu_paths == ("SYS", "SYS", "SYS", "SYS", "PXB", "PXB", "SYS", "SYS")
    assert set(t.nics[8].gpu_paths) == {"SYS"}
    assert [g.numa_node for g in t.gpus] == [3, 3, 1, 1, 7, 7, 5, 5]
    assert t.gpu(4).cpu_affinity == "112-127,240-255"
    assert t.gpu(4).numa_affinity == (7,)


def test_dgx_h100_spaces_leading_text_legend() -> None:
    text = capture("dgx-h100-topo-m.txt")
    assert text.startswith("NVIDIA Topology:")
    t = parse_topo_matrix(text)
    assert len(t.gpus) == 8 and len(t.nics) == 8
    assert t.path_class(2, 6) == "NV18"
    assert all(nvlink_degree(t, g) == 7 * 18 for g in range(8))
    assert t.nics[3].device == "mlx5_3"
    assert t.nics[3].gpu_paths == ("NODE", "NODE", "NODE", "PIX", "SYS", "SYS", "SYS", "SYS")
    assert t.gpu(5).cpu_affinity == "48-95,144-191"
    assert t.gpu(5).numa_affinity == (1,) and t.gpu(5).numa_node == 1


def test_pcie_box_without_nic_legend() -> None:
    t = parse_topo_matrix(capture("pcie-8x-rtx4090-topo-m.txt"))
    assert len(t.gpus) == 8
    assert all(p.nvlinks == 0 and p.pcie == "SYS" for p in t.iter_pairs())
    assert [(n.name, n.device) for n in t.nics] == [("NIC0", None), ("NIC1", None)]
    assert t.nics[0].gpu_paths[6] == "PHB" and t.nics[0].gpu_paths[7] == "SYS"
    assert [g.numa_node for g in t.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]


def test_pcie_two_gpus_phb() -> None:
    t = parse_topo_matrix(capture("pcie-2x-rtx5090-topo-m.txt"))
    assert t.path_class(0, 1) == "PHB"
    assert t.pair(0, 1) == t.pairs[0] and t.pairs[0].pcie == "PHB"
    assert [g.numa_node for g in t.gpus] == [0, 0]
    assert t.nics == ()


def test_single_gpu_numa_not_available() -> None:
    t = parse_topo_matrix(capture("pcie-1x-tesla-p4-topo-m.txt"))
    assert t.gpu_indices == (0,) and t.pairs == ()
    assert t.gpu(0).cpu_affinity == "0-7"
    assert t.gpu(0).numa_affinity == () and t.gpu(0).numa_node is None


def test_gb200_tray_numa_affinity_ranges() -> None:
    t = parse_topo_matrix((DATA / "gb200-tray-topo-m.txt").read_text())
    assert len(t.gpus) == 4
    assert {p.path_class for p in t.iter_pairs()} == {"NV18"}
    g0, g3 = t.gpu(0), t.gpu(3)
    assert g0.cpu_affinity == "0-71" and g3.cpu_affinity == "72-143"
    assert g0.numa_affinity == (0, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17)
    assert g3.numa_affinity == (1, *range(19, 26), *range(27, 34))
    assert g0.numa_node is None  # several NUMA nodes: no single one


def test_h200_vm_whole_capture() -> None:
    # A capture of many commands, with the ANSI-underlined header and `topo -p2p` matrices.
    t = parse_topo_matrix((DATA / "h200-vm" / "smi.txt").read_text())
    assert t.gpu_indices == (0,)
    assert t.gpu(0).cpu_affinity == "0-15"
    assert t.gpu(0).numa_affinity == (0,) and t.gpu(0).numa_node == 0


def test_empty_cpu_affinity_goes_by_column() -> None:
    # A VM that reports no CPU affinity: the NUMA node stands under its own column.
    header = "\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID"
    rows = ["GPU0\t X \tNV12\t\t\t0\t\tN/A", "GPU1\tNV12\t X \t\t\t0\t\tN/A"]
    for text in ("\n".join([header, *rows]), "\n".join([header, *rows]).expandtabs(8)):
        t = parse_topo_matrix(text)
        assert [g.cpu_affinity for g in t.gpus] == [None, None]
        assert [g.numa_node for g in t.gpus] == [0, 0]


def test_ansi_header_and_crlf() -> None:
    tab_text = capture("dgx-a100-topo-m.txt")
    first, _, rest = tab_text.partition("\n")
    colored = f"\t\x1b[4m{first.lstrip(chr(9))}\x1b[0m\n{rest}".replace("\n", "\r\n")
    assert parse_topo_matrix(colored) == parse_topo_matrix(tab_text)


def test_cut_nic_legend_keeps_what_it_has() -> None:
    # The H100 capture with its NIC Legend cut after NIC3 (as a truncated paste shows it).
    text = capture("dgx-h100-topo-m.txt")
    text = text[: text.index("  NIC4: mlx5_4")]
    t = parse_topo_matrix(text)
    assert [n.device for n in t.nics] == ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"] + [None] * 4


# -- refusals ------------------------------------------------------------------------------


def test_no_header() -> None:
    err = error("Legend:\n\n  X    = Self\n")
    assert "no `GPU0 ...` header row" in str(err)
    assert str(err).startswith("topo.txt: ")


def test_header_missing_from_capture() -> None:
    text = capture("dgx-h100-topo-m.txt")
    header = text.split("\n")[1]
    assert "no `GPU0 ...` header row" in str(error(text.replace(header + "\n", "")))


def test_rows_cut() -> None:
    text = capture("dgx-a100-topo-m.txt")
    cut = text[: text.index("\nGPU5\t") + 1]
    err = error(cut)
    assert "header names 8 GPUs, only 5 GPU rows follow (GPU5..GPU7 missing)" in str(err)
    assert err.line == line_of(cut, "GPU4\t")
    assert f"topo.txt:{err.line}: " in str(err)


def test_nic_rows_cut_read_with_a_warning_naming_them() -> None:
    """The GPU block is whole: every GPU-to-NIC path is in the GPU rows; only the NIC-to-NIC
    paths of the cut rows are lost."""
    text = capture("dgx-h100-topo-m.txt")
    whole = parse_topo_matrix(text)
    cut = text[: text.index("\nNIC6 ") + 1]
    with pytest.warns(NvtopoWarning, match=r"only 6 NIC rows follow \(NIC6, NIC7 missing\)"):
        t = parse_topo_matrix(cut, source="topo.txt")
    assert t.pairs == whole.pairs and t.gpus == whole.gpus
    assert [n.gpu_paths for n in t.nics] == [n.gpu_paths for n in whole.nics]
    assert [n.nic_paths for n in t.nics[:6]] == [n.nic_paths for n in whole.nics[:6]]
    assert t.nics[6].nic_paths == () and t.nics[7].nic_paths == ()
    # A capture cut in the middle of a NIC row reads the same way.
    mid = text[: text.index("\nNIC6 ") + 12]
    with pytest.warns(NvtopoWarning, match="NIC6, NIC7 missing"):
        assert parse_topo_matrix(mid).nics == t.nics


def test_nic_rows_cut_warn_in_one_line_on_the_command_line(capsys, tmp_path) -> None:
    from nvtopo.cli import main

    text = capture("dgx-h100-topo-m.txt")
    path = tmp_path / "topo.txt"
    path.write_text(text[: text.index("\nNIC6 ") + 1])
    assert main(["dump", "--source", f"smi-topo:{path}", "--format", "matrix"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("nvtopo: warning: ") and err.count("\n") == 1
    assert "NIC6, NIC7 missing" in err and "Traceback" not in err
    nic6 = next(line for line in out.splitlines() if line.startswith("NIC6"))
    # NIC0's row still gives NIC0-NIC6; nothing gives NIC6-NIC7.
    assert nic6.split("\t")[9:] == ["SYS"] * 4 + ["NODE", "NODE", " X ", "?"]


def test_garbage_cell() -> None:
    text = capture("pcie-8x-rtx4090-topo-m.txt")
    bad = text.replace("GPU3\tSYS\tSYS\tSYS\t X \tSYS", "GPU3\tSYS\tSYS\tSYS\t X \tFOO")
    err = error(bad)
    assert "unknown cell 'FOO' in row GPU3, column GPU4" in str(err)
    assert err.line == line_of(bad, "GPU3")


def test_row_with_too_few_cells() -> None:
    text = capture("dgx1-v100-topo-m.txt")
    row = next(line for line in text.split("\n") if line.startswith("GPU2"))
    short = row.replace("NV1     SYS     SYS     PHB", "NV1     SYS     PHB", 1)
    assert short != row
    err = error(text.replace(row, short))
    assert "row GPU2 has 11 cells, the header has 12 device columns" in str(err)
    assert err.line == line_of(text, "GPU2")


def test_ragged_row_extra_cell() -> None:
    text = capture("pcie-8x-rtx4090-topo-m.txt")
    bad = text.replace("\tSYS\t0-55,112-167\t0\t\tN/A", "\tSYS\tSYS\t0-55,112-167\t0\t\tN/A", 1)
    err = error(bad)
    assert "ragged row" in str(err) and "row GPU0" in str(err)
    assert err.line == line_of(bad, "GPU0")


def test_ragged_row_extra_affinity() -> None:
    text = capture("dgx-h100-topo-m.txt")
    row = next(line for line in text.split("\n") if line.startswith("GPU1 "))
    err = error(text.replace(row, row + "  7"))
    assert "row GPU1 has 4 cells after the device columns" in str(err)
    assert err.line == line_of(text, "GPU1 ")


def test_asymmetric_matrix() -> None:
    text = capture("dgx1-v100-topo-m.txt")
    row = next(line for line in text.split("\n") if line.startswith("GPU1"))
    bad_row = row.replace("NV2     NV1     SYS", "NV2     NV2     SYS", 1)
    assert bad_row != row
    err = error(text.replace(row, bad_row))
    assert "not symmetric" in str(err)
    assert "row GPU3, column GPU1 says NV1" in str(err)
    assert "row GPU1, column GPU3" in str(err)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("0-47,96-143     0", "0-47,abc        0", "CPU Affinity of GPU0 is '0-47,abc'"),
        ("0-47,96-143     0", "0-47,96-143     x", "NUMA Affinity of GPU0"),
        (
            "0-47,96-143     0               N/A",
            "0-47,96-143     0               two",
            "GPU NUMA ID",
        ),
    ],
)
def test_non_numeric_affinity(old: str, new: str, expected: str) -> None:
    text = capture("dgx-h100-topo-m.txt")
    err = error(text.replace(old, new, 1))
    assert expected in str(err)
    assert err.line == line_of(text, "GPU0 ")


def test_x_off_the_diagonal() -> None:
    text = capture("pcie-2x-rtx5090-topo-m.txt").replace("GPU1\tPHB\t X ", "GPU1\t X \t X ")
    err = error(text)
    assert "row GPU1, column GPU0: X off the diagonal" in str(err)


def test_nvlink_cell_in_nic_row() -> None:
    text = capture("pcie-8x-rtx4090-topo-m.txt")
    text = text.replace("NIC0\tSYS", "NIC0\tNV2").replace(
        "GPU0\t X \t" + "SYS\t" * 7 + "SYS", "GPU0\t X \t" + "SYS\t" * 7 + "NV2"
    )
    assert "NIC and another device" in str(error(text))


def test_duplicate_row() -> None:
    text = capture("pcie-2x-rtx5090-topo-m.txt")
    row = "GPU1\tPHB\t X \t0-63\t0\t\tN/A"
    err = error(text.replace(row, f"{row}\n{row}"))
    assert "row GPU1 appears twice" in str(err)


def test_unknown_header_column() -> None:
    text = "\tGPU0\tCPU Affinity\tPower Draw\nGPU0\t X \t0-7\t300W\n"
    err = error(text)
    assert "header column 'Power'" in str(err) and err.line == 1


def test_legend_naming_unknown_nic() -> None:
    text = capture("dgx-a100-topo-m.txt").replace(
        "  NIC9: mlx5_9", "  NIC9: mlx5_9\n  NIC12: mlx5_12"
    )
    err = error(text)
    assert "NIC Legend names NIC12" in str(err)
    assert err.line == line_of(text, "  NIC12")


def test_error_message_is_one_line() -> None:
    text = capture("dgx-a100-topo-m.txt")
    message = str(error(text[: text.index("\nGPU2\t")]))
    assert "\n" not in message and re.match(r"^topo\.txt:\d+: ", message)


def test_legend_ends_where_other_output_starts() -> None:
    text = capture("dgx-h100-topo-m.txt") + "ulimit: unlimited\nHypervisor vendor: KVM\n"
    t = parse_topo_matrix(text)
    assert t.nics[7].device == "mlx5_7"


def test_from_nvidia_smi_names_the_source() -> None:
    text = capture("pcie-2x-rtx5090-topo-m.txt")
    assert NodeTopology.from_nvidia_smi(text).path_class(0, 1) == "PHB"
    with pytest.raises(ParseError, match=r"^node7\.txt:3: "):
        NodeTopology.from_nvidia_smi(text.replace("\tPHB\t X ", "\tPXB\t X "), source="node7.txt")


def test_header_naming_a_device_twice() -> None:
    text = "\tGPU0\tNIC0\tNIC0\tCPU Affinity\nGPU0\t X \tPIX\tPIX\t0-7\n"
    err = error(text)
    assert "header names NIC0 twice" in str(err) and err.line == 1


def test_gpu_numa_id_column_is_kept_and_printed_back() -> None:
    """GB200's GPU NUMA ID (the GPU's own memory node) survives parse → matrix → parse."""
    from nvtopo.render.matrix import render_matrix

    text = (Path(__file__).parent / "data" / "gb200-tray-topo-m.txt").read_text()
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    topo = parse_topo_matrix(body)
    assert [g.gpu_numa_id for g in topo.gpus] == [2, 10, 18, 26]
    again = parse_topo_matrix(render_matrix(topo))
    assert [g.gpu_numa_id for g in again.gpus] == [2, 10, 18, 26]
