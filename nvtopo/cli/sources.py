"""The ``--source`` switch: where a topology comes from."""

from __future__ import annotations

import codecs
import os
import sys
from pathlib import Path

import click

from nvtopo.exceptions import NvtopoError
from nvtopo.model import NodeTopology
from nvtopo.model.cluster import Cluster

__all__ = ["SOURCE_HELP", "load_source", "read_text", "source_option"]

SOURCE_HELP = (
    "nvml (live, default), system:NAME (catalog), smi-topo:PATH (`nvidia-smi topo -m`), "
    "smi-xml:PATH (`nvidia-smi -q -x`), file:PATH (nvtopo JSON; PATH '-' reads stdin) or "
    "kube[:KUBECONFIG] (the cluster read back from the apiserver: the ResourceSlices of "
    "$NVTOPO_DRIVER, default gpu.nvtopo.dev, and the ResourceClaims that hold GPUs)"
)


#: The ``--source`` option of every subcommand that reads a topology.
source_option = click.option("--source", "-s", default="nvml", show_default=True, help=SOURCE_HELP)


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


def _from_kubernetes(kubeconfig: str | None) -> Cluster:
    """The cluster as the apiserver holds it, through the CLI's one kubeconfig loader."""
    from nvtopo.cli.kube import api_client
    from nvtopo.kube.readback import cluster_from_kubernetes

    driver = os.environ.get("NVTOPO_DRIVER") or "gpu.nvtopo.dev"
    client = api_client(kubeconfig)
    try:
        cluster = cluster_from_kubernetes(client, driver=driver, name="kube")
    finally:
        client.close()
    if not cluster.nodes:
        host = client.configuration.host
        raise NvtopoError(f"--source kube: {host} has no ResourceSlices of {driver}")
    return cluster


def load_source(spec: str) -> NodeTopology | Cluster:
    """Read the topology that ``spec`` names (see :data:`SOURCE_HELP`)."""
    kind, _, arg = spec.partition(":")
    if kind == "nvml":
        from nvtopo.discovery.nvml import discover

        return discover()
    if kind == "system":
        from nvtopo.catalog import load_system

        return load_system(arg)
    if kind == "smi-topo":
        from nvtopo.formats.smi_topo import parse_topo_matrix

        return parse_topo_matrix(read_text(spec, arg), source=arg if arg != "-" else "<stdin>")
    if kind == "smi-xml":
        from nvtopo.formats.smi_xml import parse_smi_xml

        return parse_smi_xml(read_text(spec, arg), source=arg if arg != "-" else "<stdin>")
    if kind == "file":
        from nvtopo.formats.jsonio import cluster_from_json, load_document, node_from_json

        where = arg if arg != "-" else "<stdin>"
        doc = load_document(read_text(spec, arg), source=where)
        if doc["kind"] == "Cluster":
            return cluster_from_json(doc, source=where)
        return node_from_json(doc, source=where)
    if kind == "kube":
        return _from_kubernetes(arg or None)
    raise NvtopoError(f"--source {spec!r}: unknown source; use {SOURCE_HELP}")
