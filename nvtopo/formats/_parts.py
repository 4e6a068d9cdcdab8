"""Parts of ``NodeTopology`` documents decoded once per distinct content.

Reading a cluster back decodes one document per node, and the documents of one kind of
node differ in little more than GPU UUIDs: every GPU's NVLink records, the fabric record of
a rack, the pairs, NVSwitches and NICs come again and again. :func:`shared_part` builds such
a part once per distinct content and hands the same (frozen) object to every later
document, so a cluster read back holds one copy of each, and loading it into placement
finds them shared (:class:`nvtopo.place.ClusterState` goes by those parts).

The content key is the part's ``marshal`` bytes (format 2, which does not depend on how
objects are shared): exact to the JSON type (``1``, ``1.0`` and ``true`` differ), and
cheap. A part seen for the first time is checked against its
definition in the format's JSON Schema before it is built, so nothing malformed is ever
shared; a part that fails raises :class:`ValueError`, and the caller reads the document
through the validating reader, which names the problem.
"""

from __future__ import annotations

import marshal
import threading
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

__all__ = ["PART_KINDS", "clear_parts", "on_clear", "shared_part"]

_T = TypeVar("_T")

#: Parts shared between documents, each with its schema: (definition, property) in the
#: ``$defs`` of the format's JSON Schema.
PART_KINDS: dict[str, tuple[str, ...]] = {
    "nvlinks": ("gpu", "nvlinks"),
    "fabric": ("gpu", "fabric"),
    "pairs": ("nodeBody", "pairs"),
    "nvswitches": ("nodeBody", "nvswitches"),
    "nics": ("nodeBody", "nics"),
}

#: Distinct parts kept; past it the table starts afresh (a cluster has a few kinds of node,
#: and one fabric record per NVLink domain).
_LIMIT = 65_536
_parts: dict[tuple[str, bytes], Any] = {}
_lock = threading.Lock()
#: Caches that hold parts and are emptied with them.
_holders: list[Callable[[], None]] = []


@cache
def _checker(kind: str) -> Callable[[Any], None]:
    from jsonschema.exceptions import best_match

    from nvtopo.formats.jsonio import _validator, schema

    defs = schema()["$defs"]
    where, prop = PART_KINDS[kind]
    validator = type(_validator())({"$defs": defs, **defs[where]["properties"][prop]})

    def check(raw: Any) -> None:
        err = best_match(validator.iter_errors(raw))
        if err is not None:
            raise ValueError(f"{kind}: {err.message}")

    return check


def shared_part(kind: str, raw: Any, build: Callable[[Any], _T]) -> _T:
    """The part ``raw`` (parsed JSON) of ``kind`` built by ``build``, once per content.

    Raises
    ------
    ValueError
        ``raw`` does not match its schema definition (or cannot be keyed at all).
    """
    key = (kind, marshal.dumps(raw, 2))
    part = _parts.get(key)
    if part is None:
        _checker(kind)(raw)
        part = build(raw)
        with _lock:
            if len(_parts) >= _LIMIT:
                _parts.clear()
            _parts[key] = part
    return part


def clear_parts() -> None:
    """Forget every shared part (a reader that wants to start cold, as benchmarks do)."""
    with _lock:
        _parts.clear()
    for clear in _holders:
        clear()


def on_clear(clear: Callable[[], None]) -> None:
    """Have :func:`clear_parts` call ``clear`` too (a cache of things built from parts)."""
    _holders.append(clear)
