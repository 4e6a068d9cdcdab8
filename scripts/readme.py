#!/usr/bin/env python3
"""Keep README.md honest: run its examples and compare (``--check``) or refresh (``--update``).

Two kinds of fenced blocks are executed:
- ```console blocks: each ``$ nvtopo ...`` line is run (through ``python -m nvtopo``) and the
  lines up to the next ``$`` line must be its exact output;
- ```python blocks: executed in one namespace, top to bottom; a line ``# -> text`` after a
  ``print(...)`` states what that print writes.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\s*$")
ENV = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def run_command(line: str) -> str:
    args = shlex.split(line)
    assert args[0] == "nvtopo", line
    done = subprocess.run(
        [sys.executable, "-m", "nvtopo", *args[1:]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        check=False,
    )
    return (done.stdout + done.stderr).rstrip("\n")


def console_block(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line.startswith("$ "):
            out.append(line)
            out.extend(x.rstrip() for x in run_command(line[2:]).splitlines())
    return out


def python_block(lines: list[str], namespace: dict[str, object]) -> list[str]:
    code = [line for line in lines if not line.lstrip().startswith("# -> ")]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile("\n".join(code), "README.md", "exec"), namespace)
    printed = iter(buf.getvalue().splitlines())
    out = []
    for line in code:
        out.append(line)
        if re.match(r"^\s*print\(", line):
            out.append("# -> " + next(printed, ""))
    return out


def process(text: str) -> str:
    lines = text.splitlines()
    result: list[str] = []
    namespace: dict[str, object] = {}
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or m.group(1) not in ("console", "python"):
            result.append(lines[i])
            i += 1
            continue
        end = i + 1
        while not lines[end].startswith("```"):
            end += 1
        body = lines[i + 1 : end]
        new = console_block(body) if m.group(1) == "console" else python_block(body, namespace)
        result.extend([lines[i], *new, lines[end]])
        i = end + 1
    return "\n".join(result) + "\n"


def main() -> int:
    path = ROOT / "README.md"
    old = path.read_text()
    new = process(old)
    if "--update" in sys.argv:
        path.write_text(new)
        return 0
    if new != old:
        import difflib

        sys.stdout.writelines(
            difflib.unified_diff(
                old.splitlines(True), new.splitlines(True), "README.md", "README.md (as run)"
            )
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
