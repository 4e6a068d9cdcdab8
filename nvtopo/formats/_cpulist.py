"""Linux cpulist notation (``0-55,112-167``), shared by the ``nvidia-smi`` parsers and renderers.

The same notation lists CPUs (``CPU Affinity``) and NUMA nodes (``NUMA Affinity``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["compress_cpulist", "cpulist_problem", "expand_cpulist", "is_cpulist"]

_CPULIST_RE = re.compile(r"^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*$")

#: Largest id accepted when a list is expanded: Linux caps NUMA nodes far below this, and the
#: cap keeps a hostile ``0-999999999`` from allocating a huge tuple.
MAX_EXPANDED_ID = 4095


def is_cpulist(text: str) -> bool:
    """Whether ``text`` is well-formed cpulist notation with ascending ranges.

    Examples
    --------
    >>> is_cpulist("0-55,112-167"), is_cpulist("0-"), is_cpulist("9-3")
    (True, False, False)
    """
    if not _CPULIST_RE.match(text):
        return False
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if hi and int(hi) < int(lo):
            return False
    return True


def cpulist_problem(text: str, highest: int) -> str | None:
    """What is wrong with cpulist ``text`` (None: nothing), without expanding it.

    Examples
    --------
    >>> cpulist_problem("0-71", 65535) is None
    True
    >>> cpulist_problem("99999999999-1", 65535)
    "'99999999999-1' is not a list like 0,3-9,11 with ascending ranges"
    >>> cpulist_problem("0-99999", 65535)
    "CPU 99999 in '0-99999' is out of range (at most 65535)"
    """
    if not is_cpulist(text):
        return f"{text!r} is not a list like 0,3-9,11 with ascending ranges"
    last = max(int(part.rpartition("-")[2]) for part in text.split(","))
    if last > highest:
        return f"CPU {last} in {text!r} is out of range (at most {highest})"
    return None


def expand_cpulist(text: str) -> tuple[int, ...]:
    """The sorted, unique ids of a cpulist; ValueError when malformed or out of range.

    Examples
    --------
    >>> expand_cpulist("0,3-5,11")
    (0, 3, 4, 5, 11)
    """
    if not is_cpulist(text):
        raise ValueError(f"{text!r} is not a list like 0,3-9,11")
    ids: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last > MAX_EXPANDED_ID:
            raise ValueError(f"id {last} in {text!r} is out of range (at most {MAX_EXPANDED_ID})")
        ids.update(range(first, last + 1))
    return tuple(sorted(ids))


def compress_cpulist(ids: Iterable[int]) -> str:
    """Ranges notation of ``ids`` (``""`` when empty).

    Examples
    --------
    >>> compress_cpulist([0, 3, 4, 5, 6, 11])
    '0,3-6,11'
    """
    values = sorted(set(ids))
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)
