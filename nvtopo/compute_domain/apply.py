"""Creating a planned ComputeDomain, waiting for its nodes, and deleting it again.

:func:`apply` creates the plan's objects in order; an object that already exists (409) or
any other refusal removes what this call created and raises one line saying so, so a failed
apply leaves nothing half made. It then follows the ComputeDomain (a watch, re-read whenever
the stream ends) until the driver reports every planned node Ready in ``status.nodes[]`` and
``status.status`` Ready, showing progress on the terminal; past ``timeout`` it raises
:class:`ComputeDomainTimeout` naming the nodes not Ready and their status. The objects stay
then, for inspection; :func:`delete` removes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nvtopo.compute_domain._kube import PLURALS, Kube, ref
from nvtopo.compute_domain.crd import API_VERSION, CRD_NAME, KIND
from nvtopo.compute_domain.errors import (
    ComputeDomainConflict,
    ComputeDomainError,
    ComputeDomainInterrupted,
    ComputeDomainTimeout,
    CrdMissingError,
)
from nvtopo.compute_domain.manifests import LABEL_COMPUTE_DOMAIN, LABEL_MANAGED_BY, MANAGER
from nvtopo.compute_domain.plan import ComputeDomainPlan
from nvtopo.compute_domain.plan import _check_label as check_label
from nvtopo.dra.slices import API_VERSION as DRA_API_VERSION
from nvtopo.kube.retry import RetryPolicy, api_message

__all__ = [
    "AppliedComputeDomain",
    "DomainNode",
    "apply",
    "delete",
    "node_states",
    "require_served",
]

# Kinds a plan may create, in creation order, with the apiVersion each is served at.
_KINDS = (
    ("ComputeDomain", API_VERSION),
    ("ResourceClaimTemplate", DRA_API_VERSION),
    ("Job", "batch/v1"),
)


@dataclass(frozen=True)
class DomainNode:
    """One entry of the ComputeDomain's ``status.nodes[]``."""

    name: str
    ip_address: str | None
    clique_id: str | None
    index: int | None
    status: str


@dataclass(frozen=True)
class AppliedComputeDomain:
    """A ComputeDomain that is Ready: the objects created and the driver's node records.

    After a server dry run ``status`` is ``DryRun``, ``created`` names what would be
    created and ``objects`` holds the apiserver's answers; nothing is stored.
    """

    name: str
    namespace: str
    created: tuple[str, ...]
    status: str
    nodes: tuple[DomainNode, ...]
    elapsed_s: float
    #: With ``dry_run``: the objects as the apiserver would have stored them.
    objects: tuple[dict[str, Any], ...] = ()


def node_states(obj: dict[str, Any], planned: tuple[str, ...]) -> dict[str, str]:
    """Each planned node's status in ``obj`` (``absent`` when the driver has not listed it)."""
    reported = {
        n.get("name"): n.get("status") or "NotReady"
        for n in ((obj.get("status") or {}).get("nodes") or [])
        if isinstance(n, dict)
    }
    return {name: reported.get(name, "absent") for name in planned}


def _ready(obj: dict[str, Any], planned: tuple[str, ...]) -> bool:
    states = node_states(obj, planned)
    overall = (obj.get("status") or {}).get("status")
    return overall == "Ready" and all(s == "Ready" for s in states.values())


def _require_crd(kube: Kube, namespace: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        kube.list(API_VERSION, KIND, namespace, limit=1)
    except ApiException as exc:
        if exc.status == 404:
            raise CrdMissingError(
                f"the apiserver at {kube.host} does not serve {KIND} ({CRD_NAME}): install "
                "NVIDIA's DRA driver for GPUs, or apply deploy/computedomain-crd.yaml"
            ) from None
        raise ComputeDomainError(
            f"cannot read {KIND}s in namespace {namespace}: {api_message(exc)}"
        ) from None


def require_served(api_client: Any, namespace: str, *, retry: RetryPolicy | None = None) -> None:
    """Check that the apiserver can be reached and serves ComputeDomains to this user.

    :func:`apply` starts with the same check; a caller calls it first to fail in one line
    before it prints anything else.

    Raises
    ------
    CrdMissingError
        The apiserver does not serve ComputeDomains.
    ComputeDomainError
        It cannot be reached, or refuses this user (401, 403...).
    """
    _require_crd(Kube(api_client, policy=retry), namespace)


def _rollback(kube: Kube, created: list[dict[str, Any]]) -> str:
    """Delete ``created`` in reverse; say what was removed and what could not be."""
    from kubernetes.client.exceptions import ApiException

    removed, failed = [], []
    for manifest in reversed(created):
        meta = manifest["metadata"]
        try:
            kube.delete(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
            removed.append(ref(manifest))
        except ApiException as exc:
            if exc.status == 404:
                removed.append(ref(manifest))
            else:
                failed.append(f"{ref(manifest)} ({api_message(exc)})")
        except ComputeDomainError as exc:
            failed.append(f"{ref(manifest)} ({exc})")
    if not created:
        return "nothing had been created"
    text = f"removed {', '.join(removed)}" if removed else ""
    if failed:
        text += ("; " if text else "") + f"could NOT remove {', '.join(failed)}"
    return text


def _left(plan: ComputeDomainPlan, created: tuple[str, ...]) -> str:
    """What an interrupted apply leaves behind, and the command that removes it."""
    if not created:
        return "nothing was created"
    return (
        f"left {', '.join(created)}; `nvtopo compute-domain delete {plan.name} "
        f"-n {plan.namespace}` removes them"
    )


def _create_all(
    kube: Kube, plan: ComputeDomainPlan, *, dry_run: bool = False
) -> list[dict[str, Any]]:
    """Create the plan's objects in order; return the apiserver's answers."""
    from kubernetes.client.exceptions import ApiException

    created: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    for manifest in plan.manifests():
        try:
            answers.append(kube.create(manifest, dry_run=dry_run))
        except KeyboardInterrupt:
            # Ctrl-C half way: undo what this call made (the deletes are quick), say so.
            raise ComputeDomainInterrupted(
                f"{KIND} {plan.namespace}/{plan.name}: apply interrupted while creating "
                f"{ref(manifest)}; {_rollback(kube, created)}"
            ) from None
        except ApiException as exc:
            undone = _rollback(kube, created)
            where = f"{KIND} {plan.namespace}/{plan.name}"
            if exc.status == 409:
                raise ComputeDomainConflict(
                    f"{where}: {ref(manifest)} already exists; {undone}"
                ) from None
            raise ComputeDomainError(
                f"{where}: cannot create {ref(manifest)} ({api_message(exc)}); {undone}"
            ) from None
        except ComputeDomainError as exc:
            raise ComputeDomainError(f"{exc}; {_rollback(kube, created)}") from None
        if not dry_run:
            created.append(manifest)
    return answers


class _Progress:
    """A rich progress bar of Ready nodes, or nothing."""

    def __init__(self, plan: ComputeDomainPlan, enabled: bool) -> None:
        self.total = len(plan.nodes)
        self._bar: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} nodes Ready"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[note]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task(
                f"{KIND} {plan.namespace}/{plan.name}", total=self.total, note="created"
            )
            self._bar.start()

    def update(self, states: dict[str, str], overall: str | None) -> None:
        if self._bar is None:
            return
        ready = sum(1 for s in states.values() if s == "Ready")
        waiting = [f"{n} {s}" for n, s in states.items() if s != "Ready"]
        note = ", ".join(waiting[:3]) + (" ..." if len(waiting) > 3 else "")
        if not waiting:
            note = f"status {overall or 'unset'}"
        self._bar.update(self._task, completed=ready, note=note)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _timeout_error(
    plan: ComputeDomainPlan, obj: dict[str, Any] | None, timeout: float
) -> ComputeDomainTimeout:
    states = node_states(obj or {}, plan.nodes)
    not_ready = {n: s for n, s in states.items() if s != "Ready"}
    overall = ((obj or {}).get("status") or {}).get("status") or "unset"
    where = f"{KIND} {plan.namespace}/{plan.name}"
    keep = (
        f"the objects stay; `nvtopo compute-domain delete {plan.name} -n {plan.namespace}` "
        "removes them"
    )
    if not_ready:
        nodes = ", ".join(f"{n} ({s})" for n, s in not_ready.items())
        ready = len(states) - len(not_ready)
        message = (
            f"{where} not Ready after {timeout:g} s: nodes not Ready: {nodes}; "
            f"{ready} of {len(states)} Ready; {keep}"
        )
    else:
        message = (
            f"{where} not Ready after {timeout:g} s: every node is Ready but "
            f"status.status is {overall}; {keep}"
        )
    return ComputeDomainTimeout(message, not_ready)


def _wait(
    kube: Kube, plan: ComputeDomainPlan, timeout: float, bar: _Progress, clock: Callable[[], float]
) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    deadline = clock() + timeout
    obj: dict[str, Any] | None = None
    while True:
        try:
            obj = kube.get(API_VERSION, KIND, plan.namespace, plan.name)
        except ApiException as exc:
            if exc.status == 404:
                raise ComputeDomainError(
                    f"{KIND} {plan.namespace}/{plan.name} was deleted while waiting for it"
                ) from None
            raise ComputeDomainError(
                f"cannot read {KIND} {plan.namespace}/{plan.name}: {api_message(exc)}"
            ) from None
        bar.update(node_states(obj, plan.nodes), (obj.get("status") or {}).get("status"))
        if _ready(obj, plan.nodes):
            return obj
        remaining = deadline - clock()
        if remaining <= 0:
            raise _timeout_error(plan, obj, timeout)
        version = obj["metadata"]["resourceVersion"]
        try:
            for event in kube.watch(
                API_VERSION,
                KIND,
                plan.namespace,
                plan.name,
                resource_version=version,
                timeout=remaining,
            ):
                kind, current = event.get("type"), event.get("object")
                if kind == "DELETED":
                    raise ComputeDomainError(
                        f"{KIND} {plan.namespace}/{plan.name} was deleted while waiting for it"
                    )
                if kind not in ("ADDED", "MODIFIED") or not isinstance(current, dict):
                    break  # ERROR (e.g. 410 Gone): read the object again
                obj = current
                bar.update(node_states(obj, plan.nodes), (obj.get("status") or {}).get("status"))
                if _ready(obj, plan.nodes):
                    return obj
                if clock() >= deadline:
                    break
        except ApiException as exc:
            if exc.status != 410:
                raise ComputeDomainError(
                    f"cannot watch {KIND} {plan.namespace}/{plan.name}: {api_message(exc)}"
                ) from None
        if clock() >= deadline:
            raise _timeout_error(plan, obj, timeout)


def _domain_nodes(obj: dict[str, Any]) -> tuple[DomainNode, ...]:
    found = []
    for n in (obj.get("status") or {}).get("nodes") or []:
        found.append(
            DomainNode(
                name=n.get("name", ""),
                ip_address=n.get("ipAddress"),
                clique_id=n.get("cliqueID"),
                index=n.get("index"),
                status=n.get("status") or "NotReady",
            )
        )
    return tuple(sorted(found, key=lambda d: d.name))


def apply(
    plan: ComputeDomainPlan,
    api_client: Any,
    *,
    timeout: float = 300,
    progress: bool = True,
    wait: bool = True,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
) -> AppliedComputeDomain:
    """Create the plan's objects and wait until the ComputeDomain is Ready on every node.

    Parameters
    ----------
    plan
        From :func:`nvtopo.compute_domain.plan`.
    api_client
        A ``kubernetes.client.ApiClient``.
    timeout
        Seconds to wait for every planned node to be Ready.
    progress
        Show a progress bar on standard error.
    wait
        False: return right after creating the objects.
    dry_run
        Send every object with ``dryRun=All`` (kubectl's ``--dry-run=server``): the apiserver
        validates and admits it and stores nothing; no wait.
    retry
        Retry policy for 429/5xx answers (:class:`~nvtopo.kube.retry.RetryPolicy`).

    Raises
    ------
    CrdMissingError
        The apiserver does not serve ComputeDomains.
    ComputeDomainConflict
        An object of the plan already exists; what this call created was removed.
    ComputeDomainTimeout
        Not every node was Ready in time; the objects stay.
    ComputeDomainInterrupted
        Ctrl-C: while creating, what was made is removed; while waiting, the objects stay
        and the message names them and the command that removes them.
    ComputeDomainError
        Any other refusal, or the apiserver cannot be reached (while waiting: the message
        names the objects left).
    """
    if timeout <= 0:
        raise ComputeDomainError(f"timeout must be positive, got {timeout!r}")
    if len(plan.parts) > 1:
        raise ComputeDomainError(
            f"the plan spans {len(plan.parts)} cliques, one ComputeDomain each; apply waits "
            "on one: plan with --domain required, or apply the printed manifests"
        )
    kube = Kube(api_client, policy=retry)
    clock = time.monotonic
    start = clock()
    _require_crd(kube, plan.namespace)
    answers = _create_all(kube, plan, dry_run=dry_run)
    created = tuple(ref(m) for m in plan.manifests())
    if dry_run:
        return AppliedComputeDomain(
            plan.name, plan.namespace, created, "DryRun", (), clock() - start, tuple(answers)
        )
    if not wait:
        return AppliedComputeDomain(
            plan.name, plan.namespace, created, "NotReady", (), clock() - start
        )
    bar = _Progress(plan, progress)
    try:
        obj = _wait(kube, plan, timeout, bar, clock)
    except KeyboardInterrupt:
        raise ComputeDomainInterrupted(
            f"{KIND} {plan.namespace}/{plan.name}: interrupted while waiting for its nodes; "
            f"{_left(plan, created)}"
        ) from None
    except ComputeDomainTimeout:
        raise
    except ComputeDomainError as exc:  # the apiserver went away, or the object did
        raise ComputeDomainError(f"{exc}; {_left(plan, created)}") from None
    finally:
        bar.stop()
    return AppliedComputeDomain(
        name=plan.name,
        namespace=plan.namespace,
        created=created,
        status=(obj.get("status") or {}).get("status", "Ready"),
        nodes=_domain_nodes(obj),
        elapsed_s=clock() - start,
    )


def delete(
    name: str, namespace: str, api_client: Any, *, retry: RetryPolicy | None = None
) -> tuple[str, ...]:
    """Delete every object nvtopo made for ComputeDomain ``name``; return what was deleted.

    Objects are found by their labels (``app.kubernetes.io/managed-by=nvtopo``,
    ``nvtopo.dev/compute-domain=<name>``), so objects of the same names made by someone else
    are left alone. Kinds the apiserver does not serve are skipped. An empty tuple means
    there was nothing to delete.

    Raises
    ------
    ComputeDomainError
        ``name`` or ``namespace`` is no DNS label (checked before any request), or the
        apiserver refused a list or a delete.
    """
    from kubernetes.client.exceptions import ApiException

    check_label(name, "name", 63)
    check_label(namespace, "namespace", 63)
    kube = Kube(api_client, policy=retry)
    selector = f"{LABEL_MANAGED_BY}={MANAGER},{LABEL_COMPUTE_DOMAIN}={name}"
    deleted: list[str] = []
    for kind, api_version in reversed(_KINDS):
        assert kind in PLURALS
        try:
            items = kube.list(api_version, kind, namespace, label_selector=selector)["items"]
        except ApiException as exc:
            if exc.status == 404:
                continue  # the kind is not served: nothing of it to delete
            raise ComputeDomainError(
                f"cannot list {kind}s in namespace {namespace}: {api_message(exc)}"
            ) from None
        for item in items:
            obj_name = item["metadata"]["name"]
            try:
                kube.delete(api_version, kind, namespace, obj_name)
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise ComputeDomainError(
                    f"cannot delete {kind} {namespace}/{obj_name}: {api_message(exc)}"
                    + (f" (already deleted: {', '.join(deleted)})" if deleted else "")
                ) from None
            deleted.append(f"{kind} {namespace}/{obj_name}")
    return tuple(deleted)
