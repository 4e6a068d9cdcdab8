"""Gangs: the pods that must be placed together, read from their labels and annotations.

A pod asks for nvtopo placement by carrying the scheduling gate :data:`GATE`; the
admission policy in ``deploy/`` adds that requirement for namespaces that use the
allocator. Pods sharing the label :data:`GANG_LABEL` (in one namespace) form a gang; a
gated pod without it is a gang of one. The gang's shape is in annotations that every pod
may carry (they must agree):

- :data:`SIZE_ANNOTATION`: how many pods the gang has (default 1); the allocator waits
  until that many are there;
- :data:`DOMAIN_ANNOTATION`: ``required`` (one NVLink domain or nothing), ``preferred``
  (default) or ``none``;
- :data:`SEGMENT_ANNOTATION`: groups of that many nodes, each inside one domain.

Each pod takes one node; its GPUs are the devices its ResourceClaims request from the
allocator's DeviceClass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nvtopo.exceptions import NvtopoError

__all__ = [
    "DOMAIN_ANNOTATION",
    "GANG_LABEL",
    "GATE",
    "JOURNAL_ANNOTATION",
    "SEGMENT_ANNOTATION",
    "SIZE_ANNOTATION",
    "ClaimRequest",
    "Gang",
    "GangError",
    "PodClaims",
    "gated",
    "group_gangs",
]

GATE = "topology.nvtopo.dev/placement"
GANG_LABEL = "topology.nvtopo.dev/gang"
SIZE_ANNOTATION = "topology.nvtopo.dev/gang-size"
DOMAIN_ANNOTATION = "topology.nvtopo.dev/domain"
SEGMENT_ANNOTATION = "topology.nvtopo.dev/segment"
#: On the gang's first pod while its claims are being written (see :mod:`.journal`).
JOURNAL_ANNOTATION = "topology.nvtopo.dev/placement-journal"

_DOMAINS = ("required", "preferred", "none")


class GangError(NvtopoError):
    """A gang's pods or claims cannot be read as a placement request (one line says why)."""


@dataclass(frozen=True)
class ClaimRequest:
    """One request of a claim that the allocator fills: ``count`` devices, results named
    ``name`` (``req`` or ``req/sub`` for a ``firstAvailable`` alternative)."""

    claim: str
    name: str
    count: int


@dataclass(frozen=True)
class PodClaims:
    """A gated pod and the allocator's requests in its claims."""

    pod: Mapping[str, Any]
    requests: tuple[ClaimRequest, ...]

    @property
    def name(self) -> str:
        return str(self.pod["metadata"]["name"])

    @property
    def gpus(self) -> int:
        return sum(r.count for r in self.requests)


@dataclass(frozen=True)
class Gang:
    """Pods placed together: ``namespace/name``, size, domain rule, segment, members."""

    namespace: str
    name: str
    size: int
    domain: str
    segment: int | None
    members: tuple[PodClaims, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def complete(self) -> bool:
        return len(self.members) >= self.size

    @property
    def gpus_per_pod(self) -> int:
        counts = {m.gpus for m in self.members}
        if len(counts) != 1:
            raise GangError(
                f"gang {self.key}: pods ask for different GPU counts ({sorted(counts)})"
            )
        return counts.pop()


def gated(pod: Mapping[str, Any]) -> bool:
    """Whether ``pod`` still carries :data:`GATE`."""
    gates = (pod.get("spec") or {}).get("schedulingGates") or []
    return any(g.get("name") == GATE for g in gates)


def _claim_names(pod: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """(pod claim entry name, ResourceClaim name or None while not yet made)."""
    made = {
        s.get("name"): s.get("resourceClaimName")
        for s in (pod.get("status") or {}).get("resourceClaimStatuses") or []
    }
    out: list[tuple[str, str | None]] = []
    for entry in (pod.get("spec") or {}).get("resourceClaims") or []:
        if entry.get("resourceClaimName"):
            out.append((str(entry["name"]), str(entry["resourceClaimName"])))
        else:
            name = made.get(entry.get("name"))
            out.append((str(entry["name"]), str(name) if name else None))
    return out


def _requests(claim: Mapping[str, Any], device_class: str) -> list[ClaimRequest]:
    name = str(claim["metadata"]["name"])
    devices = (claim.get("spec") or {}).get("devices") or {}
    constrained = {r for c in devices.get("constraints") or [] for r in c.get("requests") or []}
    out = []
    for request in devices.get("requests") or []:
        exactly = request.get("exactly")
        if exactly is not None:
            if exactly.get("deviceClassName") == device_class:
                out.append(ClaimRequest(name, str(request["name"]), _count(exactly, name)))
            continue
        subs = [
            s
            for s in request.get("firstAvailable") or []
            if s.get("deviceClassName") == device_class
        ]
        if not subs:
            continue
        # The allocator's own choice replaces the static alternatives: it names the first one
        # without a matchAttribute constraint (``any`` in nvtopo's templates).
        free = [s for s in subs if f"{request['name']}/{s['name']}" not in constrained]
        sub = (free or subs)[0]
        out.append(ClaimRequest(name, f"{request['name']}/{sub['name']}", _count(sub, name)))
    return out


def _count(request: Mapping[str, Any], claim: str) -> int:
    mode = request.get("allocationMode", "ExactCount")
    count = request.get("count", 1)
    if mode != "ExactCount" or not isinstance(count, int) or count < 1:
        raise GangError(f"claim {claim}: the allocator fills ExactCount requests only, not {mode}")
    return count


def _annotation(pods: Sequence[Mapping[str, Any]], key: str, what: str) -> str | None:
    values = {
        str(v)
        for p in pods
        if (v := ((p.get("metadata") or {}).get("annotations") or {}).get(key)) is not None
    }
    if len(values) > 1:
        raise GangError(f"{what}: pods disagree on {key} ({', '.join(sorted(values))})")
    return values.pop() if values else None


def _positive(text: str | None, key: str, what: str) -> int | None:
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise GangError(f"{what}: {key}={text!r} is not a positive integer")
    return value


def group_gangs(
    pods: Iterable[Mapping[str, Any]],
    claims: Mapping[tuple[str, str], Mapping[str, Any]],
    device_class: str,
) -> tuple[list[Gang], list[Mapping[str, Any]], dict[str, tuple[str, list[Mapping[str, Any]]]]]:
    """Group gated ``pods`` into gangs.

    Returns the gangs (complete or not), the gated pods that ask the allocator for nothing
    (their gate can go at once), and ``{gang key: (error, pods)}`` for gangs that cannot be
    read.
    ``claims`` maps ``(namespace, name)`` to the ResourceClaim objects.
    """
    by_gang: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        label = (meta.get("labels") or {}).get(GANG_LABEL)
        key = (str(meta.get("namespace")), f"gang:{label}" if label else f"pod:{meta['name']}")
        by_gang.setdefault(key, []).append(pod)
    gangs: list[Gang] = []
    ungoverned: list[Mapping[str, Any]] = []
    errors: dict[str, tuple[str, list[Mapping[str, Any]]]] = {}
    for (namespace, tag), members in sorted(by_gang.items()):
        kind, _, name = tag.partition(":")
        what = f"gang {namespace}/{name}" if kind == "gang" else f"pod {namespace}/{name}"
        members = sorted(members, key=lambda p: str(p["metadata"]["name"]))
        try:
            size = _positive(_annotation(members, SIZE_ANNOTATION, what), SIZE_ANNOTATION, what)
            domain = _annotation(members, DOMAIN_ANNOTATION, what) or "preferred"
            if domain not in _DOMAINS:
                raise GangError(f"{what}: {DOMAIN_ANNOTATION}={domain!r} is not one of {_DOMAINS}")
            segment = _positive(
                _annotation(members, SEGMENT_ANNOTATION, what), SEGMENT_ANNOTATION, what
            )
            placed: list[PodClaims] = []
            waiting = False
            for pod in members:
                requests: list[ClaimRequest] = []
                for _entry, claim_name in _claim_names(pod):
                    if claim_name is None:
                        waiting = True  # the ResourceClaim controller has not made it yet
                        continue
                    claim = claims.get((namespace, claim_name))
                    if claim is None:
                        waiting = True
                        continue
                    requests.extend(_requests(claim, device_class))
                if requests or waiting:
                    placed.append(PodClaims(pod, tuple(requests)))
                elif kind == "pod":
                    ungoverned.append(pod)
                else:
                    placed.append(PodClaims(pod, ()))
            if kind == "gang" and size is None:
                raise GangError(f"{what}: pods with {GANG_LABEL} need {SIZE_ANNOTATION}")
            gang_size = size or 1
            if len(members) > gang_size:
                raise GangError(f"{what}: {len(members)} pods for a gang of {gang_size}")
            if waiting:
                continue
            if kind == "pod" and not placed:
                continue
            gangs.append(Gang(namespace, name, gang_size, domain, segment, tuple(placed)))
        except GangError as exc:
            errors[f"{namespace}/{name}"] = (str(exc), members)
    return gangs, ungoverned, errors
