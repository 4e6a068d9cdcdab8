"""The multi-node NVLink fabric section of ``nvidia-smi -q`` (``Fabric`` / ``<fabric>``).

``nvidia-smi`` prints NVML's ``nvmlGpuFabricInfoV_t`` in words; this module turns the words
back into the model's :class:`~nvtopo.model.Fabric`, including the NVML health mask bits
(``NVML_GPU_FABRIC_HEALTH_MASK_*``), so a fabric read from a report equals one read through
NVML on the same GPU.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from nvtopo.model import ZERO_CLUSTER_UUID, Fabric, FabricHealth, FabricState
from nvtopo.model.limits import LIMITS

__all__ = ["read_fabric"]

#: A field reader: the text at a path under the fabric element (None when absent or N/A)
#: and the line it is on.
FieldReader = Callable[[str], tuple[str | None, int | None]]

_STATES: dict[str, FabricState] = {
    "completed": "completed",
    "in progress": "in_progress",
    "not started": "not_started",
    "not supported": "not_supported",
}
_SUMMARIES: dict[str, FabricHealth] = {
    "healthy": "healthy",
    "unhealthy": "unhealthy",
    "limited capacity": "degraded",
}
# (element, bit shift, {text: NVML mask value}); values and shifts from nvml.h.
_TRUE_FALSE = {"true": 1, "false": 2}
_MASK_FIELDS: tuple[tuple[str, int, dict[str, int]], ...] = (
    ("health/bandwidth", 0, {"degraded": 1, "full": 2}),
    ("health/route_recovery_in_progress", 2, _TRUE_FALSE),
    ("health/route_unhealthy", 4, _TRUE_FALSE),
    ("health/access_timeout_recovery", 6, _TRUE_FALSE),
    # Only "None" has a known wording; other configuration faults keep the bits at 0.
    ("health/incorrect_configuration", 8, {"none": 1}),
    ("health/partition_assigned", 12, _TRUE_FALSE),
)
_STRICT_FIELDS = {"health/incorrect_configuration"}


def _mask(field: FieldReader) -> tuple[int, dict[str, int]]:
    mask, values = 0, {}
    for path, shift, words in _MASK_FIELDS:
        text, line = field(path)
        if text is None:
            continue
        value = words.get(text.lower())
        if value is None:
            if path in _STRICT_FIELDS:
                continue
            expected = " or ".join(w.title() for w in words)
            raise ValueError(f"fabric <{path}> is {text!r}, expected {expected} or N/A", line)
        mask |= value << shift
        values[path.rsplit("/", 1)[1]] = value
    return mask, values


def _health(field: FieldReader, values: dict[str, int]) -> FabricHealth:
    text, line = field("health/summary")
    if text is not None:
        health = _SUMMARIES.get(text.lower())
        if health is None:
            raise ValueError(
                f"fabric health summary is {text!r}, expected Healthy, Unhealthy, "
                "Limited Capacity or N/A",
                line,
            )
        return health
    # Drivers before 570 print the health fields without a summary: derive it.
    if values.get("route_unhealthy") == 1:
        return "unhealthy"
    degraded = ("bandwidth", "route_recovery_in_progress", "access_timeout_recovery")
    if any(values.get(name) == 1 for name in degraded):
        return "degraded"
    return "healthy" if values else "unknown"


def _status(text: str | None) -> str:
    # NVML's status is meaningful only once the state is completed; N/A reads as the
    # model's default. Other words are nvmlErrorString() text: map back to the enum name in
    # the snake case the model uses for every source (``insufficient_resources``).
    if text is None or text.lower() == "success":
        return "success"
    word = text.strip()
    if word.upper().startswith("NVML_ERROR_"):
        word = word[len("NVML_ERROR_") :]
    return "_".join(word.lower().split()).replace("-", "_")


def read_fabric(field: FieldReader) -> Fabric:
    """The :class:`Fabric` that the fields of one ``<fabric>`` section describe.

    Raises
    ------
    ValueError
        ``(message, line)`` for a value that cannot be read.
    """
    text, line = field("state")
    state: FabricState = "not_supported"
    if text is not None:
        found = _STATES.get(text.lower())
        if found is None:
            raise ValueError(
                f"fabric <state> is {text!r}, expected Completed, In Progress, Not Started or N/A",
                line,
            )
        state = found
    clique_text, line = field("cliqueId")
    clique_id = 0
    if clique_text is not None:
        if not clique_text.isdigit():
            raise ValueError(f"fabric <cliqueId> is {clique_text!r}, not a number", line)
        clique_id = int(clique_text)
        highest = LIMITS["cliqueId"].maximum
        if clique_id > highest:
            # NVML's clique id is an unsigned int; a larger one would be written to JSON that
            # the schema (and so `file:`) refuses.
            raise ValueError(f"fabric <cliqueId> is {clique_id}, more than {highest}", line)
    cluster_text, line = field("clusterUuid")
    cluster_uuid = ZERO_CLUSTER_UUID
    if cluster_text is not None:
        try:
            cluster_uuid = str(uuid.UUID(cluster_text))
        except ValueError:
            raise ValueError(
                f"fabric <clusterUuid> is {cluster_text!r}, not a UUID", line
            ) from None
    mask, values = _mask(field)
    return Fabric(
        cluster_uuid=cluster_uuid,
        clique_id=clique_id,
        state=state,
        status=_status(field("status")[0]),
        health=_health(field, values),
        health_mask=mask,
    )
