"""The ``resource.k8s.io/v1`` API limits a ResourceSlice must keep, as checks that run alone.

The kube-apiserver refuses a ResourceSlice that breaks any of these rules; nvtopo refuses it
first, with one line that names the slice, the device, the attribute and the limit, so a node
agent never learns of a bad value from a rejected API write. The numbers and the name rules are
those of the v1 API validation:

- a slice holds at most 128 devices, 64 when any device has taints or consumes counters;
- a device has at most 32 attributes and capacities together;
- a string or version value is at most 64 bytes; a version is semver 2.0.0;
- an attribute or capacity name is a C identifier of at most 32 characters, optionally after a
  domain (``domain/name``) that is a DNS subdomain of at most 63 characters;
- device names are DNS labels; driver names are DNS subdomains of at most 63 characters; pool
  names, node names and object names are DNS subdomains of at most 253 characters.

Every check takes a ``where`` prefix for its message and raises :class:`DraLimitError`.

Examples
--------
>>> check_qualified_name("topology.nvtopo.dev/set4", where="device gpu-0")
>>> check_qualified_name("topology.nvtopo.dev/set-4", where="device gpu-0")
Traceback (most recent call last):
...
nvtopo.dra.limits.DraLimitError: device gpu-0: attribute name 'topology.nvtopo.dev/set-4': \
'set-4' is not a C identifier (letters, digits and '_', not starting with a digit)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from nvtopo.exceptions import TopologyError

__all__ = [
    "MAX_ATTRIBUTES_AND_CAPACITIES",
    "MAX_ATTRIBUTE_VALUE_BYTES",
    "MAX_DEVICES_PER_SLICE",
    "MAX_DEVICES_PER_SLICE_WITH_TAINTS_OR_COUNTERS",
    "MAX_DOMAIN_LENGTH",
    "MAX_ID_LENGTH",
    "DraLimitError",
    "check_attribute_value",
    "check_capacity_value",
    "check_device",
    "check_device_name",
    "check_dns_subdomain",
    "check_driver_name",
    "check_qualified_name",
    "check_resource_slice",
    "is_semver",
]

#: Devices in one ResourceSlice.
MAX_DEVICES_PER_SLICE = 128
#: Devices in one ResourceSlice when any of them has taints or consumes counters.
MAX_DEVICES_PER_SLICE_WITH_TAINTS_OR_COUNTERS = 64
#: Attributes and capacities of one device, together.
MAX_ATTRIBUTES_AND_CAPACITIES = 32
#: Bytes of a string or version attribute value.
MAX_ATTRIBUTE_VALUE_BYTES = 64
#: Characters of the domain of a qualified name (and of a driver name).
MAX_DOMAIN_LENGTH = 63
#: Characters of the identifier part of a qualified name.
MAX_ID_LENGTH = 32
_MAX_LABEL = 63
_MAX_SUBDOMAIN = 253
_INT64 = (-(2**63), 2**63 - 1)

_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_C_IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUM = r"(0|[1-9]\d*)"
_PRE = r"(0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
_BUILD = r"[0-9a-zA-Z-]+"
_SEMVER_RE = re.compile(rf"^{_NUM}\.{_NUM}\.{_NUM}(-{_PRE}(\.{_PRE})*)?(\+{_BUILD}(\.{_BUILD})*)?$")
# A Kubernetes quantity: a signed decimal number with an optional SI, binary or exponent suffix.
_QUANTITY_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$")
_VALUE_KINDS = ("bool", "int", "string", "version")
_GOOD_NAMES: set[str] = set()


class DraLimitError(TopologyError):
    """A ResourceSlice value breaks a ``resource.k8s.io/v1`` API limit.

    The message is one line naming the slice, the device, the attribute and the limit.
    """


def is_semver(text: str) -> bool:
    """True when ``text`` is a semver 2.0.0 version as the API accepts it (``9.0.0``, not ``9.0``).

    Examples
    --------
    >>> is_semver("9.0.0"), is_semver("9.0"), is_semver("535.104.05")
    (True, False, False)
    """
    return bool(_SEMVER_RE.match(text))


def check_dns_subdomain(
    value: str, *, what: str, where: str, max_length: int = _MAX_SUBDOMAIN
) -> None:
    """``value`` is a lower-case DNS subdomain (RFC 1123) of at most ``max_length`` characters."""
    _check_dns_name(
        value,
        what=what,
        where=where,
        max_length=max_length,
        pattern=_SUBDOMAIN_RE,
        kind="a DNS subdomain (lower-case letters, digits, '-' and '.', starting and ending "
        "with a letter or digit)",
    )


def _check_dns_name(
    value: str, *, what: str, where: str, max_length: int, pattern: re.Pattern[str], kind: str
) -> None:
    if not value:
        raise DraLimitError(f"{where}: {what} is empty")
    if len(value) > max_length:
        raise DraLimitError(
            f"{where}: {what} {value[:40]!r}... has {len(value)} characters, more than the API "
            f"limit of {max_length}"
        )
    if not pattern.match(value):
        raise DraLimitError(f"{where}: {what} {value!r} is not {kind}")


def check_driver_name(name: str, *, where: str, what: str = "driver name") -> None:
    """A driver name (or the domain of a qualified name): DNS subdomain of at most 63 characters.

    Upper case passes the API check (it lower-cases first) but the API asks for lower case, and
    nvtopo keeps to that.
    """
    check_dns_subdomain(name, what=what, where=where, max_length=MAX_DOMAIN_LENGTH)


def check_device_name(name: str, *, where: str) -> None:
    """A device name: a DNS label (``gpu-0``), at most 63 characters."""
    _check_dns_name(
        name,
        what="device name",
        where=where,
        max_length=_MAX_LABEL,
        pattern=_LABEL_RE,
        kind="a DNS label (lower-case letters, digits and '-', starting and ending with a "
        "letter or digit)",
    )


def check_qualified_name(name: str, *, where: str, what: str = "attribute") -> None:
    """An attribute or capacity name: ``id`` or ``domain/id``.

    ``id`` is a C identifier of at most 32 characters; ``domain`` a driver name (DNS subdomain
    of at most 63 characters).
    """
    # The same few names recur on every device of every node: remember the good ones.
    if name in _GOOD_NAMES:
        return
    label = f"{where}: {what} name {name!r}"
    if not name:
        raise DraLimitError(f"{where}: {what} name is empty")
    parts = name.split("/")
    if len(parts) > 2:
        raise DraLimitError(f"{label}: more than one '/'")
    if len(parts) == 2:
        domain, ident = parts
        if not domain:
            raise DraLimitError(f"{label}: the domain before '/' is empty")
        check_driver_name(domain, where=label, what="domain")
    else:
        ident = parts[0]
    if not ident:
        raise DraLimitError(f"{label}: the name after '/' is empty")
    if len(ident) > MAX_ID_LENGTH:
        raise DraLimitError(
            f"{label}: {ident!r} has {len(ident)} characters, more than the API limit of "
            f"{MAX_ID_LENGTH}"
        )
    if not _C_IDENTIFIER_RE.match(ident):
        raise DraLimitError(
            f"{label}: {ident!r} is not a C identifier (letters, digits and '_', not starting "
            "with a digit)"
        )
    if len(_GOOD_NAMES) < 4096:
        _GOOD_NAMES.add(name)


def check_attribute_value(value: Any, *, where: str) -> None:
    """One attribute value: exactly one of ``bool``, ``int``, ``string``, ``version``, in range."""
    if not isinstance(value, Mapping) or len(value) != 1:
        raise DraLimitError(
            f"{where}: value must have exactly one of {', '.join(_VALUE_KINDS)}, got {value!r}"
        )
    ((kind, v),) = value.items()
    if kind == "bool":
        if not isinstance(v, bool):
            raise DraLimitError(f"{where}: bool value {v!r} is not true or false")
    elif kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise DraLimitError(f"{where}: int value {v!r} is not an integer")
        if not _INT64[0] <= v <= _INT64[1]:
            raise DraLimitError(f"{where}: int value {v} does not fit in 64 bits")
    elif kind in ("string", "version"):
        if not isinstance(v, str):
            raise DraLimitError(f"{where}: {kind} value {v!r} is not text")
        size = len(v.encode("utf-8"))
        if size > MAX_ATTRIBUTE_VALUE_BYTES:
            raise DraLimitError(
                f"{where}: {kind} value of {size} bytes ({v[:24]!r}...) is longer than the API "
                f"limit of {MAX_ATTRIBUTE_VALUE_BYTES}"
            )
        if kind == "version" and not is_semver(v):
            raise DraLimitError(f"{where}: version value {v!r} is not semver 2.0.0 (like 9.0.0)")
    else:
        raise DraLimitError(
            f"{where}: unknown value kind {kind!r} (expected one of {', '.join(_VALUE_KINDS)})"
        )


def check_capacity_value(value: Any, *, where: str) -> None:
    """One capacity: ``{"value": <quantity>}`` (``"81559Mi"``, ``"4"``)."""
    if not isinstance(value, Mapping) or "value" not in value:
        raise DraLimitError(f"{where}: capacity must be {{'value': <quantity>}}, got {value!r}")
    q = value["value"]
    if isinstance(q, bool) or not isinstance(q, (str, int)) or not _QUANTITY_RE.match(str(q)):
        raise DraLimitError(f"{where}: capacity {q!r} is not a Kubernetes quantity (like 80Gi)")


def _device_label(device: Mapping[str, Any], index: int) -> str:
    name = device.get("name")
    return f"device {name}" if isinstance(name, str) and name else f"device #{index}"


def check_device(device: Mapping[str, Any], *, where: str, index: int = 0) -> None:
    """One device: its name, the count of attributes and capacities, every name and value."""
    dev = f"{where}, {_device_label(device, index)}"
    check_device_name(device.get("name", ""), where=dev)
    attributes = device.get("attributes") or {}
    capacity = device.get("capacity") or {}
    total = len(attributes) + len(capacity)
    if total > MAX_ATTRIBUTES_AND_CAPACITIES:
        raise DraLimitError(
            f"{dev}: {len(attributes)} attributes and {len(capacity)} capacities make {total}, "
            f"more than the API limit of {MAX_ATTRIBUTES_AND_CAPACITIES}"
        )
    for name, value in attributes.items():
        check_qualified_name(name, where=dev)
        check_attribute_value(value, where=f"{dev}, attribute {name}")
    for name, value in capacity.items():
        check_qualified_name(name, where=dev, what="capacity")
        check_capacity_value(value, where=f"{dev}, capacity {name}")


def _slice_device_limit(devices: list[Mapping[str, Any]]) -> int:
    if any(d.get("taints") or d.get("consumesCounters") for d in devices):
        return MAX_DEVICES_PER_SLICE_WITH_TAINTS_OR_COUNTERS
    return MAX_DEVICES_PER_SLICE


def check_resource_slice(manifest: Mapping[str, Any]) -> None:
    """A whole ``resource.k8s.io/v1`` ResourceSlice manifest: names, pool, devices.

    Raises
    ------
    DraLimitError
        On the first value that breaks a limit, naming the slice, device and attribute.
    """
    meta = manifest.get("metadata") or {}
    name = meta.get("name", "")
    where = f"ResourceSlice {name or '<unnamed>'}"
    if (
        manifest.get("apiVersion") != "resource.k8s.io/v1"
        or manifest.get("kind") != "ResourceSlice"
    ):
        raise DraLimitError(f"{where}: not a resource.k8s.io/v1 ResourceSlice")
    check_dns_subdomain(name, what="name", where=where)
    spec = manifest.get("spec") or {}
    check_driver_name(spec.get("driver", ""), where=where)
    node = spec.get("nodeName")
    if node is not None:
        check_dns_subdomain(node, what="node name", where=where)
    pool = spec.get("pool") or {}
    for part in str(pool.get("name", "")).split("/"):
        check_dns_subdomain(part, what="pool name", where=where)
    if len(str(pool.get("name", ""))) > _MAX_SUBDOMAIN:
        raise DraLimitError(f"{where}: pool name is longer than the API limit of {_MAX_SUBDOMAIN}")
    count = pool.get("resourceSliceCount")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DraLimitError(f"{where}: pool resourceSliceCount {count!r} must be at least 1")
    generation = pool.get("generation")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise DraLimitError(f"{where}: pool generation {generation!r} must be an integer >= 0")
    devices = list(spec.get("devices") or [])
    limit = _slice_device_limit(devices)
    if len(devices) > limit:
        raise DraLimitError(
            f"{where}: {len(devices)} devices, more than the API limit of {limit} per slice"
        )
    seen: set[str] = set()
    for i, device in enumerate(devices):
        check_device(device, where=where, index=i)
        if device["name"] in seen:
            raise DraLimitError(f"{where}: device name {device['name']!r} appears twice")
        seen.add(device["name"])
