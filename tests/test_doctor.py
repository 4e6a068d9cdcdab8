"""``nvtopo doctor`` on recorded machines, fabric captures and (where lent) a real GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nvtopo
import nvtopo.discovery.nvml as nvml_source
from nvtopo.cli import main
from nvtopo.imex import check
from nvtopo.launch.doctor import doctor

from .fake_nvml import FakeNvml, load, write_sysfs

FABRIC = Path(__file__).parent / "data" / "fabric"
CLIQUE = "3f1c8a52-7d4e-4b91-a6c2-5e8d0b9f7a13.32766"
CHANNEL_FIX = (
    "warning: no IMEX channel devices in {d} (needed on the host by jobs run without "
    "Kubernetes) -> create /dev/nvidia-caps-imex-channels/channel0 (the driver's "
    "NVreg_CreateImexChannel0=1) or run under a ComputeDomain"
)
GPU_INFO = "info: GPU {i}: fabric health mask 0x{m}"


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(name: str) -> FakeNvml:
        data = load(name)
        monkeypatch.setattr(nvml_source, "SYSFS_ROOT", write_sysfs(data, tmp_path / name))
        fake = FakeNvml(data)
        monkeypatch.setattr(nvml_source, "_import_pynvml", lambda: fake)
        return fake

    return use


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    code = main(["doctor", *args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


@pytest.mark.parametrize(
    ("case", "error", "masks"),
    [
        ("completed", None, ("1aa", "1aa", "1aa", "1aa")),
        (
            "in-progress",
            "error: GPU 2: fabric state In Progress -> fabric registration is still running: "
            "wait, then rerun; if it stays, check the fabric manager log",
            ("1aa", "1aa", "0", "1aa"),
        ),
        (
            "insufficient-resources",
            "error: GPU 1: fabric status Insufficient Resources -> fabric registration failed: "
            "check the fabric manager log and the rack's NVLink partition, then reset the GPU "
            "or reboot",
            ("1aa", "1aa", "1aa", "1aa"),
        ),
        (
            "zero-cluster-uuid",
            "error: GPUs 0-3: fabric cluster UUID is all zeros -> the GPU was never given an "
            "NVLink cluster: check the fabric manager and the NVLink partition of this tray",
            ("1aa", "1aa", "1aa", "1aa"),
        ),
        (
            "unhealthy",
            "error: GPU 3: fabric health Unhealthy -> drain the node and report the health mask "
            "to the rack's operator; NCCL can hang on an unhealthy fabric",
            ("1aa", "1aa", "1aa", "19a"),
        ),
    ],
)
def test_fabric_captures_exact_lines(
    case: str,
    error: str | None,
    masks: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capture = FABRIC / f"gb200-tray-smi-q-{case}.txt"
    code, lines, err = _run(["--capture", str(capture), "--channels-dir", str(tmp_path)], capsys)
    expected = [error] if error else []
    expected.append(CHANNEL_FIX.format(d=tmp_path))
    if case == "unhealthy":
        expected.append(
            "warning: GPU 3: fabric-unhealthy (fabric health Unhealthy, mask 0x19a): its device "
            "carries the taint topology.nvtopo.dev/fabric-unhealthy=fabric-health-unhealthy-mask-"
            "0x19a (NoSchedule) -> the scheduler gives this GPU only to claims that tolerate the "
            "taint; nvtopo publish lifts it once the GPU recovers"
        )
    expected.extend(GPU_INFO.format(i=i, m=m) for i, m in enumerate(masks))
    if error is None:
        expected.append(f"verdict: this node can run a multi-node NVLink job in clique {CLIQUE}")
        assert (code, err) == (0, "")
    else:
        expected.append("verdict: this node cannot run a multi-node NVLink job (1 error)")
        assert code == 1
        assert err == "nvtopo: error: this node cannot run a multi-node NVLink job (1 error)\n"
    assert lines == expected


def test_links_down_from_nvlink_captures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--capture",
        str(FABRIC / "gb200-tray-smi-q-completed.txt"),
        "--capture",
        str(FABRIC / "gb200-tray-nvlink-s-links-down.txt"),
        "--capture",
        str(FABRIC / "gb200-tray-nvlink-r.txt"),
        "--channels-dir",
        str(tmp_path),
    ]
    code, lines, _ = _run(args, capsys)
    assert code == 1
    assert lines[0] == (
        "error: GPU 0: NVLinks 4, 5 down -> drain the node; `nvidia-smi nvlink -s` lists the "
        "inactive links to reseat or replace"
    )
    healthy = [*args[:2], "--capture", str(FABRIC / "gb200-tray-nvlink-s.txt"), *args[-2:]]
    assert _run(healthy, capsys)[0] == 0


def test_json_and_require_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capture = str(FABRIC / "gb200-tray-smi-q-completed.txt")
    code, lines, _ = _run(
        ["--capture", capture, "--channels-dir", str(tmp_path), "--format", "json"], capsys
    )
    doc = json.loads("\n".join(lines))
    assert (code, doc["ready"], doc["clique"]) == (0, True, CLIQUE)
    assert [f["level"] for f in doc["findings"]] == ["warning", "info", "info", "info", "info"]
    assert doc["imex"]["canJoin"] is True
    code, lines, _ = _run(
        ["--capture", capture, "--channels-dir", str(tmp_path), "--require-channel"], capsys
    )
    assert code == 1 and lines[0].startswith(f"error: no IMEX channel devices in {tmp_path}")
    (tmp_path / "channel0").write_text("")
    code, lines, _ = _run(
        ["--capture", capture, "--channels-dir", str(tmp_path), "--require-channel"], capsys
    )
    assert code == 0 and not any(line.startswith(("error", "warning")) for line in lines)


def test_h200_recording_cannot_join(
    recorded: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded("h200-vm")
    code, lines, _ = _run(["--channels-dir", str(tmp_path)], capsys)
    assert code == 1
    assert lines == [
        "error: GPU 0: fabric state Not Supported -> the GPU or driver does not report a "
        "multi-node NVLink fabric; run NVLink jobs inside the node only",
        CHANNEL_FIX.format(d=tmp_path),
        "info: GPU 0: NUMA 0, CPUs 0-15, fabric health mask 0x0",
        "warning: no NIC next to any GPU is known -> traffic between cliques goes over whatever "
        "network NCCL finds; set NCCL_IB_HCA by hand",
        "verdict: vm cannot run a multi-node NVLink job (1 error)",
    ]


def test_verdict_is_imex_checks(tmp_path: Path) -> None:
    for name in ("gb200-tray", "dgx-h100", "hgx-b200"):
        topo = nvtopo.system(name)
        assert (
            doctor(topo, channels_dir=tmp_path).ready == check(topo, channels_dir=tmp_path).can_join
        )
    tray = doctor(nvtopo.system("gb200-tray"), channels_dir=tmp_path)
    nics = [f.what.split("NIC ")[1].split(" ")[0] for f in tray.findings if f.level == "info"]
    assert nics == ["mlx5_0", "mlx5_1", "mlx5_4", "mlx5_5"]


def test_bad_captures_are_refused_naming_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topo_m = tmp_path / "topo.txt"
    topo_m.write_text("\tGPU0\tGPU1\nGPU0\t X \tNV18\nGPU1\tNV18\t X \n")
    code, _, err = _run(["--capture", str(topo_m)], capsys)
    assert code == 1
    assert err == (
        f"nvtopo: error: {topo_m}: not a capture nvtopo reads: expected the output of "
        "`nvidia-smi -q`, `nvidia-smi nvlink -s` or `nvidia-smi nvlink -R`\n"
    )
    mixed = tmp_path / "mixed.txt"
    mixed.write_text(
        "GPU 0: NVIDIA GB200 (UUID: GPU-1)\n\t Link 0: 53.125 GB/s\n"
        "\t Link 1: Remote Device 00000000:10:00.0: Link 0\n"
    )
    code, _, err = _run(["--capture", str(mixed)], capsys)
    assert code == 1
    assert err.startswith(f"nvtopo: error: {mixed}:2: not `nvidia-smi nvlink -R` output")
    code, _, err = _run(["--capture", str(tmp_path / "missing.txt")], capsys)
    assert (code, err) == (1, f"nvtopo: error: {tmp_path / 'missing.txt'}: no such file\n")


@pytest.mark.gpu
def test_doctor_on_this_machines_gpus(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        pytest.skip(f"NVML cannot start here: {exc}")
    code, lines, _ = _run(["--channels-dir", str(tmp_path)], capsys)
    topo = nvtopo.discover()
    assert code == (0 if check(topo, channels_dir=tmp_path).can_join else 1)
    assert lines[-1].startswith("verdict: ")
    assert sum(line.startswith("info: GPU ") for line in lines) == len(topo.gpus)
    print("\n".join(lines))


@pytest.mark.parametrize(
    ("case", "code", "first"),
    [
        ("completed", 0, "warning: no IMEX channel devices"),
        ("in-progress", 1, "error: GPU 2: fabric state In Progress -> "),
        ("insufficient-resources", 1, "error: GPU 1: fabric status Insufficient Resources -> "),
        ("zero-cluster-uuid", 1, "error: GPUs 0-3: fabric cluster UUID is all zeros -> "),
        ("unhealthy", 1, "error: GPU 3: fabric health Unhealthy -> "),
        ("links-down", 1, "error: GPU 0: NVLinks 4, 5 down -> "),
    ],
)
def test_nvtopo_json_cases(
    case: str, code: int, first: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = Path(__file__).parent / "data" / "imex" / f"gb200-tray-{case}.json"
    got, lines, _ = _run(["--source", f"file:{source}", "--channels-dir", str(tmp_path)], capsys)
    assert got == code and lines[0].startswith(first)
    assert lines[-1].startswith("verdict: gb200-tray-07 ca")
