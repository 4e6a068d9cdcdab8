"""The kubelet plugin's two gRPC endpoints: plugin registration and the DRA service.

The kubelet's plugin watcher finds the registration socket in its ``plugins_registry``
directory, calls ``GetInfo`` (type ``DRAPlugin``, the driver name, the DRA socket as the
endpoint, and the gRPC services offered as "supported versions", most preferred first)
and reports the outcome with ``NotifyRegistrationStatus``. It then calls
``NodePrepareResources`` / ``NodeUnprepareResources`` on the DRA socket, through the
``v1`` service or, for older kubelets, ``v1beta1`` (same messages, another package).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from nvtopo.kubelet._proto import (
    dra_health_v1_pb2,
    dra_v1_pb2,
    dra_v1beta1_pb2,
    pluginregistration_v1_pb2,
)
from nvtopo.kubelet.errors import ClaimError, KubeletPluginError
from nvtopo.kubelet.health import HealthFeed
from nvtopo.kubelet.prepare import ClaimPreparer

__all__ = ["DRA_SERVICES", "HEALTH_SERVICE", "KubeletPlugin", "Registration"]

#: The "supported versions" the kubelet reads: ``<proto package's last part>.<service>``.
DRA_SERVICES = {"v1": "v1.DRAPlugin", "v1beta1": "v1beta1.DRAPlugin"}
HEALTH_SERVICE = "v1.DRAResourceHealth"
_MODULES: dict[str, ModuleType] = {"v1": dra_v1_pb2, "v1beta1": dra_v1beta1_pb2}


def _service_name(module: ModuleType, name: str) -> str:
    return str(module.DESCRIPTOR.services_by_name[name].full_name)


def _unary(fn: Callable[[Any, Any], Any], request: Any, response: Any) -> Any:
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request.FromString, response_serializer=response.SerializeToString
    )


@dataclass
class Registration:
    """What the kubelet said through ``NotifyRegistrationStatus`` (the last call wins)."""

    registered: bool = False
    error: str = ""
    calls: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)


def _claim_key(claim: Any) -> tuple[str, str, str]:
    return str(claim.namespace), str(claim.name), str(claim.uid)


class KubeletPlugin:
    """Serves registration and the DRA service (and device health) on unix sockets.

    Parameters
    ----------
    preparer
        Does the work of each call.
    registry_dir
        The kubelet's ``plugins_registry`` directory.
    plugin_dir
        A directory of this driver's own (the DRA socket goes there).
    apis
        DRA API versions offered, most preferred first (``("v1", "v1beta1")``).
    health
        Device health to stream to the kubelet, or None to offer no health service.
    workers
        Threads serving calls on each socket.
    on_registration
        Called with ``(registered, error)`` on each ``NotifyRegistrationStatus``.
    """

    def __init__(
        self,
        preparer: ClaimPreparer,
        *,
        registry_dir: Path,
        plugin_dir: Path,
        apis: Sequence[str] = ("v1", "v1beta1"),
        health: HealthFeed | None = None,
        workers: int = 8,
        on_registration: Callable[[bool, str], Any] | None = None,
    ) -> None:
        unknown = [a for a in apis if a not in _MODULES]
        if unknown or not apis:
            raise KubeletPluginError(
                f"DRA API versions {list(apis)}: each must be one of {', '.join(_MODULES)}"
            )
        self.preparer = preparer
        self.driver = preparer.driver
        self.apis = tuple(apis)
        self.health = health
        self.registration = Registration()
        self.dra_socket = plugin_dir / "dra.sock"
        self.registration_socket = registry_dir / f"{self.driver}-reg.sock"
        self._workers = workers
        self._on_registration = on_registration
        self._servers: list[grpc.Server] = []

    # -- DRA service -------------------------------------------------------------------------

    def _prepare(self, module: ModuleType) -> Callable[[Any, Any], Any]:
        def call(request: Any, _context: Any) -> Any:
            answer = module.NodePrepareResourcesResponse()
            for claim in request.claims:
                one = answer.claims[str(claim.uid)]
                try:
                    devices = self.preparer.prepare(*_claim_key(claim))
                except ClaimError as exc:
                    one.error = str(exc)
                    continue
                for d in devices:
                    one.devices.add(
                        request_names=d["requests"],
                        pool_name=d["pool"],
                        device_name=d["device"],
                        cdi_device_ids=d["cdi"],
                    )
            return answer

        return call

    def _unprepare(self, module: ModuleType) -> Callable[[Any, Any], Any]:
        def call(request: Any, _context: Any) -> Any:
            answer = module.NodeUnprepareResourcesResponse()
            for claim in request.claims:
                one = answer.claims[str(claim.uid)]
                try:
                    self.preparer.unprepare(*_claim_key(claim))
                except ClaimError as exc:
                    one.error = str(exc)
            return answer

        return call

    def _dra_handlers(self) -> list[grpc.GenericRpcHandler]:
        handlers = []
        for api in self.apis:
            m = _MODULES[api]
            handlers.append(
                grpc.method_handlers_generic_handler(
                    _service_name(m, "DRAPlugin"),
                    {
                        "NodePrepareResources": _unary(
                            self._prepare(m),
                            m.NodePrepareResourcesRequest,
                            m.NodePrepareResourcesResponse,
                        ),
                        "NodeUnprepareResources": _unary(
                            self._unprepare(m),
                            m.NodeUnprepareResourcesRequest,
                            m.NodeUnprepareResourcesResponse,
                        ),
                    },
                )
            )
        if self.health is not None:
            health = self.health
            h = dra_health_v1_pb2

            def watch(_request: Any, context: Any) -> Iterator[Any]:
                for batch in health.follow(context.is_active):
                    answer = h.NodeWatchResourcesResponse()
                    for status in batch:
                        answer.devices.add(
                            device=h.DeviceIdentifier(
                                pool_name=self.preparer.node, device_name=status.device
                            ),
                            health=h.HEALTHY if status.healthy else h.UNHEALTHY,
                            last_updated_time=int(status.since),
                            message=status.message,
                        )
                    yield answer

            handlers.append(
                grpc.method_handlers_generic_handler(
                    _service_name(h, "DRAResourceHealth"),
                    {
                        "NodeWatchResources": grpc.unary_stream_rpc_method_handler(
                            watch,
                            request_deserializer=h.NodeWatchResourcesRequest.FromString,
                            response_serializer=h.NodeWatchResourcesResponse.SerializeToString,
                        )
                    },
                )
            )
        return handlers

    # -- registration ------------------------------------------------------------------------

    def supported_versions(self) -> list[str]:
        """The services offered, as the kubelet reads them from ``GetInfo``."""
        versions = [DRA_SERVICES[a] for a in self.apis]
        if self.health is not None:
            versions.append(HEALTH_SERVICE)
        return versions

    def _registration_handler(self) -> grpc.GenericRpcHandler:
        r = pluginregistration_v1_pb2

        def get_info(_request: Any, _context: Any) -> Any:
            return r.PluginInfo(
                type="DRAPlugin",
                name=self.driver,
                endpoint=str(self.dra_socket),
                supported_versions=self.supported_versions(),
            )

        def notify(request: Any, _context: Any) -> Any:
            status = self.registration
            with status.changed:
                status.registered = bool(request.plugin_registered)
                status.error = str(request.error)
                status.calls += 1
                status.changed.notify_all()
            if not request.plugin_registered:
                print(
                    f"nvtopo: error: the kubelet refused the plugin: {request.error}",
                    file=sys.stderr,
                    flush=True,
                )
            if self._on_registration is not None:
                self._on_registration(bool(request.plugin_registered), str(request.error))
            return r.RegistrationStatusResponse()

        return grpc.method_handlers_generic_handler(
            _service_name(r, "Registration"),
            {
                "GetInfo": _unary(get_info, r.InfoRequest, r.PluginInfo),
                "NotifyRegistrationStatus": _unary(
                    notify, r.RegistrationStatus, r.RegistrationStatusResponse
                ),
            },
        )

    # -- life cycle --------------------------------------------------------------------------

    def _serve(self, path: Path, handlers: list[grpc.GenericRpcHandler]) -> grpc.Server:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise KubeletPluginError(f"{path}: cannot create the socket: {exc.strerror}") from None
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers),
            handlers=handlers,
            options=[("grpc.so_reuseport", 0)],
        )
        try:
            server.add_insecure_port(f"unix://{path}")
        except RuntimeError:
            raise KubeletPluginError(f"{path}: cannot listen on the socket") from None
        server.start()
        self._servers.append(server)
        return server

    def start(self) -> None:
        """Serve the DRA socket, then announce it on the registration socket."""
        self._serve(self.dra_socket, self._dra_handlers())
        self._serve(self.registration_socket, [self._registration_handler()])

    def wait_registered(self, timeout: float) -> bool:
        """Wait until the kubelet says the plugin is registered; False on timeout."""
        status = self.registration
        with status.changed:
            return status.changed.wait_for(lambda: status.registered, timeout=timeout)

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving; the registration socket goes first so the kubelet deregisters."""
        if self.health is not None:
            self.health.close()
        for server in reversed(self._servers):
            server.stop(grace).wait()
        self._servers.clear()
        for path in (self.registration_socket, self.dra_socket):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
