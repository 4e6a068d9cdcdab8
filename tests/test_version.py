"""One version source: Cargo's, seen as ``nvtopo.__version__``."""

from __future__ import annotations

import re
from pathlib import Path

import nvtopo
from nvtopo import _core


def _cargo_version() -> str:
    text = (Path(__file__).resolve().parent.parent / "rust" / "Cargo.toml").read_text()
    section = text.split("[workspace.package]", 1)[1]
    match = re.search(r'^version\s*=\s*"([^"]+)"', section, re.MULTILINE)
    assert match, "rust/Cargo.toml has no [workspace.package] version"
    return match.group(1)


def test_version_is_cargo_version() -> None:
    assert nvtopo.__version__ == _cargo_version()
    assert _core.__version__ == _cargo_version()
