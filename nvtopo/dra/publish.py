"""Publishing ResourceSlices: make the API server hold exactly the desired pools.

:func:`publish` reconciles one node's pool, or many, with the API server:

1. list the driver's slices (``fieldSelector=spec.driver=<driver>``, plus
   ``spec.nodeName=<node>`` for one node; both fields are selectable on ResourceSlices);
2. plan each pool (:mod:`nvtopo.dra._plan`): a pool that already matches is not written at
   all; a pool that differs in any way is rewritten whole at generation ``max + 1``, missing
   slices created and present ones replaced, then its slices that are no longer wanted deleted;
   with a whole cluster, the pools of nodes that left it are deleted;
3. write, several pools at a time. A replace carries the ``resourceVersion`` that was read,
   so a concurrent writer turns it into a 409: the pool is then read again and planned again
   (a few rounds at most). 429 and 5xx answers are retried with backoff
   (:mod:`nvtopo.kube.retry`). A failure that stays is one line naming the slice and the status.

Each slice carries the labels ``nvtopo.dev/driver``, ``nvtopo.dev/node`` and
``app.kubernetes.io/managed-by=nvtopo``; the first slice of each pool carries the node's
topology document (:mod:`nvtopo.dra.annotation`) so that
:func:`nvtopo.kube.cluster_from_kubernetes` can rebuild every GPU pair.

A run that is killed half way leaves pools with mixed generations or extra slices; the next
run sees them as changed and converges, deleting what is stale.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from nvtopo.dra._plan import (
    LABEL_DRIVER,
    LABEL_MANAGED_BY,
    LABEL_NODE,
    MANAGER,
    Manifest,
    PoolPlan,
    SliceChange,
    label_value,
    plan_pool,
    plan_pools,
)
from nvtopo.dra.annotation import TOPOLOGY_ANNOTATION, encode_topology
from nvtopo.dra.attributes import DEFAULT_SET_SIZES
from nvtopo.dra.limits import MAX_DEVICES_PER_SLICE
from nvtopo.dra.slices import DEFAULT_DRIVER, cluster_resource_slices, resource_slices
from nvtopo.exceptions import NvtopoError
from nvtopo.kube.client import RESOURCE_SLICES, RawApi
from nvtopo.kube.retry import KubeApiError, RetryPolicy, api_message
from nvtopo.model import NodeTopology
from nvtopo.model.cluster import Cluster

__all__ = [
    "LABEL_DRIVER",
    "LABEL_MANAGED_BY",
    "LABEL_NODE",
    "PublishError",
    "PublishInterrupted",
    "PublishResult",
    "SliceChange",
    "cluster_slices",
    "node_owner",
    "node_slices",
    "publish",
]


class PublishError(NvtopoError):
    """The desired slices cannot be published as given (wrong driver, pool, node)."""


class PublishInterrupted(NvtopoError):
    """Publishing stopped because the caller asked it to (SIGTERM in the node agent)."""


@dataclass(frozen=True)
class PublishResult:
    """What one :func:`publish` call did (or, with ``dry_run``, would do).

    ``created``/``updated``/``deleted`` count slices written; ``unchanged`` counts slices of
    pools that needed no write. ``requests`` counts every HTTP request made (reads and
    retries included), ``writes`` the POST/PUT/DELETE among them: 0 when nothing changed.
    """

    driver: str
    pools: int
    pools_changed: int
    created: int
    updated: int
    deleted: int
    unchanged: int
    requests: int
    writes: int
    retries: int
    conflicts: int
    dry_run: bool
    elapsed_s: float
    changes: tuple[SliceChange, ...] = ()

    @property
    def changed(self) -> bool:
        """True when any slice was (or would be) created, updated or deleted."""
        return bool(self.created or self.updated or self.deleted)

    def summary(self) -> str:
        """One line: ``3 pools: 1 created, 2 updated, 0 deleted, 5 unchanged (9 requests)``."""
        verb = "would be " if self.dry_run else ""
        pools = f"{self.pools} pool{'s' if self.pools != 1 else ''}"
        text = (
            f"{pools} ({self.pools_changed} changed): {self.created} {verb}created, "
            f"{self.updated} {verb}updated, {self.deleted} {verb}deleted, "
            f"{self.unchanged} unchanged; {self.requests} API requests, {self.writes} writes"
        )
        if self.retries or self.conflicts:
            text += f", {self.retries} retries, {self.conflicts} conflicts"
        return text + f", {self.elapsed_s:.2f} s"

    def to_json(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "dryRun": self.dry_run,
            "pools": self.pools,
            "poolsChanged": self.pools_changed,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "requests": self.requests,
            "writes": self.writes,
            "retries": self.retries,
            "conflicts": self.conflicts,
            "elapsedSeconds": round(self.elapsed_s, 4),
            "changes": [c.to_json() for c in self.changes],
        }


# -- desired state ------------------------------------------------------------------------------


def node_owner(name: str, uid: str) -> dict[str, Any]:
    """An owner reference to the Node ``name``: the garbage collector then deletes the node's
    slices with the Node, as it does for slices of a kubelet DRA plugin."""
    return {"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid, "controller": True}


def _annotate(slices: list[Manifest], text: str, owner: dict[str, Any] | None) -> list[Manifest]:
    for i, s in enumerate(slices):
        meta = s["metadata"]
        if i == 0:
            meta["annotations"] = {TOPOLOGY_ANNOTATION: text}
        if owner is not None:
            meta["ownerReferences"] = [dict(owner)]
    return slices


def node_slices(
    topology: NodeTopology,
    *,
    node: str,
    driver: str = DEFAULT_DRIVER,
    clique: str | None = None,
    owner: dict[str, Any] | None = None,
    max_devices_per_slice: int = MAX_DEVICES_PER_SLICE,
    set_sizes: Iterable[int] = DEFAULT_SET_SIZES,
) -> list[Manifest]:
    """The slices :func:`publish` writes for one node: :func:`~nvtopo.dra.resource_slices`
    plus the topology annotation on the first slice and, when given, an owner reference.

    Examples
    --------
    >>> import nvtopo
    >>> [s] = node_slices(nvtopo.system("dgx-h100"), node="n1")
    >>> list(s["metadata"]["annotations"])
    ['topology.nvtopo.dev/node-topology']
    """
    slices = resource_slices(
        topology,
        node=node,
        driver=driver,
        max_devices_per_slice=max_devices_per_slice,
        set_sizes=set_sizes,
        clique=clique,
    )
    return _annotate(slices, encode_topology(topology), owner)


def cluster_slices(
    cluster: Cluster,
    *,
    driver: str = DEFAULT_DRIVER,
    max_devices_per_slice: int = MAX_DEVICES_PER_SLICE,
    set_sizes: Iterable[int] = DEFAULT_SET_SIZES,
) -> dict[str, list[Manifest]]:
    """Node name → the slices :func:`publish` writes for it, for every node of ``cluster``.

    Examples
    --------
    >>> import nvtopo
    >>> pools = cluster_slices(nvtopo.cluster("gb200-nvl72x2"))
    >>> len(pools), [len(v) for v in pools.values()][:3]
    (36, [1, 1, 1])
    """
    flat = cluster_resource_slices(
        cluster, driver=driver, max_devices_per_slice=max_devices_per_slice, set_sizes=set_sizes
    )
    by_node: dict[str, list[Manifest]] = {}
    for s in flat:
        by_node.setdefault(s["spec"]["pool"]["name"], []).append(s)
    texts: dict[int, str] = {}  # nodes of one kind share the topology object and its text
    for n in cluster.nodes:
        text = texts.get(id(n.topology))
        if text is None:
            text = texts[id(n.topology)] = encode_topology(n.topology)
        _annotate(by_node[n.name], text, None)
    return by_node


def _labelled(manifest: Manifest, driver: str, pool: str) -> Manifest:
    meta = dict(manifest.get("metadata") or {})
    meta["labels"] = {
        **(meta.get("labels") or {}),
        LABEL_DRIVER: label_value(driver),
        LABEL_NODE: label_value(pool),
        LABEL_MANAGED_BY: MANAGER,
    }
    return {**manifest, "metadata": meta}


def _desired(
    what: Mapping[str, Sequence[Manifest]] | NodeTopology | Cluster,
    node: str | None,
    driver: str,
) -> dict[str, list[Manifest]]:
    if isinstance(what, Cluster):
        if node is not None:
            what = Cluster((what.node(node),), name=what.name)
        pools: Mapping[str, Sequence[Manifest]] = cluster_slices(what, driver=driver)
    elif isinstance(what, NodeTopology):
        name = node or what.name
        if not name:
            raise PublishError("publish: node= is needed, the topology does not name its node")
        pools = {name: node_slices(what, node=name, driver=driver)}
    elif isinstance(what, Mapping):
        if node is not None and node not in what:
            raise PublishError(f"publish: node {node!r} has no slices in the mapping given")
        pools = what if node is None else {node: what[node]}
    else:
        raise PublishError(
            f"publish: expected a Cluster, a NodeTopology or a mapping of node name to slices, "
            f"got {type(what).__name__}"
        )
    out: dict[str, list[Manifest]] = {}
    for pool, slices in pools.items():
        for s in slices:
            spec = s.get("spec") or {}
            name = (s.get("metadata") or {}).get("name", "<unnamed>")
            if spec.get("driver") != driver:
                raise PublishError(
                    f"ResourceSlice {name}: driver {spec.get('driver')!r} is not {driver!r}"
                )
            if (spec.get("pool") or {}).get("name") != pool:
                raise PublishError(f"ResourceSlice {name}: pool name is not the node {pool!r}")
        out[pool] = [_labelled(s, driver, pool) for s in slices]
    return out


# -- writing ----------------------------------------------------------------------------------


class _Conflict(Exception):
    """The pool changed under us (409, or 404 on replace): read it again and plan again."""


class _Publisher:
    def __init__(self, api: RawApi, driver: str, stop: threading.Event | None) -> None:
        self.api = api
        self.driver = driver
        self.stop = stop
        self.lock = threading.Lock()
        self.counts = {"create": 0, "update": 0, "delete": 0}
        self.changes: list[SliceChange] = []
        self.conflicts = 0
        self.failures: list[NvtopoError] = []

    def existing(self, node: str | None) -> list[Manifest]:
        from kubernetes.client.exceptions import ApiException

        selector = f"spec.driver={self.driver}"
        if node is not None:
            selector += f",spec.nodeName={node}"
        what = f"list ResourceSlices of {self.driver}" + (f" on node {node}" if node else "")
        try:
            return list(self.api.list(RESOURCE_SLICES, what=what, field_selector=selector))
        except ApiException as exc:
            # 401/403/404 and the like: not worth a retry, but still one line, not a trace.
            raise KubeApiError(f"{what}: {api_message(exc)}", status=exc.status) from None

    def _write(self, change: SliceChange, method: str, body: Manifest | None) -> None:
        from kubernetes.client.exceptions import ApiException

        path = RESOURCE_SLICES if method == "POST" else RawApi.item(RESOURCE_SLICES, change.slice)
        what = f"{change.action} ResourceSlice {change.slice}"
        try:
            self.api.request(method, path, what=what, body=body)
        except ApiException as exc:
            if exc.status == 404 and method == "DELETE":
                pass  # gone already: that is what was wanted
            elif exc.status == 409 or (exc.status == 404 and method == "PUT"):
                raise _Conflict from None
            else:
                raise KubeApiError(f"{what}: {api_message(exc)}", status=exc.status) from None
        with self.lock:
            self.counts[change.action] += 1
            self.changes.append(change)

    def apply(self, plan: PoolPlan) -> None:
        by_name = {c.slice: c for c in plan.changes}
        for body in plan.creates:
            self._write(by_name[body["metadata"]["name"]], "POST", body)
        for body in plan.updates:
            self._write(by_name[body["metadata"]["name"]], "PUT", body)
        for name, rv in plan.deletes:
            options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
            if rv:
                # Delete only what was read: a slice rewritten meanwhile is looked at again.
                options["preconditions"] = {"resourceVersion": rv}
            self._write(by_name[name], "DELETE", options)

    def converge(self, plan: PoolPlan, desired: Sequence[Manifest], rounds: int) -> PoolPlan:
        for _ in range(rounds):
            if self.stop is not None and self.stop.is_set():
                raise PublishInterrupted("publishing stopped before it was done")
            try:
                self.apply(plan)
                return plan
            except _Conflict:
                with self.lock:
                    self.conflicts += 1
                plan = plan_pool(plan.pool, desired, self.existing(plan.pool))
                if not plan.changed:
                    return plan
        raise KubeApiError(
            f"pool {plan.pool}: its ResourceSlices kept changing under this publisher "
            f"(409 Conflict {rounds} times); another writer is publishing the same pool"
        )


def _progress(enabled: bool | None, total: int) -> Any:
    from rich.console import Console

    console = Console(stderr=True)
    if enabled is None:
        enabled = console.is_terminal and total > 1
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def publish(
    api_client: Any,
    desired: Mapping[str, Sequence[Manifest]] | NodeTopology | Cluster,
    /,
    *,
    node: str | None = None,
    driver: str = DEFAULT_DRIVER,
    prune: bool = False,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
    workers: int = 8,
    conflict_rounds: int = 5,
    progress: bool | None = None,
    stop: threading.Event | None = None,
) -> PublishResult:
    """Reconcile the API server's ResourceSlices of ``driver`` with ``desired``.

    Parameters
    ----------
    api_client
        A ``kubernetes.client.ApiClient``.
    desired
        A :class:`~nvtopo.Cluster` (every node; with ``prune``, pools of nodes not in it are
        deleted), a
        :class:`~nvtopo.NodeTopology` (one node, named by ``node``), or a mapping of node
        name to that node's slice manifests (:func:`node_slices`).
    node
        The node of a topology (default: its name), or the one node of a cluster or mapping
        to publish alone.
    driver
        The DRA driver name the slices are published under.
    prune
        Also delete the pools of the driver's other nodes (those not in ``desired``). Off by
        default, even for a whole cluster, as kubectl's ``--prune``: a cluster file that
        misses nodes must not take their GPUs away.
    dry_run
        Read and plan only: the result lists what would change; nothing is written.
    retry
        Retry policy for 429/5xx answers (:class:`~nvtopo.kube.retry.RetryPolicy`).
    workers
        Pools written at once.
    conflict_rounds
        Times a pool is read and planned again after a 409 before giving up.
    progress
        Show a progress bar on standard error; default: when it is a terminal and more
        than one pool is published.
    stop
        When set, no new pool is started and retry waits end (:class:`PublishInterrupted`).

    Raises
    ------
    KubeApiError
        A request failed for good: one line naming the slice, the operation and the status
        (with a count of other pools that failed too).
    PublishError
        ``desired`` holds slices of another driver, or pools not named after their node.
    """
    started = time.perf_counter()
    pools = _desired(desired, node, driver)

    def sleep(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        elif stop.wait(seconds):
            raise PublishInterrupted("publishing stopped while waiting to retry")

    api = RawApi(api_client, policy=retry, sleep=sleep)
    pub = _Publisher(api, driver, stop)
    only = next(iter(pools)) if len(pools) == 1 and not prune else None
    if only is not None and any(s["spec"].get("nodeName") != only for s in pools[only]):
        only = None  # the nodeName selector would miss slices of this pool
    plans = plan_pools(pools, pub.existing(only), prune=prune)
    todo = [p for p in plans if p.changed]
    if dry_run:
        finished = plans
        changes = [c for p in plans for c in p.changes]
        counts = {a: sum(1 for c in changes if c.action == a) for a in pub.counts}
    else:
        finished = _run(pub, plans, todo, pools, conflict_rounds, workers, progress, stop)
        changes, counts = pub.changes, pub.counts
    order = {"create": 0, "update": 1, "delete": 2}
    return PublishResult(
        driver=driver,
        pools=len(plans),
        pools_changed=len({c.pool for c in changes}),
        created=counts["create"],
        updated=counts["update"],
        deleted=counts["delete"],
        unchanged=sum(p.unchanged for p in finished),
        requests=api.requests,
        writes=api.writes,
        retries=api.retries,
        conflicts=pub.conflicts,
        dry_run=dry_run,
        elapsed_s=time.perf_counter() - started,
        changes=tuple(sorted(changes, key=lambda c: (c.pool, order[c.action], c.slice))),
    )


def _run(
    pub: _Publisher,
    plans: list[PoolPlan],
    todo: list[PoolPlan],
    pools: Mapping[str, Sequence[Manifest]],
    rounds: int,
    workers: int,
    progress: bool | None,
    stop: threading.Event | None,
) -> list[PoolPlan]:
    """Write the changed pools, ``workers`` at a time; stop starting new ones on a failure."""
    bar = _progress(progress, len(todo))
    task = None
    if bar is not None:
        bar.start()
        task = bar.add_task(f"publishing {len(todo)} pools", total=len(todo))
    done: dict[str, PoolPlan] = {}
    interrupted = threading.Event()

    def one(plan: PoolPlan) -> None:
        if pub.failures or interrupted.is_set() or (stop is not None and stop.is_set()):
            return
        try:
            done[plan.pool] = pub.converge(plan, pools.get(plan.pool, ()), rounds)
        except PublishInterrupted:
            interrupted.set()
        except NvtopoError as exc:
            with pub.lock:
                pub.failures.append(exc)
        finally:
            if bar is not None and task is not None:
                bar.advance(task)

    try:
        if len(todo) <= 1 or workers <= 1:
            for plan in todo:
                one(plan)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(one, todo))
    finally:
        if bar is not None:
            bar.stop()
    if pub.failures:
        first = pub.failures[0]
        more = len(pub.failures) - 1
        if not more:
            raise first
        tail = f" ({more} more pool{'s' if more != 1 else ''} failed)"
        raise KubeApiError(str(first) + tail, status=getattr(first, "status", None))
    if interrupted.is_set() or (stop is not None and stop.is_set() and len(done) < len(todo)):
        raise PublishInterrupted(
            f"publishing stopped after {len(done)} of {len(todo)} changed pools"
        )
    return [done.get(p.pool, p) for p in plans]
