"""DESIGN "Layers": the import-linter contract holds, and it is a contract that can break."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_every_layer_imports_only_those_below_it() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "nvtopo layers KEPT" in result.stdout


def test_an_upward_import_from_the_model_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "nvtopo", tmp_path / "nvtopo", ignore=shutil.ignore_patterns("*.so"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    cluster = tmp_path / "nvtopo" / "model" / "cluster.py"
    cluster.write_text(cluster.read_text() + "\nfrom nvtopo.kube import readback  # noqa\n")
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "nvtopo.model is not allowed to import nvtopo.kube" in result.stdout
    assert "nvtopo.model.cluster -> nvtopo.kube.readback" in result.stdout


def test_import_nvtopo_leaves_the_heavy_libraries_out() -> None:
    """STYLE: `import nvtopo` costs no Kubernetes, graph, numpy or gRPC import."""
    code = (
        "import sys, nvtopo\n"
        "heavy = ('kubernetes', 'networkx', 'numpy', 'grpc', 'pynvml', 'jsonschema')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
