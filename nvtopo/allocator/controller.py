"""The allocator's loop: gated gangs in, allocated claims and lifted gates out.

Each pass lists the gated pods; when some are there, it takes the cluster (ResourceSlices
and every ResourceClaim) from the watched view it shares with the placement service
(:mod:`.watch`, :mod:`.inventory`), first finishes or rolls back any gang with a journal (a
write cut short by a crash; judged on claims read afresh), then places each complete gang
on one :class:`~nvtopo.place.ClusterState` (so two gangs of one pass never share a GPU):
a fresh read of the claims to check the plan against what the view may not have seen yet,
journal, each claim's ``status.allocation``, then the gates. A gang that cannot be placed
keeps its gate and gets an event and a pod condition saying why; it is tried again only
when the free capacity changes. Every write is a read-modify-write with the object's
``resourceVersion``: a conflict ends the pass, and the next one starts from fresh reads.
:meth:`Allocator.run` passes again as soon as the view changes (a claim made for a new pod,
one allocated or freed), or after ``interval`` at the latest (new gated pods).
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nvtopo.allocator.gang import (
    GATE,
    JOURNAL_ANNOTATION,
    Gang,
    GangError,
    gated,
    group_gangs,
)
from nvtopo.allocator.inventory import Inventory, read_inventory
from nvtopo.allocator.journal import Journal, decode, encode, verdict, written
from nvtopo.allocator.plan import ClaimAllocation, GangPlan, plan_gang
from nvtopo.allocator.watch import Claims, Watched
from nvtopo.dra.slices import DEFAULT_DRIVER
from nvtopo.exceptions import InfeasibleError, NvtopoError, ParseError
from nvtopo.kube.client import RawApi
from nvtopo.kube.readback import allocated_devices
from nvtopo.kube.view import ClusterView
from nvtopo.place import ClusterState

__all__ = ["CONDITION", "Allocator", "PassResult"]

log = logging.getLogger("nvtopo.allocator")

#: Pod condition the allocator sets on a gang it cannot place (status False, with reason).
CONDITION = "topology.nvtopo.dev/Placement"
COMPONENT = "nvtopo-allocator"


@dataclass
class PassResult:
    """What one pass did (counts, and the gangs refused with their reason)."""

    placed: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    finished: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    claim_writes: int = 0


class _Conflict(Exception):
    """A write met a newer object; the pass ends and the next one rereads."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{name}"


def _claim_path(namespace: str, name: str) -> str:
    return f"/apis/resource.k8s.io/v1/namespaces/{namespace}/resourceclaims/{name}"


class Allocator:
    """Exact, gang-aware DRA allocation for pods gated by :data:`~.gang.GATE`.

    Parameters
    ----------
    api_client
        A ``kubernetes.client.ApiClient`` with the rights of ``deploy/allocator.yaml``.
    driver
        The driver whose devices are handed out: nvtopo's (default) or, in companion mode,
        ``gpu.nvidia.com``.
    device_class
        The DeviceClass whose requests the allocator fills (default: named after ``driver``).
    topology_driver
        The driver of the slices that carry each node's topology (nvtopo's node agent).
    on_claim_written
        Called with the count of claims written so far in a gang (fault injection in tests).
    view
        A :class:`~nvtopo.kube.view.ClusterView` shared with others in this process (it
        must watch ``topology_driver``'s slices, and ``driver``'s as ``extra_drivers``);
        without one the allocator starts its own on first use and stops it in
        :meth:`close`.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        driver: str = DEFAULT_DRIVER,
        device_class: str | None = None,
        topology_driver: str = DEFAULT_DRIVER,
        on_claim_written: Callable[[int], None] | None = None,
        view: ClusterView | None = None,
    ) -> None:
        self.api = RawApi(api_client)
        self.driver = driver
        self.device_class = device_class or driver
        self.topology_driver = topology_driver
        self.on_claim_written = on_claim_written
        self.watched = Watched(self.api, view)
        # gang key -> (member names, capacity fingerprint, message) of its last refusal
        self._refused: dict[str, tuple[tuple[str, ...], Any, str]] = {}

    # -- reads -----------------------------------------------------------------------------
    def _list(self, path: str, what: str) -> list[dict[str, Any]]:
        return list(self.api.list(path, what=what))

    def _view(self) -> ClusterView:
        return self.watched.view(self.topology_driver, self.driver)

    # -- one pass --------------------------------------------------------------------------
    def run_once(self) -> PassResult:
        """One pass over the gated pods; returns what it did."""
        result = PassResult()
        view = self._view()
        pods = [p for p in self._list("/api/v1/pods", "list pods") if gated(p)]
        if not pods:
            self._refused.clear()
            return result
        snap = view.snapshot()
        claims = self.watched.claims(snap)
        inventory = read_inventory(
            snap.slices + snap.extra_slices,
            claims.values(),
            driver=self.driver,
            topology_driver=self.topology_driver,
            base=snap.cluster,
        )
        try:
            if self._recover(pods, result):
                return result  # claims changed: place the rest from fresh reads next pass
            gangs, ungoverned, errors = group_gangs(pods, claims, self.device_class)
            for pod in ungoverned:
                self._lift(pod, clear_journal=False)
            for key, (message, members) in errors.items():
                self._refuse_pods(members, key, message, result)
            state = ClusterState(inventory.cluster)
            for gang in gangs:
                if gang.complete:
                    self._place(gang, inventory, state, result)
        except _Conflict as exc:
            log.info("pass ended early: %s", exc)
        return result

    def _place(
        self,
        gang: Gang,
        inventory: Inventory,
        state: ClusterState,
        result: PassResult,
    ) -> None:
        members = tuple(m.name for m in gang.members)
        fingerprint = inventory.fingerprint()
        last = self._refused.get(gang.key)
        if last is not None and last[0] == members and last[1] == fingerprint:
            result.refused[gang.key] = last[2]
            return  # nothing changed since it was refused
        try:
            plan = plan_gang(inventory, gang, state)
        except (InfeasibleError, GangError) as exc:
            message = str(exc)
            self._refused[gang.key] = (members, fingerprint, message)
            self._refuse_pods([m.pod for m in gang.members], gang.key, message, result)
            return
        self._refused.pop(gang.key, None)
        self._commit(plan, result)
        result.placed.append(gang.key)

    # -- writes ----------------------------------------------------------------------------
    def _put(self, path: str, body: Mapping[str, Any], what: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.request("PUT", path, what=what, body=dict(body))
        except ApiException as exc:
            if exc.status in (404, 409):
                raise _Conflict(f"{what}: HTTP {exc.status}") from None
            raise

    def _get(self, path: str, what: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.request("GET", path, what=what)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _check(self, plan: GangPlan) -> Claims:
        """The claims read afresh, once the plan is checked against them.

        The plan comes from the watched view, which may not have seen a claim allocated a
        moment ago by someone else (the stock scheduler, on another DeviceClass of the same
        devices, or a second allocator). Never a device twice therefore rests on this quorum
        read right before the first write, not on the view and not on the claim status
        write's ``resourceVersion`` (which conflicts only on the claim written, never on a
        device held by another claim). What is left, a write landing between this read and
        ours, is closed by the admission policy in ``deploy/``: only the allocator
        allocates nvtopo's class.
        """
        fresh = self.watched.fresh_claims()
        mine = {(c.namespace, c.claim) for c in plan.claims}
        busy = allocated_devices((c for k, c in fresh.items() if k not in mine), self.driver)
        for c in plan.claims:
            state = written(fresh.get((c.namespace, c.claim)), c)
            if state is None:
                raise _Conflict(f"claim {c.namespace}/{c.claim} is gone or allocated otherwise")
            taken = [dev for _, _, pool, dev in c.results if (pool, dev) in busy]
            if state is False and taken:
                raise _Conflict(f"{', '.join(taken)} of {c.node} taken meanwhile")
        return fresh

    def _commit(self, plan: GangPlan, result: PassResult) -> None:
        claims = self._check(plan)
        gang = plan.gang
        members = sorted(gang.members, key=lambda m: m.name)
        first = members[0].pod
        journal = Journal(plan.claims, tuple(m.name for m in members))
        pod = dict(first)
        meta = dict(pod["metadata"])
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            JOURNAL_ANNOTATION: encode(journal),
        }
        pod["metadata"] = meta
        written_first = self._put(
            _pod_path(gang.namespace, members[0].name), pod, f"journal on pod {members[0].name}"
        )
        self._write_claims(plan.claims, claims, result)
        pods = [m.pod for m in members[1:]] + [written_first]
        for p in pods:
            self._lift(p, clear_journal=True)
        log.info(
            "placed gang %s: %s", gang.key, ", ".join(f"{k}->{v}" for k, v in plan.pods.items())
        )

    def _write_claims(
        self,
        planned: tuple[ClaimAllocation, ...],
        claims: Mapping[tuple[str, str], Mapping[str, Any]],
        result: PassResult,
    ) -> None:
        count = 0
        for c in planned:
            current = claims.get((c.namespace, c.claim))
            if current is not None and written(current, c):
                count += 1
                continue
            body = dict(current or {})
            if not body:
                raise _Conflict(f"claim {c.namespace}/{c.claim} is gone")
            body["status"] = {**(body.get("status") or {}), "allocation": c.status()}
            done = self._put(
                _claim_path(c.namespace, c.claim) + "/status",
                body,
                f"allocation of claim {c.namespace}/{c.claim}",
            )
            self.watched.wrote(body, done)
            count += 1
            result.claim_writes += 1
            if self.on_claim_written is not None:
                self.on_claim_written(count)

    def _lift(self, pod: Mapping[str, Any], *, clear_journal: bool) -> None:
        meta = pod["metadata"]
        body = dict(pod)
        spec = dict(body["spec"])
        spec["schedulingGates"] = [
            g for g in spec.get("schedulingGates") or [] if g.get("name") != GATE
        ]
        body["spec"] = spec
        if clear_journal and JOURNAL_ANNOTATION in (meta.get("annotations") or {}):
            annotations = {k: v for k, v in meta["annotations"].items() if k != JOURNAL_ANNOTATION}
            body["metadata"] = {**meta, "annotations": annotations}
        self._put(_pod_path(meta["namespace"], meta["name"]), body, f"gate of pod {meta['name']}")

    # -- crash recovery --------------------------------------------------------------------
    def _recover(self, pods: list[dict[str, Any]], result: PassResult) -> bool:
        """Finish or roll back every gang with a journal; True when anything was done.

        Judged on claims read afresh from the apiserver, not on the view: finishing a
        journal must not hand out a device that a claim the view has not seen holds.
        """
        acted = False
        by_name = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in pods}
        claims: Claims | None = None
        for pod in pods:
            meta = pod["metadata"]
            text = (meta.get("annotations") or {}).get(JOURNAL_ANNOTATION)
            if text is None:
                continue
            if claims is None:
                claims = self.watched.fresh_claims()
            namespace = str(meta["namespace"])
            try:
                journal = decode(text, namespace=namespace, where=f"pod {namespace}/{meta['name']}")
            except ParseError as exc:
                log.warning("%s: dropping it", exc)
                journal = Journal((), ())
            acted = True
            # Devices held by any claim outside the journal: the planned ones must not be.
            mine = {(c.namespace, c.claim) for c in journal.claims}
            busy = frozenset(
                allocated_devices((c for k, c in claims.items() if k not in mine), self.driver)
            )
            if verdict(journal, claims, busy) == "finish":
                self._write_claims(journal.claims, claims, result)
                members = [
                    by_name[(namespace, n)] for n in journal.pods if (namespace, n) in by_name
                ]
                for p in [m for m in members if m is not pod] + [pod]:
                    self._lift(p, clear_journal=True)
                result.finished.append(f"{namespace}/{meta['name']}")
                continue
            for c in journal.claims:
                current = claims.get((c.namespace, c.claim))
                if current is not None and written(current, c):
                    body = dict(current)
                    body["status"] = {
                        k: v for k, v in (current.get("status") or {}).items() if k != "allocation"
                    }
                    self._put(
                        _claim_path(c.namespace, c.claim) + "/status",
                        body,
                        f"rollback of {c.claim}",
                    )
            annotations = {k: v for k, v in meta["annotations"].items() if k != JOURNAL_ANNOTATION}
            self._put(
                _pod_path(namespace, meta["name"]),
                {**pod, "metadata": {**meta, "annotations": annotations}},
                f"journal of pod {meta['name']}",
            )
            result.rolled_back.append(f"{namespace}/{meta['name']}")
        return acted

    # -- reporting -------------------------------------------------------------------------
    def _refuse_pods(
        self, pods: list[Mapping[str, Any]], key: str, message: str, result: PassResult
    ) -> None:
        result.refused[key] = message
        for pod in pods:
            self._report(pod, message)

    def _report(self, pod: Mapping[str, Any], message: str) -> None:
        meta = pod["metadata"]
        conditions = (pod.get("status") or {}).get("conditions") or []
        mine = next((c for c in conditions if c.get("type") == CONDITION), None)
        if mine is not None and mine.get("message") == message:
            return  # already said
        condition = {
            "type": CONDITION,
            "status": "False",
            "reason": "Unplaceable",
            "message": message,
            "lastTransitionTime": _now(),
        }
        body = dict(pod)
        status = dict(body.get("status") or {})
        status["conditions"] = [c for c in conditions if c.get("type") != CONDITION] + [condition]
        body["status"] = status
        try:
            self._put(
                _pod_path(meta["namespace"], meta["name"]) + "/status",
                body,
                f"condition of pod {meta['name']}",
            )
        except _Conflict:
            return  # the next pass says it again on the fresh object
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "reason": "Unplaceable",
            "message": message,
            "type": "Warning",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "firstTimestamp": _now(),
            "lastTimestamp": _now(),
            "count": 1,
        }
        self.api.request(
            "POST", f"/api/v1/namespaces/{meta['namespace']}/events", what="event", body=event
        )

    def run(self, *, interval: float = 0.2, stop: Callable[[], bool] = lambda: False) -> None:
        """Pass after pass until ``stop()`` is true; a failed pass is logged and retried.

        The next pass starts when the view changes, or after ``interval`` at the latest
        (pods are listed each pass, not watched). The view started here is stopped at the end.
        """
        from kubernetes.client.exceptions import ApiException

        try:
            while not stop():
                view: ClusterView | None = None
                try:
                    view = self._view()
                    version = view.version
                    self.run_once()
                except (NvtopoError, ApiException) as exc:
                    log.warning("pass failed: %s", exc)
                if view is None:
                    time.sleep(interval)
                else:
                    view.wait(version, timeout=interval)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the cluster view this allocator started (a shared one keeps running)."""
        self.watched.close()
