"""The node's whole topology, carried on its ResourceSlice as one compressed annotation.

A ResourceSlice device holds at most 32 attributes of at most 64 bytes each: room for the
clique, the NVLink island, the NUMA key and the ``set<k>`` groups, not for the GPU×GPU
NVLink counts and PCIe classes that Contract 1 scores. So the first slice of every pool also
carries the node's ``nvtopo.dev/v1`` ``NodeTopology`` document under the annotation
:data:`TOPOLOGY_ANNOTATION`, as gzip then base64 (``gzip+base64:`` prefix): 1.1–2.5 KB for the
catalog machines, far under the 256 KiB the API allows for all annotations of an object.

It lives on the slice rather than on the Node object so that it needs no write access to
Nodes, comes and goes with the pool (a stale pool takes its topology with it), and is read in
the same list call as the slices (:func:`nvtopo.kube.readback.cluster_from_kubernetes`).

Examples
--------
>>> import nvtopo
>>> t = nvtopo.system("dgx-h100")
>>> text = encode_topology(t)
>>> text.startswith("gzip+base64:"), decode_topology(text) == t
(True, True)
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import zlib
from functools import lru_cache
from typing import Any

from nvtopo.dra.limits import DraLimitError
from nvtopo.exceptions import ParseError, TopologyError
from nvtopo.formats._identity import node_from_text
from nvtopo.formats.jsonio import node_to_json
from nvtopo.model import NodeTopology

__all__ = [
    "MAX_ANNOTATIONS_BYTES",
    "TOPOLOGY_ANNOTATION",
    "decode_document",
    "decode_topology",
    "encode_topology",
]

#: Annotation key of the node's topology document (on the first slice of its pool).
TOPOLOGY_ANNOTATION = "topology.nvtopo.dev/node-topology"
#: Bytes the API allows for all annotations of one object, keys and values together.
MAX_ANNOTATIONS_BYTES = 256 * 1024
_PREFIX = "gzip+base64:"


def encode_topology(topology: NodeTopology) -> str:
    """The annotation value for ``topology``: compact JSON, gzip (no timestamp), base64.

    Raises
    ------
    DraLimitError
        The encoded document would not fit in the API's annotation budget.
    """
    raw = json.dumps(node_to_json(topology), separators=(",", ":"), sort_keys=True).encode()
    text = _PREFIX + base64.b64encode(gzip.compress(raw, compresslevel=9, mtime=0)).decode()
    if len(text) + len(TOPOLOGY_ANNOTATION) > MAX_ANNOTATIONS_BYTES:
        raise DraLimitError(
            f"node {topology.name or '<unnamed>'}: the topology annotation takes {len(text)} "
            f"bytes, more than the API limit of {MAX_ANNOTATIONS_BYTES} for annotations"
        )
    return text


@lru_cache(maxsize=4096)
def _document(text: str) -> str:
    # Cached on the annotation text: every republish of a node carries the same text, and
    # decompressing it again is wasted work.
    return _unzip(text)


def _unzip(text: str) -> str:
    if not text.startswith(_PREFIX):
        raise ValueError(f"does not start with {_PREFIX!r}")
    data = base64.b64decode(text[len(_PREFIX) :], validate=True)
    unzip = zlib.decompressobj(wbits=31)  # one gzip member, without gzip's Python header parse
    raw = unzip.decompress(data)
    if not unzip.eof or unzip.unused_data:
        raw = gzip.decompress(data)  # more members, or a fault that gzip names
    return raw.decode()


def _readable(where: str, exc: Exception) -> ParseError:
    return ParseError(f"annotation {TOPOLOGY_ANNOTATION} is not readable: {exc}", source=where)


def decode_document(text: str, *, where: str) -> dict[str, Any]:
    """The JSON document inside an annotation value, or one :class:`ParseError` line."""
    try:
        return _object(json.loads(_document(text)), where)
    except (ValueError, binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise _readable(where, exc) from None


def _object(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ParseError(f"annotation {TOPOLOGY_ANNOTATION} is not a JSON object", source=where)
    return doc


def _from_raw(raw: str) -> NodeTopology:
    """A whole document's topology (``raw`` is the JSON text inside an annotation)."""
    from nvtopo.formats import jsonio

    where = "<annotation>"
    try:
        doc = _object(json.loads(raw), where)
    except ValueError as exc:
        raise _readable(where, exc) from None
    if doc.get("apiVersion") == jsonio.API_VERSION and doc.get("kind") == "NodeTopology":
        # Schema validation costs ~50x the build (12 ms against 0.3 ms for 8 GPUs), and a
        # cluster of distinct nodes reads thousands of documents; the model's own checks
        # still run. Anything the fast path cannot build goes through the validating reader,
        # which names what is wrong.
        try:
            return jsonio.node_from_json(doc, source=where, validate=False)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, TopologyError):
            pass
    return jsonio.node_from_json(doc, source=where)


@lru_cache(maxsize=4096)
def _topology(text: str) -> NodeTopology:
    try:
        raw = _unzip(text)  # not kept: _topology itself is cached on the text
    except (ValueError, binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise _readable("<annotation>", exc) from None
    # Trays differ in little but their GPUs' UUIDs, fabric and platform records and their
    # name: each other document is decoded once, and those filled in per node.
    return node_from_text(raw, _from_raw)


def decode_topology(text: str, *, where: str = "<annotation>") -> NodeTopology:
    """The :class:`NodeTopology` of an annotation value made by :func:`encode_topology`.

    Equal texts give the same object (cached on the text alone), so nodes of one kind share
    one topology, as :class:`nvtopo.place.ClusterState` wants them.

    Raises
    ------
    ParseError
        The value is not a readable ``NodeTopology`` document; the message names ``where``.
    """
    try:
        return _topology(text)
    except ParseError as exc:
        message = str(exc).removeprefix("<annotation>: ")
        raise ParseError(message, source=where) from None
