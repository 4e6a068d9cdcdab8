"""The ``Fabric`` sections of ``nvidia-smi -q`` (plain text), as a node of fabric records.

``nvidia-smi -q`` prints one block per GPU, headed by its PCI bus id, in index order::

    GPU 00000008:01:00.0
        Product Name                          : NVIDIA GB200
        GPU UUID                              : GPU-...
        Minor Number                          : 0
        Fabric
            State                             : Completed
            Status                            : Success
            CliqueId                          : 32766
            ClusterUUID                       : 5e9c...
            Health
                Summary                       : Healthy
                Bandwidth                     : Full
                ...

The fields mean what the ``<fabric>`` element of ``nvidia-smi -q -x`` means, so both are
read by the same field reader (:func:`nvtopo.formats._smi_fabric.read_fabric`): a label is
matched to the XML element by lower-casing it and dropping spaces and underscores
(``Route Recovery in progress`` = ``route_recovery_in_progress``). The result is a
:class:`~nvtopo.model.NodeTopology` whose GPUs carry their identity and fabric record but no
paths: enough for ``nvtopo doctor`` and ``imex check``.
"""

from __future__ import annotations

import re

from nvtopo.exceptions import ParseError
from nvtopo.formats._smi_fabric import read_fabric
from nvtopo.model import Fabric, Gpu, NodeTopology

__all__ = ["looks_like_smi_query", "parse_smi_fabric_text"]

_GPU_HEADER = re.compile(r"^GPU ([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*$")
_FIELD = re.compile(r"^(\s*)([^:]+?)\s*:\s*(.*?)\s*$")
_SECTION = re.compile(r"^(\s*)(\S[^:]*?)\s*$")
_ABSENT = {"", "n/a", "[n/a]", "not supported", "[not supported]", "not found"}
_EXPECTED = "`nvidia-smi -q` output"


def _norm(label: str) -> str:
    return re.sub(r"[\s_]+", "", label).lower()


def looks_like_smi_query(text: str) -> bool:
    """Whether ``text`` has the shape of ``nvidia-smi -q`` output."""
    return "NVSMI LOG" in text or any(_GPU_HEADER.match(line) for line in text.splitlines())


def _fields(lines: list[tuple[int, str]]) -> tuple[dict[str, tuple[str, int]], bool]:
    """``section/.../label`` → (value, line) of one GPU block; and whether it has a Fabric."""
    out: dict[str, tuple[str, int]] = {}
    stack: list[tuple[int, str]] = []
    has_fabric = False
    for number, line in lines:
        if not line.strip():
            continue
        field = _FIELD.match(line)
        section = None if field else _SECTION.match(line)
        indent = len((field or section).group(1)) if (field or section) else 0  # type: ignore[union-attr]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if field is not None:
            path = "/".join([s for _, s in stack] + [_norm(field.group(2))])
            out.setdefault(path, (field.group(3), number))
        elif section is not None:
            name = _norm(section.group(2))
            stack.append((indent, name))
            if name == "fabric" and len(stack) == 1:
                has_fabric = True
    return out, has_fabric


def parse_smi_fabric_text(text: str, *, source: str = "<text>") -> NodeTopology:
    """The GPUs and fabric records of an ``nvidia-smi -q`` report.

    Raises
    ------
    ParseError
        Text that is not ``nvidia-smi -q`` output (the line says which command's output is
        expected), a GPU block without a Fabric section, or a value that cannot be read.

    Examples
    --------
    >>> text = '''GPU 00000008:01:00.0
    ...     GPU UUID                              : GPU-1
    ...     Fabric
    ...         State                             : In Progress
    ...         Status                            : N/A
    ... '''
    >>> parse_smi_fabric_text(text).gpus[0].fabric.state
    'in_progress'
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    blocks: list[tuple[str, int, list[tuple[int, str]]]] = []
    driver = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _GPU_HEADER.match(line)
        if header is not None:
            blocks.append((header.group(1), number, []))
        elif blocks:
            blocks[-1][2].append((number, line))
        else:
            top = _FIELD.match(line)
            if top is not None and _norm(top.group(2)) == "driverversion":
                driver = top.group(3)
    if not blocks:
        raise ParseError(
            f'not {_EXPECTED} (no "GPU <PCI bus id>" block); run `nvidia-smi -q` and pass '
            "what it prints",
            source=source,
        )
    gpus = []
    for index, (bus_id, header_line, block) in enumerate(blocks):
        fields, has_fabric = _fields(block)
        if not has_fabric:
            raise ParseError(
                f"GPU {index} ({bus_id}) has no Fabric section; `nvidia-smi -q` of driver "
                "R550 or later prints one",
                source=source,
                line=header_line,
            )

        def reader(
            path: str, fields: dict[str, tuple[str, int]] = fields
        ) -> tuple[str | None, int | None]:
            hit = fields.get("fabric/" + _norm(path))
            if hit is None:
                return None, None
            value, number = hit
            return (None if value.lower() in _ABSENT else value), number

        try:
            fabric: Fabric = read_fabric(reader)
        except ValueError as exc:
            message, at = exc.args
            raise ParseError(f"GPU {index}: {message}", source=source, line=at) from None
        uuid = fields.get("gpuuuid", (None, 0))[0]
        name = fields.get("productname", (None, 0))[0]
        minor_text = fields.get("minornumber", ("", 0))[0]
        gpus.append(
            Gpu(
                index=index,
                uuid=uuid or None,
                name=name or None,
                pci_bus_id=bus_id.upper(),
                minor=int(minor_text) if minor_text.isdigit() else None,
                fabric=fabric,
            )
        )
    uuids = [g.uuid for g in gpus if g.uuid]
    if len(set(uuids)) != len(uuids):
        raise ParseError("two GPU blocks have the same GPU UUID", source=source)
    return NodeTopology(gpus=tuple(gpus), driver_version=driver)
