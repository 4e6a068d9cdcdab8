"""Planning the writes of a pool: the desired ResourceSlices against those the server holds.

Pure functions, no API calls: :mod:`nvtopo.dra.publish` lists, plans, then writes.

The rules, per pool (one node's slices):

- a pool whose slices all match the desired ones (spec compared semantically, pool
  generation aside; nvtopo's labels and topology annotation; owner references when asked),
  with no extra slice and one generation across its slices, is left alone: no write;
- otherwise every desired slice is written with generation ``max(existing) + 1`` (1 for a new
  pool), created when missing and replaced when present, because all slices of a pool must
  carry one generation for the scheduler to take them as one pool; then the slices of the pool
  that are no longer desired are deleted. Writing first and deleting last keeps a complete
  pool of the newest generation visible at every step, and a run stopped half way leaves
  mixed generations, which the next run sees as changed and finishes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import InvalidOperation
from typing import Any, Literal

from nvtopo.dra.annotation import TOPOLOGY_ANNOTATION, decode_document
from nvtopo.dra.taints import TAINTS_ANNOTATION
from nvtopo.exceptions import ParseError

__all__ = [
    "LABEL_DRIVER",
    "LABEL_MANAGED_BY",
    "LABEL_NODE",
    "MANAGER",
    "Manifest",
    "PoolPlan",
    "SliceChange",
    "label_value",
    "plan_pool",
    "plan_pools",
    "same_slice",
    "slice_difference",
]

Manifest = dict[str, Any]
Action = Literal["create", "update", "delete"]

#: Labels nvtopo puts on every slice it publishes (handy for ``kubectl get -l``).
LABEL_DRIVER = "nvtopo.dev/driver"
LABEL_NODE = "nvtopo.dev/node"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "nvtopo"
_OWNED_LABELS = (LABEL_DRIVER, LABEL_NODE, LABEL_MANAGED_BY)
_OWNED_ANNOTATIONS = (TOPOLOGY_ANNOTATION, TAINTS_ANNOTATION)
# Set by the server on every object; never compared, never sent back in an update.
_SERVER_METADATA = ("managedFields",)
_LABEL_OK = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def label_value(text: str) -> str:
    """``text`` as a label value (at most 63 characters), shortened with a digest if longer.

    Examples
    --------
    >>> label_value("gpu-node-1")
    'gpu-node-1'
    >>> v = label_value("n" * 100 + ".example.com"); len(v), v[:8]
    (63, 'nnnnnnnn')
    """
    if len(text) <= 63 and _LABEL_OK.match(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    head = re.sub(r"[^-A-Za-z0-9_.]", "-", text)[: 63 - 11].rstrip("-_.")
    return f"{head}-{digest}"


@dataclass(frozen=True)
class SliceChange:
    """One write the publisher makes (or, in a dry run, would make)."""

    action: Action
    slice: str
    pool: str
    #: The pool generation written (None for a delete).
    generation: int | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "slice": self.slice,
            "pool": self.pool,
            "generation": self.generation,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PoolPlan:
    """What to write for one pool; no write at all when :attr:`changed` is False."""

    pool: str
    generation: int
    creates: tuple[Manifest, ...] = ()
    updates: tuple[Manifest, ...] = ()
    #: ``(name, resourceVersion)`` of each slice to delete.
    deletes: tuple[tuple[str, str | None], ...] = ()
    unchanged: int = 0
    changes: tuple[SliceChange, ...] = field(default=(), compare=False)

    @property
    def writes(self) -> int:
        return len(self.creates) + len(self.updates) + len(self.deletes)

    @property
    def changed(self) -> bool:
        return self.writes > 0


# -- semantic comparison ---------------------------------------------------------------------


def _quantity(value: Any) -> Any:
    try:
        from kubernetes.utils import parse_quantity

        return parse_quantity(value)  # type: ignore[no-untyped-call]
    except (ImportError, ValueError, InvalidOperation, TypeError):
        return value


def _clean(value: Any) -> Any:
    """``value`` without null, empty list and empty map entries: the server drops them."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            c = _clean(v)
            if c is None or c == {} or c == []:
                continue
            out[k] = c
        return out
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _spec_key(spec: Mapping[str, Any]) -> Any:
    key = _clean(dict(spec))  # new dicts and lists at every level: safe to edit below
    pool = key.get("pool")
    if isinstance(pool, dict):
        pool.pop("generation", None)
    for device in key.get("devices") or []:
        for taint in device.get("taints") or [] if isinstance(device, dict) else []:
            if isinstance(taint, dict):
                # The server stamps when a taint was added; nvtopo never sends it.
                taint.pop("timeAdded", None)
        if isinstance(device, dict) and isinstance(device.get("capacity"), dict):
            for cap in device["capacity"].values():
                # "80Gi" and "81920Mi" are one quantity; compare the numbers.
                if isinstance(cap, dict) and "value" in cap:
                    cap["value"] = _quantity(cap["value"])
    return key


def _without_generation(spec: Mapping[str, Any]) -> dict[str, Any]:
    pool = spec.get("pool")
    if not isinstance(pool, Mapping):
        return dict(spec)
    return {**spec, "pool": {k: v for k, v in pool.items() if k != "generation"}}


def _same_spec(desired: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    # The server returns what nvtopo sent, so plain equality settles nearly every pool; the
    # semantic comparison is for the rest (dropped empty fields, quantities written otherwise).
    if _without_generation(desired) == _without_generation(existing):
        return True
    return bool(_spec_key(desired) == _spec_key(existing))


def _same_annotation(desired: str | None, existing: str | None) -> bool:
    return desired == existing or _annotation_key(desired) == _annotation_key(existing)


def _annotation_key(text: str | None) -> Any:
    if text is None:
        return None
    try:
        # The document, not the bytes: a different zlib build compresses the same document
        # to other bytes, and that must not look like a change of the node.
        return decode_document(text, where="<annotation>")
    except ParseError:
        return text


def _owners_key(refs: Any) -> Any:
    if not refs:
        return ()
    keys = []
    for r in refs:
        if isinstance(r, Mapping):
            keys.append(
                (r.get("apiVersion"), r.get("kind"), r.get("name"), r.get("uid"),
                 bool(r.get("controller")))
            )  # fmt: skip
    return tuple(sorted(keys, key=repr))


def _generation(manifest: Mapping[str, Any]) -> int:
    gen = ((manifest.get("spec") or {}).get("pool") or {}).get("generation", 0)
    return gen if isinstance(gen, int) and not isinstance(gen, bool) else 0


def _name(manifest: Mapping[str, Any]) -> str:
    return str((manifest.get("metadata") or {}).get("name", ""))


def slice_difference(desired: Mapping[str, Any], existing: Mapping[str, Any]) -> str | None:
    """What differs between two slices, pool generation aside; None when they are the same.

    Only what nvtopo owns is compared: the spec (semantically: empty fields the server drops
    are ignored, quantities compare as numbers), nvtopo's labels and topology annotation, and
    owner references when the desired slice sets them. Other labels and annotations (added by
    people or tools) are neither compared nor removed.

    Examples
    --------
    >>> import copy
    >>> a = {"metadata": {"name": "s"}, "spec": {"driver": "d", "pool": {"name": "n",
    ...      "generation": 1, "resourceSliceCount": 1}, "devices": [{"name": "gpu-0",
    ...      "capacity": {"memory": {"value": "80Gi"}}}]}}
    >>> b = copy.deepcopy(a); b["spec"]["pool"]["generation"] = 7
    >>> b["spec"]["devices"][0]["capacity"]["memory"]["value"] = "81920Mi"
    >>> slice_difference(a, b) is None
    True
    >>> b["spec"]["devices"][0]["name"] = "gpu-1"
    >>> slice_difference(a, b)
    'spec changed'
    """
    dmeta, emeta = desired.get("metadata") or {}, existing.get("metadata") or {}
    dspec, espec = desired.get("spec") or {}, existing.get("spec") or {}
    if not _same_spec(dspec, espec) and not _taints_dropped(dmeta, emeta, dspec, espec):
        return "spec changed"
    dlabels, elabels = dmeta.get("labels") or {}, emeta.get("labels") or {}
    for key in _OWNED_LABELS:
        if dlabels.get(key) != elabels.get(key):
            return f"label {key} changed"
    dann, eann = dmeta.get("annotations") or {}, emeta.get("annotations") or {}
    for key in _OWNED_ANNOTATIONS:
        if not _same_annotation(dann.get(key), eann.get(key)):
            return "topology changed"
    if "ownerReferences" in dmeta and _owners_key(dmeta["ownerReferences"]) != _owners_key(
        emeta.get("ownerReferences")
    ):
        return "owner changed"
    return None


def _devices(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [d for d in spec.get("devices") or [] if isinstance(d, Mapping)]


def _taints_dropped(
    dmeta: Mapping[str, Any],
    emeta: Mapping[str, Any],
    dspec: Mapping[str, Any],
    espec: Mapping[str, Any],
) -> bool:
    """True when the stored slice is the desired one less its device taints, and nvtopo had
    sent exactly those taints: a server with device taints off drops them (see
    :data:`nvtopo.dra.taints.TAINTS_ANNOTATION`), and sending them again changes nothing."""
    digest = (dmeta.get("annotations") or {}).get(TAINTS_ANNOTATION)
    if digest is None or (emeta.get("annotations") or {}).get(TAINTS_ANNOTATION) != digest:
        return False
    if any(d.get("taints") for d in _devices(espec)):
        return False
    bare = {**dspec, "devices": [{k: v for k, v in d.items() if k != "taints"}
                                 for d in _devices(dspec)]}  # fmt: skip
    return _same_spec(bare, espec)


def same_slice(desired: Mapping[str, Any], existing: Mapping[str, Any]) -> bool:
    """True when :func:`slice_difference` finds nothing."""
    return slice_difference(desired, existing) is None


# -- bodies ------------------------------------------------------------------------------------


def _with_generation(manifest: Mapping[str, Any], generation: int) -> Manifest:
    spec = dict(manifest["spec"])
    spec["pool"] = {**spec["pool"], "generation": generation}
    meta = {k: v for k, v in (manifest.get("metadata") or {}).items() if k != "resourceVersion"}
    return {**manifest, "metadata": meta, "spec": spec}


def _update_body(
    desired: Mapping[str, Any], existing: Mapping[str, Any], generation: int
) -> Manifest:
    """The PUT body: the desired slice over the existing object's metadata.

    The existing ``resourceVersion`` makes the write conditional (a concurrent writer turns it
    into a 409); labels and annotations nvtopo does not own, and finalizers, are kept.
    """
    body = _with_generation(desired, generation)
    dmeta = desired.get("metadata") or {}
    emeta = existing.get("metadata") or {}
    meta = {k: v for k, v in emeta.items() if k not in _SERVER_METADATA}
    labels = {k: v for k, v in (emeta.get("labels") or {}).items() if k not in _OWNED_LABELS}
    labels.update(dmeta.get("labels") or {})
    annotations = {
        k: v for k, v in (emeta.get("annotations") or {}).items() if k not in _OWNED_ANNOTATIONS
    }
    annotations.update(dmeta.get("annotations") or {})
    for key, value in (("labels", labels), ("annotations", annotations)):
        if value:
            meta[key] = value
        else:
            meta.pop(key, None)
    if "ownerReferences" in dmeta:
        meta["ownerReferences"] = dmeta["ownerReferences"]
    body["metadata"] = meta
    return body


# -- plans ---------------------------------------------------------------------------------------


def plan_pool(
    pool: str, desired: Sequence[Mapping[str, Any]], existing: Sequence[Mapping[str, Any]]
) -> PoolPlan:
    """The writes that turn ``existing`` (one pool's slices on the server) into ``desired``.

    ``desired`` empty means the pool should go (its node left the cluster).

    Examples
    --------
    >>> def s(name, gen=1, dev="gpu-0"):
    ...     return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
    ...             "metadata": {"name": name, "resourceVersion": "9"},
    ...             "spec": {"driver": "d", "nodeName": "n", "devices": [{"name": dev}],
    ...                      "pool": {"name": "n", "generation": gen, "resourceSliceCount": 1}}}
    >>> plan_pool("n", [s("n-0")], [s("n-0", gen=3)]).changed
    False
    >>> p = plan_pool("n", [s("n-0", dev="gpu-1")], [s("n-0", gen=3), s("n-1", gen=3)])
    >>> [(c.action, c.slice, c.generation) for c in p.changes]
    [('update', 'n-0', 4), ('delete', 'n-1', None)]
    """
    by_name = {_name(e): e for e in existing}
    wanted = {_name(d) for d in desired}
    generations = {_generation(e) for e in existing}
    reasons: dict[str, str | None] = {}
    for d in desired:
        e = by_name.get(_name(d))
        reasons[_name(d)] = "new slice" if e is None else slice_difference(d, e)
    stale = [e for e in existing if _name(e) not in wanted]
    if not stale and len(generations) <= 1 and not any(reasons.values()):
        current = next(iter(generations), 0)
        return PoolPlan(pool, current, unchanged=len(desired))
    generation = max(generations, default=0) + 1
    creates, updates, changes = [], [], []
    for d in desired:
        name = _name(d)
        e = by_name.get(name)
        if e is None:
            creates.append(_with_generation(d, generation))
            changes.append(SliceChange("create", name, pool, generation, "new slice"))
        else:
            updates.append(_update_body(d, e, generation))
            why = reasons[name] or (
                "mixed generations" if len(generations) > 1 else "another slice of the pool changed"
            )
            changes.append(SliceChange("update", name, pool, generation, why))
    gone = "node left the cluster" if not desired else "no longer desired"
    deletes = []
    for e in stale:
        rv = (e.get("metadata") or {}).get("resourceVersion")
        deletes.append((_name(e), rv))
        changes.append(SliceChange("delete", _name(e), pool, None, gone))
    return PoolPlan(
        pool, generation, tuple(creates), tuple(updates), tuple(deletes), 0, tuple(changes)
    )


def pool_of(manifest: Mapping[str, Any]) -> str:
    """The pool name of a slice (``spec.pool.name``)."""
    return str(((manifest.get("spec") or {}).get("pool") or {}).get("name", ""))


def plan_pools(
    desired: Mapping[str, Sequence[Mapping[str, Any]]],
    existing: Iterable[Mapping[str, Any]],
    *,
    prune: bool,
) -> list[PoolPlan]:
    """One plan per pool of ``desired``; with ``prune``, also one per other listed pool.

    ``existing`` is what the server holds for the driver (all of it when pruning; at least
    the desired pools otherwise). Pools come in name order.
    """
    by_pool: dict[str, list[Mapping[str, Any]]] = {}
    for e in existing:
        by_pool.setdefault(pool_of(e), []).append(e)
    pools = set(desired) | (set(by_pool) if prune else set())
    return [plan_pool(p, desired.get(p, ()), by_pool.get(p, ())) for p in sorted(pools)]
