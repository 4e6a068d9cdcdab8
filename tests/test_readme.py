"""Every command and Python snippet in README.md runs and prints what the README shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_examples_print_what_the_readme_shows() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, "README.md is out of date (make readme):\n" + done.stdout[-4000:]


def test_examples_run() -> None:
    examples = sorted((ROOT / "examples").glob("*.py"))
    assert examples, "examples/ holds no example"
    for example in examples:
        done = subprocess.run(
            [sys.executable, str(example)], capture_output=True, text=True, check=False, cwd=ROOT
        )
        assert done.returncode == 0, f"{example.name}:\n{done.stderr[-2000:]}"
        assert done.stdout.strip(), f"{example.name} printed nothing"
