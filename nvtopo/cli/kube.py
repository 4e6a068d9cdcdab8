"""The Kubernetes client of the CLI: found the way kubectl finds its configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nvtopo.exceptions import NvtopoError

__all__ = ["api_client"]


def api_client(kubeconfig: str | None, context: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient``.

    From ``kubeconfig`` when given; else the first file of ``$KUBECONFIG`` (or
    ``~/.kube/config``) when it exists or when not in a pod; else the pod's service account
    (``KUBERNETES_SERVICE_HOST`` set). The client's own urllib3 retries are off: nvtopo's
    callers retry with backoff themselves (:mod:`nvtopo.kube.retry`), and two layers of
    retries multiply the wait on a server that does not answer.
    """
    try:
        import yaml
        from kubernetes import client
        from kubernetes import config as kube_config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise NvtopoError(
            "the kubernetes package is not installed (pip install kubernetes)"
        ) from None
    config: Any = kube_config  # the loaders are untyped
    default = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    first = default.split(os.pathsep)[0]
    where = kubeconfig or first
    configuration = client.Configuration()
    try:
        if kubeconfig is not None and not Path(kubeconfig).is_file():
            raise NvtopoError(f"kubeconfig {kubeconfig}: no such file")
        if (
            kubeconfig is None
            and not Path(first).is_file()
            and os.environ.get("KUBERNETES_SERVICE_HOST")
        ):
            where = "in-cluster service account"
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(
                config_file=where, context=context, client_configuration=configuration
            )
    except ConfigException as exc:
        raise NvtopoError(f"kubeconfig {where}: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise NvtopoError(f"kubeconfig {where}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, TypeError, AttributeError, KeyError, ValueError):
        # The loader trusts the file's shape: YAML that is no kubeconfig (a list, a string)
        # fails inside it with a TypeError or AttributeError.
        raise NvtopoError(f"kubeconfig {where}: not a kubeconfig file") from None
    configuration.retries = 0
    return client.ApiClient(configuration)
