"""Argument checks of the public Python API: wrong types become typed nvtopo errors.

Every public entry point promises to raise only :class:`~nvtopo.exceptions.NvtopoError`
subclasses for bad input; an ``AttributeError`` from deep inside (``None`` where a topology
belongs, a node where a cluster belongs) breaks that promise and says nothing useful. The
checks live here, one small function per argument kind, called first thing by
``NodeTopology.from_nvidia_smi``, :func:`nvtopo.select_gpus` and :func:`nvtopo.place`.

The model classes are imported inside the functions: this module sits beside the layers
(it is imported by the model itself) and must not pull anything in at import time.
"""

from __future__ import annotations

import codecs
from typing import Any, TypeVar

from nvtopo.exceptions import ParseError, SelectionError

__all__ = [
    "capture_text",
    "gpus_request",
    "require_cluster",
    "require_document",
    "require_topology",
]

R = TypeVar("R")

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def capture_text(data: Any, *, source: str, command: str) -> str:
    """``data`` as text: a ``str`` as is, ``bytes`` (what ``subprocess.check_output``
    returns) decoded as UTF-8 or as the byte-order mark says.

    Raises
    ------
    ParseError
        Neither text nor bytes, or bytes that are not text; names ``command``'s output.
    """
    if isinstance(data, str):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"not {encoding.upper()} text (byte {exc.start})", source=source
            ) from None
    raise ParseError(
        f"expected the output of `{command}` as str or bytes, got {type(data).__name__}",
        source=source,
    )


def require_document(data: Any, *, source: str) -> None:
    """Raise :class:`ParseError` unless ``data`` is JSON text, its bytes or a parsed dict."""
    if not isinstance(data, (str, bytes, bytearray, dict)):
        raise ParseError(
            f"expected an nvtopo JSON document (str, bytes or dict), got {type(data).__name__}",
            source=source,
        )


_MODEL: tuple[type, type] | None = None


def _model() -> tuple[type, type]:
    """``(NodeTopology, Cluster)``, imported on first use and kept: an import statement
    costs about a microsecond per call, more than the selection it guards."""
    global _MODEL
    if _MODEL is None:
        from nvtopo.model.cluster import Cluster
        from nvtopo.model.topology import NodeTopology

        _MODEL = (NodeTopology, Cluster)
    return _MODEL


def require_topology(topology: Any, *, call: str) -> None:
    """Raise :class:`SelectionError` unless ``topology`` is a ``NodeTopology``."""
    node_topology, cluster = _model()
    if isinstance(topology, node_topology):
        return
    hint = (
        "; for a cluster use nvtopo.place(cluster, gpus)" if isinstance(topology, cluster) else ""
    )
    raise SelectionError(f"{call} needs a NodeTopology, got {type(topology).__name__}{hint}")


def require_cluster(cluster: Any, *, call: str) -> None:
    """Raise :class:`SelectionError` unless ``cluster`` is a ``Cluster``."""
    node_topology, cluster_type = _model()
    if isinstance(cluster, cluster_type):
        return
    hint = (
        "; for one node use nvtopo.select_gpus(topology, k)"
        if isinstance(cluster, node_topology)
        else ""
    )
    raise SelectionError(f"{call} needs a Cluster, got {type(cluster).__name__}{hint}")


def gpus_request(request: R | int | None, gpus: int | None) -> tuple[R | None, int | None]:
    """``place(cluster, 16, nodes=4)``: a GPU count where the request goes is ``gpus=``.

    Returns the ``(request, gpus)`` to use; anything else is passed on unchanged.
    """
    if isinstance(request, bool):  # an int to Python, never a GPU count
        raise SelectionError(f"expected a GPU count or a PlacementRequest, got {request!r}")
    if isinstance(request, int):
        if gpus is not None:
            raise SelectionError(f"GPU count given twice: {request} and gpus={gpus}")
        return None, request
    return request, gpus
