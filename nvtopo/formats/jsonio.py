"""The ``nvtopo.dev/v1`` JSON interchange format (kinds ``NodeTopology`` and ``Cluster``).

Every model field round-trips. Documents are checked against the JSON Schema shipped in
``nvtopo/formats/schema/nvtopo-v1.schema.json`` before they are read, so a malformed file gets one
line naming the file and the JSON path of the first problem.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

from nvtopo.exceptions import ParseError, TopologyError
from nvtopo.formats._decode import node_from_body
from nvtopo.formats._parts import shared_part
from nvtopo.model import Gpu, NodeTopology
from nvtopo.model.cluster import Cluster, ClusterNode
from nvtopo.model.limits import LIMITS, MAX_CLUSTER_NODES, MAX_INPUT_BYTES

__all__ = [
    "API_VERSION",
    "cluster_from_json",
    "cluster_to_json",
    "dumps",
    "load_document",
    "node_from_json",
    "node_to_json",
    "schema",
]

API_VERSION = "nvtopo.dev/v1"


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of the format (draft 2020-12)."""
    text = resources.files("nvtopo.formats").joinpath("schema/nvtopo-v1.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


@cache
def _validator() -> Any:
    import jsonschema

    # JSON Schema counts 1.0 and 1e30 as integers; nvtopo's integers are written as such,
    # so a number with a fraction or an exponent is refused rather than turned into a float
    # that no apiserver field keeps as given.
    checker = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    strict = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=checker)
    return strict(schema())


def _parse(data: str | bytes | dict[str, Any], source: str) -> dict[str, Any]:
    if isinstance(data, dict):
        return data
    if len(data) > MAX_INPUT_BYTES:
        raise ParseError(
            f"{len(data)} bytes; an nvtopo document is at most {MAX_INPUT_BYTES} bytes",
            source=source,
        )
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"invalid JSON at column {exc.colno}: {exc.msg}", source=source, line=exc.lineno
        ) from None
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 text ({exc.reason})", source=source) from None
    except RecursionError:
        raise ParseError("JSON nested too deeply to be an nvtopo document", source=source) from None
    if not isinstance(doc, dict):
        raise ParseError(f"expected a JSON object, found {_JSON_TYPES[type(doc)]}", source=source)
    return doc


# What a JSON value that is not an object was, in JSON's own words.
_JSON_TYPES: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_SHORT_NODE_KEYS = frozenset(
    {"name", "system", "topologyRef", "clique", "freeGpus", "inComputeDomain"}
)
_CLIQUE_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\.[0-9]{1,10}$"
)


def _short_node_ok(node: Any) -> bool:
    """True for a cluster node entry that names its topology (``system``/``topologyRef``) and
    that the schema surely accepts. The JSON Schema check costs about 0.3 ms a node; a
    cluster of a hundred thousand such entries is checked here at a small part of that, and
    any entry this does not vouch for goes to the schema, which names the problem."""
    if type(node) is not dict or not node.keys() <= _SHORT_NODE_KEYS:
        return False
    name = node.get("name")
    if type(name) is not str or not 1 <= len(name) <= 253:
        return False
    if ("system" in node) == ("topologyRef" in node):
        return False
    ref = node.get("system", node.get("topologyRef"))
    if type(ref) is not str:
        return False
    clique = node.get("clique")
    if clique is not None and (type(clique) is not str or not _CLIQUE_RE.match(clique)):
        return False
    if "clique" in node and clique is None:
        return False
    if "inComputeDomain" in node and type(node["inComputeDomain"]) is not bool:
        return False
    if "freeGpus" in node:
        free = node["freeGpus"]
        highest = LIMITS["index"].maximum
        if type(free) is not list or len(set(free)) != len(free):
            return False
        if any(type(g) is not int or not 0 <= g <= highest for g in free):
            return False
    return True


def _schema_view(doc: dict[str, Any]) -> tuple[dict[str, Any], list[int] | None]:
    """``doc`` as the schema needs to see it: cluster node entries vouched for by
    :func:`_short_node_ok` are left out (one stays, for ``minItems``), with the index in
    ``doc`` of each node left in (None when nothing is left out)."""
    nodes = doc.get("nodes")
    if doc.get("kind") != "Cluster" or type(nodes) is not list or len(nodes) < 64:
        return doc, None
    kept = [i for i, n in enumerate(nodes) if not _short_node_ok(n)] or [0]
    if len(kept) == len(nodes):
        return doc, None
    return {**doc, "nodes": [nodes[i] for i in kept]}, kept


def load_document(data: str | bytes | dict[str, Any], *, source: str = "<json>") -> dict[str, Any]:
    """Parse and schema-check a document; return it as a dict."""
    doc = _parse(data, source)
    nodes = doc.get("nodes")
    if isinstance(nodes, list) and len(nodes) > MAX_CLUSTER_NODES:
        # Refused before the schema check, whose cost grows with the document.
        raise ParseError(
            f"$.nodes: {len(nodes)} nodes; a cluster has at most {MAX_CLUSTER_NODES}",
            source=source,
        )
    from jsonschema.exceptions import best_match

    view, kept = _schema_view(doc)
    err = best_match(_validator().iter_errors(view))
    if err is not None:
        path = list(err.absolute_path)
        if kept is not None and len(path) > 1 and path[0] == "nodes":
            path[1] = kept[path[1]]  # the index in the document, not in the view
        message = err.message
        if err.validator == "pattern" and err.schema is schema()["$defs"]["clique"]:
            # The UUID regular expression says nothing to a reader; the expected shape does.
            message = f"{err.instance!r} is not a clique id '<cluster UUID>.<clique id>'"
        raise ParseError(f"{_json_path(path)}: {message}", source=source)
    return doc


# -- NodeTopology ---------------------------------------------------------------------------


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != []}


def _gpu_to_json(g: Gpu) -> dict[str, Any]:
    return _drop_none(
        {
            "index": g.index,
            "uuid": g.uuid,
            "name": g.name,
            "brand": g.brand,
            "architecture": g.architecture,
            "computeCapability": g.compute_capability,
            "memoryMiB": g.memory_mib,
            "pciBusId": g.pci_bus_id,
            "pcieRoot": g.pcie_root,
            "numaNode": g.numa_node,
            "numaAffinity": list(g.numa_affinity),
            "cpuAffinity": g.cpu_affinity,
            "migMode": g.mig_mode,
            "nvlinkGeneration": g.nvlink_generation,
            "minor": g.minor,
            "gpuNumaId": g.gpu_numa_id,
            "nvlinks": [
                _drop_none(
                    {
                        "link": n.link,
                        "state": n.state,
                        "version": n.version,
                        "remoteType": n.remote_type,
                        "remotePciBusId": n.remote_pci_bus_id,
                        "remoteGpu": n.remote_gpu,
                    }
                )
                for n in g.nvlinks
            ],
            "fabric": None
            if g.fabric is None
            else {
                "clusterUuid": g.fabric.cluster_uuid,
                "cliqueId": g.fabric.clique_id,
                "state": g.fabric.state,
                "status": g.fabric.status,
                "health": g.fabric.health,
                "healthMask": g.fabric.health_mask,
            },
            "platform": None
            if g.platform is None
            else _drop_none(
                {
                    "chassisSerial": g.platform.chassis_serial,
                    "slot": g.platform.slot,
                    "tray": g.platform.tray,
                    "hostId": g.platform.host_id,
                    "moduleId": g.platform.module_id,
                }
            ),
        }
    )


def _node_body(t: NodeTopology) -> dict[str, Any]:
    return _drop_none(
        {
            "name": t.name,
            "system": t.system,
            "driverVersion": t.driver_version,
            "cudaVersion": t.cuda_version,
            "numaCpus": {str(k): v for k, v in sorted(t.numa_cpus.items())} or None,
            "gpus": [_gpu_to_json(g) for g in t.gpus],
            "pairs": [
                _drop_none(
                    {
                        "a": p.a,
                        "b": p.b,
                        "nvlinks": p.nvlinks,
                        "pcie": p.pcie,
                        "viaNvswitch": p.via_nvswitch or None,
                        "nvlinksDown": p.nvlinks_down or None,
                    }
                )
                for p in t.pairs
            ],
            "nvswitches": [
                _drop_none(
                    {
                        "id": s.id,
                        "pciBusId": s.pci_bus_id,
                        "gpuLinks": [list(x) for x in s.gpu_links],
                    }
                )
                for s in t.nvswitches
            ],
            "nics": [
                _drop_none(
                    {
                        "name": n.name,
                        "device": n.device,
                        "pciBusId": n.pci_bus_id,
                        "numaNode": n.numa_node,
                        "gpuPaths": list(n.gpu_paths),
                        "nicPaths": list(n.nic_paths),
                    }
                )
                for n in t.nics
            ],
        }
    )


def node_to_json(t: NodeTopology) -> dict[str, Any]:
    """The ``NodeTopology`` document of ``t``."""
    return {"apiVersion": API_VERSION, "kind": "NodeTopology", **_node_body(t)}


def node_from_json(
    data: str | bytes | dict[str, Any], *, source: str = "<json>", validate: bool = True
) -> NodeTopology:
    """Read a ``NodeTopology`` document.

    ``validate=False`` skips the JSON Schema check of the whole document for documents
    nvtopo wrote itself; a document that is not well formed then raises ``KeyError``,
    ``TypeError`` or ``ValueError``. Its NVLink records, fabric records, pairs, NVSwitches
    and NICs are then decoded once per distinct content and shared between documents, each
    checked against its schema definition when first seen (:mod:`nvtopo.formats._parts`).
    """
    if not validate and isinstance(data, dict):
        return node_from_body(data, source, shared_part)
    doc = load_document(data, source=source)
    if doc["kind"] != "NodeTopology":
        raise ParseError(f"kind is {doc['kind']}, expected NodeTopology", source=source)
    return node_from_body(doc, source)


# -- Cluster --------------------------------------------------------------------------------


def cluster_to_json(c: Cluster) -> dict[str, Any]:
    """The ``Cluster`` document of ``c``; topologies shared by several nodes are written once."""
    refs: dict[int, str] = {}
    topologies: dict[str, Any] = {}
    counts: dict[int, int] = {}
    for n in c.nodes:
        counts[id(n.topology)] = counts.get(id(n.topology), 0) + 1
    nodes = []
    for n in c.nodes:
        entry: dict[str, Any] = {"name": n.name}
        key = id(n.topology)
        if counts[key] > 1:
            if key not in refs:
                refs[key] = f"t{len(refs)}"
                topologies[refs[key]] = _node_body(n.topology)
            entry["topologyRef"] = refs[key]
        else:
            entry["topology"] = _node_body(n.topology)
        if n.clique is not None:
            entry["clique"] = n.clique
        if n.free_gpus is not None:
            entry["freeGpus"] = list(n.free_gpus)
        if n.in_compute_domain:
            entry["inComputeDomain"] = True
        nodes.append(entry)
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": "Cluster"}
    if c.name is not None:
        doc["name"] = c.name
    if topologies:
        doc["topologies"] = topologies
    doc["nodes"] = nodes
    return doc


def cluster_from_json(data: str | bytes | dict[str, Any], *, source: str = "<json>") -> Cluster:
    """Read a ``Cluster`` document (a ``NodeTopology`` document reads as a one-node cluster)."""
    doc = load_document(data, source=source)
    if doc["kind"] == "NodeTopology":
        t = node_from_body(doc, source)
        return Cluster((ClusterNode(name=t.name or "node0", topology=t),), name=t.name)
    shared = {k: node_from_body(v, source) for k, v in doc.get("topologies", {}).items()}
    catalog: dict[str, NodeTopology] = {}
    nodes = []
    for i, n in enumerate(doc["nodes"]):
        where = f"$.nodes[{i}] ({n['name']})"
        if "topology" in n:
            topo = node_from_body(n["topology"], source)
        elif "topologyRef" in n:
            if n["topologyRef"] not in shared:
                raise ParseError(
                    f"{where}: topologyRef {n['topologyRef']!r} is not in $.topologies",
                    source=source,
                )
            topo = shared[n["topologyRef"]]
        else:
            name = n["system"]
            if name not in catalog:
                from nvtopo.catalog import system

                try:
                    catalog[name] = system(name)
                except TopologyError as exc:
                    raise ParseError(f"{where}: {exc}", source=source) from None
                except KeyError as exc:
                    raise ParseError(f"{where}: {exc}", source=source) from None
            topo = catalog[name]
        free = n.get("freeGpus")
        try:
            nodes.append(
                ClusterNode(
                    name=n["name"],
                    topology=topo,
                    clique=n.get("clique"),
                    free_gpus=None if free is None else tuple(free),
                    in_compute_domain=n.get("inComputeDomain", False),
                )
            )
        except TopologyError as exc:
            raise ParseError(f"{where}: {exc}", source=source) from None
    try:
        return Cluster(tuple(nodes), name=doc.get("name"))
    except TopologyError as exc:
        raise ParseError(str(exc), source=source) from None


def dumps(doc: dict[str, Any]) -> str:
    """Pretty JSON text with a trailing newline."""
    return json.dumps(doc, indent=2) + "\n"
