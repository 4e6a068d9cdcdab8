"""The checked-in Python stubs are what protoc makes of proto/ today (``make proto``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_stubs_match_the_proto() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "proto.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "stubs match" in run.stdout
