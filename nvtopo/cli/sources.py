"""The ``--source`` switch: where a topology comes from."""

from __future__ import annotations

import codecs
import sys
from pathlib import Path
from typing import Any

import click

from nvtopo.exceptions import NvtopoError, ParseError
from nvtopo.model import NodeTopology
from nvtopo.model.cluster import Cluster

__all__ = ["SOURCE_HELP", "document_text", "load_source", "read_text", "source_option"]

SOURCE_HELP = (
    "nvml (live, default), system:NAME (catalog), smi-topo:PATH (`nvidia-smi topo -m`), "
    "smi-xml:PATH (`nvidia-smi -q -x`) or file:PATH (nvtopo JSON or YAML); PATH '-' reads stdin"
)


# Several --source options name reports of one node; they reach load_source as one spec,
# joined by a character no command-line argument can hold.
_JOIN = "\0"


def _join_sources(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> str:
    return _JOIN.join(value) if value else "nvml"


#: The ``--source`` option of every subcommand that reads a topology. Given more than once,
#: the reports describe one node (``--source smi-topo:A --source smi-xml:B``: paths from the
#: matrix, fabric and identity from the XML report).
source_option = click.option(
    "--source",
    "-s",
    multiple=True,
    callback=_join_sources,
    help=SOURCE_HELP + "; repeat to read one node from several reports  [default: nvml]",
)


# Byte-order marks and the encodings they announce. Captures saved on Windows carry one:
# PowerShell's `>` writes UTF-16 LE with a BOM, Notepad UTF-8 with a BOM.
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes, where: str) -> str:
    """``data`` as text: UTF-8, or the UTF-8/UTF-16 its byte-order mark names."""
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise NvtopoError(f"{where}: not {encoding.upper()} text (byte {exc.start})") from None


def read_text(spec: str, path: str) -> str:
    """The text at ``path`` ('-' for standard input), or one clear error naming it."""
    if path == "-":
        raw = getattr(sys.stdin, "buffer", None)
        if raw is None:  # a text stream standing in for stdin (tests, embedding)
            return sys.stdin.read().removeprefix("\ufeff")
        return decode_text(raw.read(), "<stdin>")
    if not path:
        raise NvtopoError(f"--source {spec}: a path is needed after the colon")
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NvtopoError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise NvtopoError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise NvtopoError(f"{path}: {exc.strerror}") from None
    return decode_text(data, path)


# What a top-level value that is not an object was.
_FOUND: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def document_text(text: str, where: str) -> str | dict[str, Any]:
    """A ``file:`` document as given: JSON text as is, YAML (what ``-o yaml`` prints) parsed.

    JSON starts with ``{`` (or ``[``, refused later as not an object); anything else is read
    as YAML, so that ``nvtopo dump -o yaml > x.yaml`` reads back through ``file:x.yaml``.
    """
    head = text.lstrip()[:1]
    if head in ("{", "[", ""):
        return text
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        doc = yaml.load(text, Loader=loader)  # a safe loader: plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = None if mark is None else mark.line + 1
        raise ParseError(f"invalid YAML: {exc.problem}", source=where, line=line) from None
    except (yaml.YAMLError, RecursionError):
        raise ParseError("invalid YAML", source=where) from None
    if not isinstance(doc, dict):
        found = _FOUND.get(type(doc), type(doc).__name__)
        raise ParseError(f"expected a JSON or YAML object, found {found}", source=where)
    return doc


def load_source(spec: str) -> NodeTopology | Cluster:
    """Read the topology that ``spec`` names (see :data:`SOURCE_HELP`); several sources
    (from a repeated ``--source``) are reports of one node, merged."""
    if _JOIN in spec:
        from nvtopo.formats.merge import merge_topologies

        parts = []
        for one in spec.split(_JOIN):
            found = load_source(one)
            if isinstance(found, Cluster):
                if len(found.nodes) != 1:
                    raise NvtopoError(f"--source {one}: a cluster; repeat --source for one node")
                found = found.nodes[0].topology
            parts.append((one.partition(":")[2] or one, found))
        return merge_topologies(parts)
    kind, _, arg = spec.partition(":")
    if kind == "nvml":
        from nvtopo.discovery.nvml import discover

        return discover()
    if kind == "system":
        from nvtopo.catalog import load_system

        return load_system(arg)
    if kind == "smi-topo":
        from nvtopo.formats.captures import refuse_other_capture
        from nvtopo.formats.smi_topo import parse_topo_matrix

        text, where = read_text(spec, arg), arg if arg != "-" else "<stdin>"
        refuse_other_capture(text, expected="nvidia-smi topo -m", source=where)
        return parse_topo_matrix(text, source=where)
    if kind == "smi-xml":
        from nvtopo.formats.captures import refuse_other_capture
        from nvtopo.formats.smi_xml import parse_smi_xml

        text, where = read_text(spec, arg), arg if arg != "-" else "<stdin>"
        refuse_other_capture(text, expected="nvidia-smi -q -x", source=where)
        return parse_smi_xml(text, source=where)
    if kind == "file":
        from nvtopo.formats.jsonio import cluster_from_json, load_document, node_from_json

        where = arg if arg != "-" else "<stdin>"
        doc = load_document(document_text(read_text(spec, arg), where), source=where)
        if doc["kind"] == "Cluster":
            return cluster_from_json(doc, source=where)
        return node_from_json(doc, source=where)
    raise NvtopoError(f"--source {spec!r}: unknown source; use {SOURCE_HELP}")
