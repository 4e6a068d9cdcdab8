"""Fixtures that run a real control plane for the Kubernetes tests.

Like controller-runtime's envtest: the pinned binaries come from ``scripts/k8s-test-env build``
(built on first use and cached under ``~/.cache/nvtopo/k8s/``), every process listens on
free loopback ports for the whole session, and they are stopped at its end. ``apiserver``
is etcd + kube-apiserver only; a test that needs pods scheduled or claims made from
templates also asks for ``scheduler`` and/or ``controller_manager``, which start the real
kube-scheduler / kube-controller-manager once, the first time a test asks. ``ready_nodes``
makes Node objects the scheduler takes as Ready and untainted. Without Go the fixture fails
with the reason; ``NVTOPO_K8S=skip`` deselects every test marked ``k8s``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

_PACKAGE = Path(__file__).resolve().parents[2] / "scripts" / "k8s"


def _load_controlplane() -> Any:
    # The launcher is a small package beside the Go module it builds, outside nvtopo; it is
    # loaded under the same name scripts/k8s-test-env uses, so both share one module.
    name = "nvtopo_k8s_env"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, _PACKAGE / "__init__.py", submodule_search_locations=[str(_PACKAGE)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


controlplane = _load_controlplane()


def _fail(problem: str) -> None:
    # Failed outside an except block so the report is the message, not a chained trace.
    pytest.fail(
        f"Kubernetes test environment unavailable: {problem}\n"
        "(NVTOPO_K8S=skip deselects the k8s tests)",
        pytrace=False,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (and report as deselected) every ``k8s`` test when ``NVTOPO_K8S=skip``."""
    if os.environ.get("NVTOPO_K8S", "").strip().lower() != "skip":
        return
    dropped = [item for item in items if item.get_closest_marker("k8s") is not None]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item.get_closest_marker("k8s") is None]


@pytest.fixture(scope="session")
def apiserver(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A running control plane: ``.url``, ``.token``, ``.ca_file``, ``.kubeconfig`` (paths).

    The token's user is in ``system:masters``; authorization is RBAC.
    """
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")

    def say(line: str) -> None:
        # Progress must reach the terminal past output capture: a first build takes minutes.
        if reporter is None:
            return
        if capture is None:
            reporter.write_line(f"[k8s] {line}")
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[k8s] {line}")

    timeout = float(os.environ.get("NVTOPO_K8S_START_TIMEOUT", "120"))
    try:
        binaries = controlplane.build(log=say)
        plane = controlplane.start(tmp_path_factory.mktemp("k8s"), binaries, timeout=timeout)
    except controlplane.ControlPlaneError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        _fail(problem)
    try:
        yield plane
    finally:
        plane.stop()


def _component(start: Callable[..., Any], plane: Any) -> Iterator[Any]:
    try:
        component = start(plane)
    except controlplane.ControlPlaneError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        _fail(problem)
    try:
        yield component
    finally:
        component.stop()


@pytest.fixture(scope="session")
def scheduler(apiserver: Any) -> Iterator[Any]:
    """The real kube-scheduler (stock profile) bound to the session's apiserver."""
    yield from _component(controlplane.start_scheduler, apiserver)


@pytest.fixture(scope="session")
def controller_manager(apiserver: Any) -> Iterator[Any]:
    """The real kube-controller-manager (Jobs, ResourceClaims from templates, GC)."""
    yield from _component(controlplane.start_controller_manager, apiserver)


@pytest.fixture(scope="session")
def ready_nodes(apiserver: Any) -> Callable[..., None]:
    """``ready_nodes(names, labels={name: {...}})``: Ready, untainted Node objects."""

    def make(names: Iterable[str], labels: Mapping[str, Mapping[str, str]] | None = None) -> None:
        controlplane.add_nodes(apiserver, list(names), labels=labels)

    return make


@pytest.fixture(scope="session")
def k8s_client(apiserver: Any) -> Iterator[ApiClient]:
    """A ``kubernetes.client.ApiClient`` for the fixture's apiserver, made from its kubeconfig."""
    from kubernetes import config

    kubeconfig = str(apiserver.kubeconfig)
    client = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    try:
        yield client
    finally:
        client.close()
