"""One watched view of a driver's ResourceSlices and of every ResourceClaim.

:class:`ClusterView` keeps a local copy of both collections the way a Kubernetes informer
does, and turns it into a :class:`Snapshot`: the :class:`~nvtopo.Cluster` the slices describe
(decoded by :mod:`nvtopo.dra.readback` and :mod:`nvtopo.dra.annotation`), with the GPUs that
any claim's ``status.allocation`` names marked busy, whoever allocated them.

For each collection one thread

- lists it (paged) and takes the list's ``resourceVersion``;
- watches from there (``watch=1``, ``allowWatchBookmarks=true``), applying ``ADDED``,
  ``MODIFIED`` and ``DELETED`` events and moving the version on with each event and bookmark;
- lists again when the server answers ``410 Gone`` (the version fell out of its window), and
  every ``resync`` seconds in any case, so a missed event cannot last;
- reconnects after a broken connection or an error status with capped, jittered backoff
  (an apiserver restart), resuming the watch from the last version it saw.

Every change bumps :attr:`ClusterView.version`; :meth:`ClusterView.wait` blocks until the
version passes a given one, and ``on_change`` callbacks run (on the watch thread, outside
the lock) after each change. A snapshot is built once per version and shared; decoding a
node's topology is cached per pool until its slices change.

Examples
--------
>>> from kubernetes import config                                   # doctest: +SKIP
>>> client = config.new_client_from_config()                        # doctest: +SKIP
>>> with ClusterView(client) as view:                               # doctest: +SKIP
...     view.wait_synced(timeout=30)
...     snap = view.snapshot()
...     nvtopo.place(snap.cluster, gpus=16, nodes=4, domain="required")
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from nvtopo.dra.attributes import device_name
from nvtopo.dra.slices import DEFAULT_DRIVER
from nvtopo.exceptions import NvtopoError
from nvtopo.kube.client import RESOURCE_CLAIMS, RESOURCE_SLICES, RawApi
from nvtopo.kube.readback import COMPUTE_DOMAIN_DRIVER, allocated_devices, cluster_from_objects
from nvtopo.kube.retry import RetryPolicy, api_message
from nvtopo.model import Cluster, ClusterNode

__all__ = ["ClusterView", "Snapshot"]

log = logging.getLogger("nvtopo.kube.view")

_PAGE = 500
_WATCH_SECONDS = 240  # server-side end of one watch request; the loop then watches again
_MIN_WATCH = 0.5  # seconds: a watch that ended sooner waits this long before the next
_Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped slices


@dataclass(frozen=True)
class Snapshot:
    """The view at one :attr:`version`: consistent, immutable, cheap to share.

    Attributes
    ----------
    version
        Counter of changes seen by the view; equal versions mean equal snapshots.
    cluster
        Nodes, topologies and cliques from the slices, ``free_gpus`` and
        ``in_compute_domain`` from the claims.
    allocated
        Pool (the node name) → names of its devices (``gpu-<n>``) that some claim holds.
    slices, claims
        The objects themselves, as the apiserver sent them (do not modify them).
    synced
        Both collections have been listed at least once.
    extra_slices
        The slices of the ``extra_drivers`` the view was asked to watch as well (not part of
        :attr:`cluster`): the devices another driver publishes for the same nodes.
    """

    version: int
    cluster: Cluster
    allocated: Mapping[str, frozenset[str]]
    slices: tuple[Mapping[str, Any], ...]
    claims: tuple[Mapping[str, Any], ...]
    synced: bool
    extra_slices: tuple[Mapping[str, Any], ...] = ()


class _Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410 or a 410 ERROR event)."""


def _key(obj: Mapping[str, Any]) -> _Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class _Store:
    """One collection: its objects, the version to resume from, whether it was listed."""

    def __init__(self, path: str, what: str, field_selector: str | None) -> None:
        self.path = path
        self.what = what
        self.field_selector = field_selector
        self.objects: dict[_Key, Mapping[str, Any]] = {}
        self.resource_version = ""
        self.listed = False


class ClusterView:
    """An informer-style watch of a driver's ResourceSlices and all ResourceClaims.

    Parameters
    ----------
    api_client
        A ``kubernetes.client.ApiClient`` allowed to list and watch ResourceSlices and
        ResourceClaims in all namespaces.
    driver
        The DRA driver whose slices describe the nodes.
    compute_domain_driver
        The driver whose allocations put a node in a ComputeDomain.
    resync
        Seconds between full lists of each collection, whatever the watch says.
    backoff
        Longest wait, in seconds, between reconnection attempts (the waits double from
        0.2 s with full jitter).
    on_change
        Called with the new version after every change (on a watch thread; keep it short).
    name
        Name given to the snapshots' clusters.
    extra_drivers
        Drivers whose slices are watched too and handed out as :attr:`Snapshot.extra_slices`
        (the allocator's companion mode hands out NVIDIA's devices on nvtopo's topology).
    """

    def __init__(
        self,
        api_client: Any,
        *,
        driver: str = DEFAULT_DRIVER,
        compute_domain_driver: str = COMPUTE_DOMAIN_DRIVER,
        resync: float = 300.0,
        backoff: float = 5.0,
        on_change: Callable[[int], None] | None = None,
        name: str | None = None,
        extra_drivers: Sequence[str] = (),
    ) -> None:
        self.client = api_client
        self.driver = driver
        self.compute_domain_driver = compute_domain_driver
        self.resync = resync
        self.backoff = backoff
        self.name = name
        self.extra_drivers = tuple(d for d in dict.fromkeys(extra_drivers) if d != driver)
        # Lists retry 429/5xx a few times; longer outages are the watch loop's backoff.
        self._api = RawApi(api_client, policy=RetryPolicy(attempts=3, max_delay=1.0))
        self._stores = (
            _Store(RESOURCE_SLICES, f"ResourceSlices of {driver}", f"spec.driver={driver}"),
            _Store(RESOURCE_CLAIMS, "ResourceClaims in all namespaces", None),
            *(
                _Store(RESOURCE_SLICES, f"ResourceSlices of {d}", f"spec.driver={d}")
                for d in self.extra_drivers
            ),
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._callbacks: list[Callable[[int], None]] = [on_change] if on_change else []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: set[Any] = set()
        self._snapshot: Snapshot | None = None
        self._nodes: dict[str, tuple[tuple[Any, ...], ClusterNode]] = {}
        #: Counters for tests and metrics: lists, watches started, 410s, reconnects.
        self.stats = {"lists": 0, "watches": 0, "gone": 0, "reconnects": 0}

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> ClusterView:
        """Start the two watch threads (returns at once; see :meth:`wait_synced`)."""
        if self._threads:
            return self
        for store in self._stores:
            t = threading.Thread(
                target=self._run, args=(store,), name=f"nvtopo-view-{store.path}", daemon=True
            )
            self._threads.append(t)
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching: close the open watch requests and join the threads."""
        self._stop.set()
        with self._lock:
            responses = list(self._responses)
            self._changed.notify_all()
        for r in responses:
            _close(r)
        for t in self._threads:
            t.join(timeout)

    def __enter__(self) -> ClusterView:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def add_listener(self, callback: Callable[[int], None]) -> None:
        """Also call ``callback(version)`` after every change."""
        with self._lock:
            self._callbacks.append(callback)

    # -- reading ------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Changes seen so far (0 before the first list)."""
        with self._lock:
            return self._version

    @property
    def synced(self) -> bool:
        """Both collections listed at least once."""
        with self._lock:
            return all(s.listed for s in self._stores)

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Block until both collections were listed; False when ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not all(s.listed for s in self._stores) and not self._stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
            return all(s.listed for s in self._stores)

    def wait(self, after: int, timeout: float | None = None) -> int:
        """Block until :attr:`version` exceeds ``after`` (or ``timeout``); the version then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._version <= after and not self._stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
            return self._version

    def snapshot(self) -> Snapshot:
        """The view now: built once per version, then shared."""
        with self._lock:
            if self._snapshot is not None and self._snapshot.version == self._version:
                return self._snapshot
            version = self._version
            slices = tuple(self._stores[0].objects.values())
            claims = tuple(self._stores[1].objects.values())
            extra = tuple(o for s in self._stores[2:] for o in s.objects.values())
            synced = all(s.listed for s in self._stores)
        snap = dataclasses.replace(self._build(version, slices, claims, synced), extra_slices=extra)
        with self._lock:
            if self._snapshot is None or self._snapshot.version < version:
                self._snapshot = snap
        return snap

    def _build(
        self,
        version: int,
        slices: tuple[Mapping[str, Any], ...],
        claims: tuple[Mapping[str, Any], ...],
        synced: bool,
    ) -> Snapshot:
        pools: dict[str, list[Mapping[str, Any]]] = {}
        for s in slices:
            spec = s.get("spec") or {}
            pools.setdefault(str((spec.get("pool") or {}).get("name", "")), []).append(s)
        busy: dict[str, set[str]] = {}
        for pool, device in allocated_devices(claims, self.driver):
            busy.setdefault(pool, set()).add(device)
        in_domain = {p for p, _ in allocated_devices(claims, self.compute_domain_driver)}
        nodes = []
        for pool in sorted(pools):
            bare = self._bare_node(pool, pools[pool])
            names = {device_name(g): g.index for g in bare.topology.gpus}
            taken = {names[d] for d in busy.get(pool, ()) if d in names}
            free = (
                None if not taken else tuple(i for i in bare.topology.gpu_indices if i not in taken)
            )
            nodes.append(
                dataclasses.replace(
                    bare,
                    free_gpus=free,
                    in_compute_domain=pool in in_domain or bare.name in in_domain,
                )
            )
        allocated = {p: frozenset(d) for p, d in busy.items()}
        return Snapshot(
            version=version,
            cluster=Cluster(tuple(nodes), name=self.name),
            allocated=MappingProxyType(allocated),
            slices=slices,
            claims=claims,
            synced=synced,
        )

    def _bare_node(self, pool: str, slices: list[Mapping[str, Any]]) -> ClusterNode:
        """The node of one pool without claims applied, decoded once per slice change."""
        key = tuple(
            sorted(
                (_key(s)[1], str((s.get("metadata") or {}).get("resourceVersion", "")))
                for s in slices
            )
        )
        cached = self._nodes.get(pool)
        if cached is not None and cached[0] == key:
            return cached[1]
        node = cluster_from_objects(slices, (), driver=self.driver).nodes[0]
        self._nodes[pool] = (key, node)
        return node

    # -- the watch loop -----------------------------------------------------------------

    def _changed_now(self) -> None:
        """Bump the version (lock held by the caller) and wake waiters."""
        self._version += 1
        self._changed.notify_all()

    def _notify(self) -> None:
        with self._lock:
            version, callbacks = self._version, list(self._callbacks)
        for cb in callbacks:
            try:
                cb(version)
            except Exception:  # a listener's bug must not stop the watch
                log.exception("view listener failed")

    def _run(self, store: _Store) -> None:
        failures = 0
        need_list = True
        listed_at = 0.0
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list(store)
                    listed_at = time.monotonic()
                    need_list = False
                while not self._stop.is_set():
                    left = self.resync - (time.monotonic() - listed_at)
                    if left <= 0:
                        need_list = True
                        break
                    began = time.monotonic()
                    self._watch(store, min(left, _WATCH_SECONDS))
                    failures = 0
                    if time.monotonic() - began < _MIN_WATCH:
                        # A server that ends watches at once must not be asked in a hot loop.
                        self._stop.wait(_MIN_WATCH)
            except _Gone:
                self.stats["gone"] += 1
                log.info("%s: resourceVersion expired, listing again", store.what)
                need_list = True
            except Exception as exc:  # connection refused or reset, 5xx, a bad body
                if self._stop.is_set():
                    return
                failures += 1
                self.stats["reconnects"] += 1
                delay = random.uniform(0, min(self.backoff, 0.2 * 2 ** min(failures, 10)))
                log.warning("%s: %s; again in %.1fs", store.what, _describe(exc), delay)
                self._stop.wait(delay)

    def _list(self, store: _Store) -> None:
        objects: dict[_Key, Mapping[str, Any]] = {}
        token = ""
        while True:
            query: list[tuple[str, Any]] = [("limit", _PAGE)]
            if store.field_selector:
                query.append(("fieldSelector", store.field_selector))
            if token:
                query.append(("continue", token))
            page = self._api.request("GET", store.path, what=f"list {store.what}", query=query)
            for item in page.get("items") or []:
                objects[_key(item)] = item
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                break
        self.stats["lists"] += 1
        with self._lock:
            changed = not store.listed or _differs(store.objects, objects)
            store.objects = objects
            store.resource_version = str(meta.get("resourceVersion") or "")
            store.listed = True
            if changed:
                self._changed_now()
            else:
                self._changed.notify_all()  # wait_synced
        if changed:
            self._notify()

    def _watch(self, store: _Store, seconds: float) -> None:
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", store.resource_version),
            ("timeoutSeconds", max(1, int(seconds))),
        ]
        if store.field_selector:
            query.append(("fieldSelector", store.field_selector))
        request = self.client.param_serialize(
            method="GET",
            resource_path=store.path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.client.call_api(*request, _request_timeout=(10.0, seconds + 30.0))
        raw = response.response
        with self._lock:
            self._responses.add(raw)
        try:
            if response.status == 410:
                raise _Gone
            if response.status != 200:
                body = raw.read(4096).decode(errors="replace")
                raise NvtopoError(f"watch {store.what}: HTTP {response.status} {body[:200]}")
            self.stats["watches"] += 1
            for event in _events(raw):
                if self._stop.is_set():
                    return
                self._apply(store, event)
        finally:
            with self._lock:
                self._responses.discard(raw)
            _close(raw)

    def _apply(self, store: _Store, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone
            raise NvtopoError(f"watch {store.what}: {obj.get('message') or obj}")
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        with self._lock:
            if rv:
                store.resource_version = rv
            if kind == "BOOKMARK":
                return
            if kind in ("ADDED", "MODIFIED"):
                store.objects[_key(obj)] = obj
            elif kind == "DELETED":
                store.objects.pop(_key(obj), None)
            else:
                return
            self._changed_now()
        self._notify()


def _events(raw: Any) -> Iterator[Mapping[str, Any]]:
    """The JSON lines of a watch response body, one event each."""
    buffer = b""
    for chunk in raw.stream(65536, decode_content=True):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if buffer.strip():
        yield json.loads(buffer)


def _differs(old: Mapping[_Key, Mapping[str, Any]], new: Mapping[_Key, Mapping[str, Any]]) -> bool:
    if old.keys() != new.keys():
        return True
    return any(
        (old[k].get("metadata") or {}).get("resourceVersion")
        != (new[k].get("metadata") or {}).get("resourceVersion")
        for k in new
    )


def _close(raw: Any) -> None:
    # Shutting the socket down wakes a thread blocked reading it; close() alone may not.
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    try:
        raw.close()
    except Exception:  # closing a broken connection may fail; it is closed either way
        log.debug("closing a watch response failed", exc_info=True)


def _describe(exc: BaseException) -> str:
    if hasattr(exc, "status") and hasattr(exc, "reason"):
        return api_message(exc)
    return f"{type(exc).__name__}: {exc}"
