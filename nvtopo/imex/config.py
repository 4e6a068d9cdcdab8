"""The IMEX service's node list, ``nodes_config.cfg``.

``nvidia-imex`` reads the nodes of its domain from the file that ``IMEX_NODE_CONFIG_FILE``
names (``/etc/nvidia-imex/nodes_config.cfg`` by default): one IP address per line, one line
per node of the IMEX domain, and every node must be given the same list, since each
instance compares its address map with its peers'. Recent IMEX releases also take host
names that resolve on every node, which is what NVIDIA's DRA driver writes.

:func:`nodes_config` writes that file for the nodes of a placement, in placement order.
Addresses come from a map (``node=address``) or, where none is given, the node names are
written as host names.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping

from nvtopo.exceptions import NvtopoError, ParseError

__all__ = ["nodes_config", "parse_address_file", "parse_address_map", "valid_address"]

_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def valid_address(text: str) -> bool:
    """True for an IPv4/IPv6 address or an RFC 1123 host name.

    Examples
    --------
    >>> valid_address("10.0.0.7"), valid_address("fd00::7"), valid_address("tray-07.rack0")
    (True, True, True)
    >>> valid_address("10.0.0.7:50000"), valid_address("-bad")
    (False, False)
    """
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return bool(_HOSTNAME_RE.match(text)) and not text.replace(".", "").isdigit()
    return True


def _pair(text: str, *, source: str, line: int | None) -> tuple[str, str]:
    if "=" in text:
        node, _, address = text.partition("=")
    else:
        parts = text.split()
        if len(parts) != 2:
            raise ParseError(
                f"expected NODE=ADDRESS or NODE ADDRESS, got {text!r}", source=source, line=line
            )
        node, address = parts
    node, address = node.strip(), address.strip()
    if not node or not address:
        raise ParseError(f"expected NODE=ADDRESS, got {text!r}", source=source, line=line)
    if not valid_address(address):
        raise ParseError(
            f"{address!r} (node {node}) is neither an IP address nor a host name",
            source=source,
            line=line,
        )
    return node, address


def _add(found: dict[str, str], node: str, address: str, *, source: str, line: int | None) -> None:
    if node in found and found[node] != address:
        raise ParseError(
            f"node {node} is given two addresses ({found[node]}, {address})",
            source=source,
            line=line,
        )
    found[node] = address


def parse_address_map(text: str, *, source: str = "--address-map") -> dict[str, str]:
    """Read ``node=ip,node=ip`` (commas or white space between pairs).

    Examples
    --------
    >>> parse_address_map("tray0=10.0.0.1, tray1=10.0.0.2")
    {'tray0': '10.0.0.1', 'tray1': '10.0.0.2'}
    """
    found: dict[str, str] = {}
    for item in re.split(r"[,\s]+", text.strip()):
        if item:
            node, address = _pair(item, source=source, line=None)
            _add(found, node, address, source=source, line=None)
    return found


def parse_address_file(text: str, *, source: str = "<addresses>") -> dict[str, str]:
    """Read an address file: one ``NODE ADDRESS`` or ``NODE=ADDRESS`` per line.

    Blank lines and ``#`` comments are skipped. A bad line raises :class:`ParseError`
    naming the file and line.

    Examples
    --------
    >>> parse_address_file("# rack 0\\ntray0 10.0.0.1\\ntray1=10.0.0.2\\n")
    {'tray0': '10.0.0.1', 'tray1': '10.0.0.2'}
    """
    found: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            node, address = _pair(line, source=source, line=number)
            _add(found, node, address, source=source, line=number)
    return found


def nodes_config(nodes: Iterable[str], addresses: Mapping[str, str] | None = None) -> str:
    """The text of ``nodes_config.cfg`` for ``nodes``, one address per line.

    Parameters
    ----------
    nodes
        The node names of the IMEX domain, in the order to write them.
    addresses
        Node name → IP address or host name. Without a map the node names themselves are
        written (they must resolve on every node); with one, every node needs an entry.

    Raises
    ------
    NvtopoError
        A node without an address, a node or address given twice, or an invalid address.

    Examples
    --------
    >>> print(nodes_config(["tray0", "tray1"], {"tray0": "10.0.0.1", "tray1": "10.0.0.2"}))
    10.0.0.1
    10.0.0.2
    <BLANKLINE>
    """
    names = list(nodes)
    if not names:
        raise NvtopoError("an IMEX domain needs at least one node")
    seen_nodes: set[str] = set()
    seen: dict[str, str] = {}
    lines = []
    for name in names:
        if name in seen_nodes:
            raise NvtopoError(f"node {name} is listed twice")
        seen_nodes.add(name)
        if addresses is None:
            address = name
        else:
            address = addresses.get(name, "")
            if not address:
                raise NvtopoError(f"no address for node {name} in the address map")
        if not valid_address(address):
            raise NvtopoError(f"{address!r} (node {name}) is neither an IP address nor a host name")
        if address in seen:
            raise NvtopoError(f"nodes {seen[address]} and {name} share the address {address}")
        seen[address] = name
        lines.append(address)
    return "\n".join(lines) + "\n"
