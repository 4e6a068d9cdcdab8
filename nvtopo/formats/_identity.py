"""``NodeTopology`` documents that differ only in who the node is, decoded once.

The trays of a rack, and the racks of a cluster, publish documents that are the same but
for the fields naming the node and its GPUs: each GPU's ``uuid``, its ``fabric`` record
(one per NVLink domain) and its ``platform`` record (chassis, tray, module), and the node's
``name``. Parsing a whole document costs about 60 µs; finding those fields is a few
``str.find`` calls. :func:`node_from_text` cuts them out of the JSON text, keeps one decoded
topology per remaining text (the *form* of the node), and builds each further node of that
form by putting its own values back into the form's GPUs. Nothing is dropped: every node
keeps its own UUIDs, fabric and platform records and name, exactly as the document says.

A field is only cut where the text shows it unambiguously: a ``"uuid":"`` string without
escapes, a ``"fabric":{`` or ``"platform":{`` object without nested objects that parses on
its own. Where the cut text, parsed, does not have each cut value in exactly one GPU's (or
the node's) field of that name, the form is not used and every document of it is decoded
whole. A node whose own values fail (an unreadable record, two GPUs with one UUID) is
decoded whole as well, so errors read as they always have.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from nvtopo.exceptions import TopologyError
from nvtopo.formats._decode import _fabric, _platform
from nvtopo.formats._parts import on_clear, shared_part
from nvtopo.model import Fabric, Gpu, NodeTopology

__all__ = ["clear_forms", "node_from_text"]

#: ``(needle, kind)``: where a cut string value starts.
_STRINGS = (('"uuid":"', "uuid"), ('"kind":"NodeTopology","name":"', "name"))
#: ``(needle, kind)``: where a cut object value starts (the needle ends with its ``{``).
_OBJECTS = (('"fabric":{', "fabric"), ('"platform":{', "platform"))
#: Cut values become these strings (``\\u0000`` then the cut's number) in the form's text.
_MARK = "\x00"
_LIMIT = 1024

#: ``(GPU position or -1 for the node, field)`` of each cut, in text order.
Slots = tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class _Form:
    """A decoded document and, per field, which cut value goes to which GPU position."""

    topology: NodeTopology
    uuids: tuple[tuple[int, int], ...]  # (value number, GPU position)
    fabrics: tuple[tuple[int, int], ...]
    platforms: tuple[tuple[int, int], ...]
    name: int | None  # value number of the node's name

    @classmethod
    def of(cls, topology: NodeTopology, slots: Slots) -> _Form:
        def where(field: str) -> tuple[tuple[int, int], ...]:
            return tuple((k, pos) for k, (pos, f) in enumerate(slots) if f == field and pos >= 0)

        name = next((k for k, (pos, _) in enumerate(slots) if pos < 0), None)
        return cls(topology, where("uuid"), where("fabric"), where("platform"), name)


#: Forms by the text around their cuts; False for a form that cannot be used.
_forms: dict[tuple[str, ...], _Form | bool] = {}
#: Hashes of the forms seen once.
_seen: set[int] = set()
_fabrics: dict[str, Fabric] = {}
_lock = threading.Lock()


def clear_forms() -> None:
    """Forget every form and record (also done by :func:`~nvtopo.formats._parts.clear_parts`)."""
    with _lock:
        _forms.clear()
        _seen.clear()
        _fabrics.clear()


on_clear(clear_forms)


def _cut(raw: str) -> tuple[list[str], list[str], list[str]] | None:
    """The text around the per-node values, the values and their kinds, in text order."""
    spans: list[tuple[int, int, str]] = []
    find = raw.find
    for needle, kind in _STRINGS:
        i = find(needle)
        while i >= 0:
            start = i + len(needle)
            end = find('"', start)
            if end < 0 or "\\" in raw[start:end]:
                return None
            spans.append((start, end, kind))
            i = find(needle, end)
    for needle, kind in _OBJECTS:
        i = find(needle)
        while i >= 0:
            start = i + len(needle) - 1
            end = find("}", start) + 1
            if end == 0 or "{" in raw[start + 1 : end]:
                return None
            spans.append((start, end, kind))
            i = find(needle, end)
    spans.sort()
    pieces, values, kinds = [], [], []
    at = 0
    for start, end, kind in spans:
        if start < at:
            return None  # one inside another
        pieces.append(raw[at:start])
        values.append(raw[start:end])
        kinds.append(kind)
        at = end
    pieces.append(raw[at:])
    return pieces, values, kinds


def _marked(pieces: list[str], kinds: list[str]) -> str:
    """The JSON text with cut ``k`` replaced by the string ``\\u0000k``."""
    out = [pieces[0]]
    for k, kind in enumerate(kinds):
        out.append(f"\\u0000{k}" if kind in ("uuid", "name") else f'"\\u0000{k}"')
        out.append(pieces[k + 1])
    return "".join(out)


def _slots(form: str, kinds: list[str], gpus: int) -> Slots | None:
    """Where each cut value sits in the parsed form: ``(GPU position or -1, field)``."""
    doc = json.loads(form)
    found: dict[int, tuple[int, str]] = {}
    places: list[tuple[int, str, Any]] = []
    if isinstance(doc, dict):
        places.append((-1, "name", doc.get("name")))
        listed = doc.get("gpus")
        if isinstance(listed, list) and len(listed) == gpus:
            for pos, g in enumerate(listed):
                if isinstance(g, dict):
                    places += [(pos, f, g.get(f)) for f in ("uuid", "fabric", "platform")]
    for pos, field, value in places:
        if isinstance(value, str) and value.startswith(_MARK):
            k = int(value[1:])
            if k in found or kinds[k] != field:
                return None
            found[k] = (pos, field)
    if len(found) != len(kinds):
        return None  # a value the parse dropped (a repeated key) or put elsewhere
    return tuple(found[k] for k in range(len(kinds)))


def _fabric_of(text: str) -> Fabric:
    fabric = _fabrics.get(text)
    if fabric is None:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("fabric is not an object")
        fabric = shared_part("fabric", raw, _fabric)
        with _lock:
            if len(_fabrics) >= _LIMIT:
                _fabrics.clear()
            _fabrics[text] = fabric
    return fabric


def _copy(gpu: Gpu, fields: dict[str, Any]) -> Gpu:
    """``gpu`` with ``fields`` changed. ``Gpu`` has no checks of its own, so its attributes
    are copied rather than passed through ``__init__`` (a fifth of the cost)."""
    if _PLAIN_GPU:
        new = object.__new__(Gpu)
        new.__dict__.update(gpu.__dict__)
        new.__dict__.update(fields)
        return new
    return replace(gpu, **fields)


_PLAIN_GPU = not hasattr(Gpu, "__post_init__") and not hasattr(Gpu, "__slots__")


def _fill(form: _Form, values: list[str]) -> NodeTopology:
    """The form's topology with this node's own values in its slots."""
    t = form.topology
    changes: dict[int, dict[str, Any]] = {pos: {} for _, pos in form.uuids}
    for k, pos in form.uuids:
        changes[pos]["uuid"] = values[k]
    for k, pos in form.fabrics:
        changes.setdefault(pos, {})["fabric"] = _fabric_of(values[k])
    if form.platforms:  # one parse for all of them: they are mostly different
        raws = json.loads("[" + ",".join([values[k] for k, _ in form.platforms]) + "]")
        for (_, pos), raw in zip(form.platforms, raws, strict=True):
            changes.setdefault(pos, {})["platform"] = _platform(raw)
    gpus = list(t.gpus)
    for pos, fields in changes.items():
        gpus[pos] = _copy(gpus[pos], fields)
    name = t.name if form.name is None else values[form.name]
    return replace(t, gpus=tuple(gpus), name=name, numa_cpus=dict(t.numa_cpus))


def node_from_text(raw: str, decode: Callable[[str], NodeTopology]) -> NodeTopology:
    """The topology of ``NodeTopology`` JSON text ``raw``: from its form when one is known,
    else ``decode(raw)`` (which reads a whole document and raises on a bad one)."""
    cut = _cut(raw)
    if cut is None:
        return decode(raw)
    pieces, values, kinds = cut
    key = tuple(pieces)
    form = _forms.get(key)
    if isinstance(form, _Form):
        try:
            return _fill(form, values)
        except (ValueError, TypeError, KeyError, AttributeError, TopologyError):
            return decode(raw)  # this node's own values are bad: decoded whole, as ever
    topology = decode(raw)
    if form is None:
        # A form is made when a second document has it: one seen once costs only its cut
        # (a cluster of nodes all different pays no more than the cut), and what is kept of
        # it is a hash (a false match only makes a form that is never used again).
        seen = hash(key)
        if seen in _seen:
            _remember(key, _made(pieces, kinds, topology))
        else:
            with _lock:
                if len(_seen) >= 16 * _LIMIT:
                    _seen.clear()
                _seen.add(seen)
    return topology


def _made(pieces: list[str], kinds: list[str], topology: NodeTopology) -> _Form | bool:
    """The form of these pieces, or False where it cannot be used."""
    # A ``\\u0000`` of the document's own could be read as a mark: such a form is never
    # used (a cut value has no backslash, so the text around it is what counts).
    if any("\\u0000" in p for p in pieces):
        return False
    try:
        slots = _slots(_marked(pieces, kinds), kinds, len(topology.gpus))
    except ValueError:
        return False
    return False if slots is None else _Form.of(topology, slots)


def _remember(key: tuple[str, ...], form: _Form | bool) -> None:
    with _lock:
        if len(_forms) >= _LIMIT:
            _forms.clear()
        _forms[key] = form
