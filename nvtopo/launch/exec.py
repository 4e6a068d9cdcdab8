"""``nvtopo launch exec``: inside a pod of a planned job, set this node's environment and
become the command.

The plan (:func:`nvtopo.launch.outputs.plan_to_json`, mounted from a ConfigMap) lists the
nodes in node-rank order; an indexed Job's pod finds its own entry through
``JOB_COMPLETION_INDEX``. The process then *replaces itself* with the command
(``execvpe``), so the command keeps the pod's PID, receives its signals directly and its
exit status is the container's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from nvtopo.exceptions import NvtopoError
from nvtopo.launch.outputs import PLAN_KIND

__all__ = ["INDEX_VARIABLE", "NODE_VARIABLE", "exec_command", "load_plan", "node_entry"]

#: Set by Kubernetes in each pod of an indexed Job.
INDEX_VARIABLE = "JOB_COMPLETION_INDEX"
#: The node a pod runs on (downward API ``spec.nodeName``), set by planned Jobs.
NODE_VARIABLE = "NVTOPO_NODE_NAME"


def load_plan(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The launch plan document at ``path``, or one clear error."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise NvtopoError(f"{path}: no such launch plan file") from None
    except (OSError, ValueError) as exc:
        raise NvtopoError(f"{path}: not a launch plan ({exc})") from None
    if (
        not isinstance(doc, dict)
        or doc.get("kind") != PLAN_KIND
        or not isinstance(doc.get("nodes"), list)
    ):
        raise NvtopoError(f"{path}: not a launch plan (expected kind {PLAN_KIND} with nodes)")
    return doc


def node_entry(
    doc: Mapping[str, Any], *, index: int | None = None, node: str | None = None
) -> dict[str, Any]:
    """The entry of node rank ``index`` (or named ``node``).

    By default the node named by ``$NVTOPO_NODE_NAME`` when the plan has it, else node rank
    ``$JOB_COMPLETION_INDEX``. A plan made for a Kubernetes Job (``nodeRankFrom: index``)
    takes its node facts from the node the pod landed on and its node rank from the pod's
    index, since the rendezvous address is the pod of index 0 and a Job cannot pin index i
    to node i.
    """
    nodes = doc["nodes"]
    if node is None and index is None:
        landed = os.environ.get(NODE_VARIABLE)
        if landed and any(entry.get("name") == landed for entry in nodes):
            node = landed
    if node is not None and index is None and doc.get("nodeRankFrom") == "index":
        text = os.environ.get(INDEX_VARIABLE, "")
        entry = _by_name(nodes, node)
        if text.isdigit():
            env = dict(entry.get("env", {}))
            for key in ("PET_NODE_RANK", "NODE_RANK"):
                env[key] = text
            entry["env"] = env
            entry["nodeRank"] = int(text)
        return entry
    if node is not None:
        return _by_name(nodes, node)
    if index is None:
        given = os.environ.get(INDEX_VARIABLE)
        if given is None:
            raise NvtopoError(
                f"{INDEX_VARIABLE} is not set: give --node-rank or --node outside an indexed Job"
            )
        if not given.isdigit():
            raise NvtopoError(f"{INDEX_VARIABLE}={given!r} is not a node rank")
        index = int(given)
    if not 0 <= index < len(nodes):
        raise NvtopoError(f"node rank {index} is not in the launch plan ({len(nodes)} nodes)")
    return dict(nodes[index])


def _by_name(nodes: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    for entry in nodes:
        if entry.get("name") == name:
            return dict(entry)
    raise NvtopoError(f"node {name!r} is not in the launch plan")


def exec_command(entry: Mapping[str, Any], command: Sequence[str]) -> NoReturn:
    """Replace this process with ``command``, with ``entry``'s environment added."""
    if not command:
        raise NvtopoError("nothing to run: give the command after --")
    env = dict(os.environ)
    for key, value in dict(entry.get("env", {})).items():
        env[str(key)] = str(value)
    try:
        os.execvpe(command[0], list(command), env)
    except FileNotFoundError:
        raise NvtopoError(f"{command[0]}: command not found") from None
    except PermissionError:
        raise NvtopoError(f"{command[0]}: permission denied") from None
