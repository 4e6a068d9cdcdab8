"""ResourceClaimTemplates that make the stock scheduler pick well-connected GPU sets.

The kube-scheduler's DRA allocator takes devices first fit, in slice order, with backtracking
and no scoring. A template from :func:`claim_template` asks for ``k`` GPUs through one request
whose ``firstAvailable`` sub-requests say, best first:

1. ``set<k>`` (k in 2, 4, 8): k devices that share ``topology.nvtopo.dev/set<k>``, i.e. one
   group of Contract 1's partition, so on a free node the optimal k-set;
2. ``island``: k devices that share ``topology.nvtopo.dev/nvlinkIsland`` (one NVLink-connected
   component of the node);
3. ``any``: any k GPUs of the node.

Each ``matchAttribute`` constraint names only its own sub-request (``gpus/set4``), so it binds
only when that alternative is the one being tried. A one-GPU claim is a plain request.

Examples
--------
>>> t = claim_template(gpus=4, name="four")
>>> [s["name"] for s in t["spec"]["spec"]["devices"]["requests"][0]["firstAvailable"]]
['set4', 'island', 'any']
>>> t["spec"]["spec"]["devices"]["constraints"][0]
{'requests': ['gpus/set4'], 'matchAttribute': 'topology.nvtopo.dev/set4'}
"""

from __future__ import annotations

from typing import Any

from nvtopo.dra.attributes import DEFAULT_SET_SIZES, TOPOLOGY_DOMAIN
from nvtopo.dra.limits import DraLimitError, check_dns_subdomain, check_driver_name
from nvtopo.dra.slices import API_VERSION, DEFAULT_DRIVER

__all__ = ["MAX_CLAIM_DEVICES", "REQUEST_NAME", "claim_template"]

#: Name of the claim's one request; sub-requests are ``gpus/set<k>``, ``gpus/island``, ...
REQUEST_NAME = "gpus"
#: Most devices one claim's allocation may hold (the API's AllocationResultsMaxSize).
MAX_CLAIM_DEVICES = 32


def _sub_request(name: str, device_class: str, gpus: int) -> dict[str, Any]:
    return {
        "name": name,
        "deviceClassName": device_class,
        "allocationMode": "ExactCount",
        "count": gpus,
    }


def claim_template(
    *,
    gpus: int,
    name: str,
    namespace: str = "default",
    driver: str = DEFAULT_DRIVER,
    device_class: str | None = None,
) -> dict[str, Any]:
    """A ``resource.k8s.io/v1`` ResourceClaimTemplate asking for ``gpus`` GPUs kept together.

    Parameters
    ----------
    gpus
        GPUs wanted, 1 to 32.
    name, namespace
        The template's name and namespace.
    driver
        The DRA driver that publishes the GPUs (checked as a driver name).
    device_class
        DeviceClass of every request; by default the class :func:`device_classes` makes for
        ``driver`` (named after it).

    Raises
    ------
    DraLimitError
        ``gpus`` out of range, or a name the API would refuse.
    """
    where = f"ResourceClaimTemplate {name!r}"
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 1 <= gpus <= MAX_CLAIM_DEVICES:
        raise DraLimitError(
            f"{where}: gpus={gpus!r} is outside 1..{MAX_CLAIM_DEVICES} (devices one claim holds)"
        )
    check_dns_subdomain(name, what="name", where=where)
    check_dns_subdomain(namespace, what="namespace", where=where, max_length=63)
    check_driver_name(driver, where=where)
    device_class = device_class or driver
    check_dns_subdomain(device_class, what="device class", where=where)

    request: dict[str, Any]
    constraints: list[dict[str, Any]] = []
    if gpus == 1:
        exactly = {"deviceClassName": device_class, "allocationMode": "ExactCount", "count": 1}
        request = {"name": REQUEST_NAME, "exactly": exactly}
    else:
        subs: list[dict[str, Any]] = []
        matches: list[tuple[str, str]] = []
        if gpus in DEFAULT_SET_SIZES:
            matches.append((f"set{gpus}", f"{TOPOLOGY_DOMAIN}/set{gpus}"))
        matches.append(("island", f"{TOPOLOGY_DOMAIN}/nvlinkIsland"))
        for sub, attribute in matches:
            subs.append(_sub_request(sub, device_class, gpus))
            constraints.append({"requests": [f"{REQUEST_NAME}/{sub}"], "matchAttribute": attribute})
        subs.append(_sub_request("any", device_class, gpus))
        request = {"name": REQUEST_NAME, "firstAvailable": subs}
    devices: dict[str, Any] = {"requests": [request]}
    if constraints:
        devices["constraints"] = constraints
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"spec": {"devices": devices}},
    }
