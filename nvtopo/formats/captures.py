"""Which ``nvidia-smi`` command printed a capture, so a reader handed another command's
output says what it got and what it needs, instead of failing on the first odd line."""

from __future__ import annotations

import re

from nvtopo.exceptions import ParseError
from nvtopo.formats.smi_fabric_text import looks_like_smi_query
from nvtopo.formats.smi_nvlink import looks_like_nvlink

__all__ = ["DOCTOR_READS", "capture_command", "refuse_other_capture"]

#: Captures that ``nvtopo doctor --capture`` reads.
DOCTOR_READS = ("nvidia-smi -q", "nvidia-smi nvlink -s", "nvidia-smi nvlink -R")
_TOPO_HEADER = re.compile(r"^\s*GPU0(\s|$)", re.MULTILINE)


def capture_command(text: str) -> str | None:
    """The ``nvidia-smi`` command whose output ``text`` looks like, or None.

    Examples
    --------
    >>> capture_command("GPU 0: NVIDIA H100 (UUID: GPU-1)\\n\\t Link 0: 26.562 GB/s\\n")
    'nvidia-smi nvlink -s'
    >>> capture_command("\\tGPU0\\tGPU1\\nGPU0\\t X \\tNV18\\n")
    'nvidia-smi topo -m'
    """
    if text.lstrip().startswith("<"):
        return "nvidia-smi -q -x"
    if looks_like_smi_query(text):
        return "nvidia-smi -q"
    kind = looks_like_nvlink(text)
    if kind is not None:
        return "nvidia-smi nvlink -R" if kind == "remote" else "nvidia-smi nvlink -s"
    if _TOPO_HEADER.search(text):
        return "nvidia-smi topo -m"
    return None


def _has(text: str, command: str) -> bool:
    if command == "nvidia-smi topo -m":
        return _TOPO_HEADER.search(text) is not None
    if command == "nvidia-smi -q -x":
        return "<nvidia_smi_log" in text or text.lstrip().startswith("<")
    return capture_command(text) == command


def refuse_other_capture(text: str, *, expected: str, source: str) -> None:
    """Raise when ``text`` lacks ``expected``'s output and is recognisably another command's
    (a file holding several outputs, one of them the expected, passes)."""
    if _has(text, expected):
        return
    found = capture_command(text)
    if found is None:
        return
    hint = "; `nvtopo doctor --capture` reads it" if found in DOCTOR_READS else ""
    raise ParseError(
        f"this is `{found}` output; this source needs `{expected}` output{hint}", source=source
    )
