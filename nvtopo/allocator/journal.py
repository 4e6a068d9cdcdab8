"""The placement journal: what a gang's claims are about to get, written before any claim.

All or nothing across a crash: before the first claim's ``status.allocation`` is written,
the allocator records the whole plan in the :data:`~nvtopo.allocator.gang.JOURNAL_ANNOTATION`
annotation of the gang's first pod (by name). Gates are lifted only after every claim is
written, the first pod's last, and its gate and journal go in one update. So a gang with a
journal is mid-write, and a restarted allocator reads the journal and either finishes (every
planned device that is not written yet is still free) or rolls back (clears the claims it
wrote, then the journal), see :func:`verdict`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nvtopo.allocator.plan import ClaimAllocation
from nvtopo.exceptions import ParseError

__all__ = ["Journal", "Verdict", "decode", "encode", "verdict"]

_VERSION = 1


@dataclass(frozen=True)
class Journal:
    """The claims a gang is getting, and the pods whose gates are to be lifted."""

    claims: tuple[ClaimAllocation, ...]
    pods: tuple[str, ...]


def encode(journal: Journal) -> str:
    """The annotation's value (compact JSON)."""
    return json.dumps(
        {
            "v": _VERSION,
            "pods": list(journal.pods),
            "claims": [c.to_json() for c in journal.claims],
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def decode(text: str, *, namespace: str, where: str) -> Journal:
    """Read an annotation written by :func:`encode`; :class:`ParseError` names ``where``."""
    try:
        data = json.loads(text)
        if data.get("v") != _VERSION:
            raise ValueError(f"version {data.get('v')!r}")
        claims = tuple(
            ClaimAllocation(
                namespace,
                str(c["claim"]),
                str(c["node"]),
                tuple((str(a), str(b), str(p), str(d)) for a, b, p, d in c["results"]),
            )
            for c in data["claims"]
        )
        return Journal(claims, tuple(str(p) for p in data["pods"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"{where}: unreadable placement journal ({exc})") from None


def written(claim: Mapping[str, Any] | None, planned: ClaimAllocation) -> bool | None:
    """True: the claim holds exactly the planned results; False: none; None: other ones."""
    if claim is None:
        return None
    allocation = (claim.get("status") or {}).get("allocation")
    if not allocation:
        return False
    results = tuple(
        (r.get("request"), r.get("driver"), r.get("pool"), r.get("device"))
        for r in (allocation.get("devices") or {}).get("results") or []
    )
    return True if sorted(results) == sorted(planned.results) else None


Verdict = Literal["finish", "rollback"]


def verdict(
    journal: Journal,
    claims: Mapping[tuple[str, str], Mapping[str, Any]],
    busy: frozenset[tuple[str, str]],
) -> Verdict:
    """Finish when every claim not yet written still exists and its devices are free."""
    for c in journal.claims:
        state = written(claims.get((c.namespace, c.claim)), c)
        if state is None:
            return "rollback"  # deleted, or allocated some other way meanwhile
        if state is False and any((pool, dev) in busy for _, _, pool, dev in c.results):
            return "rollback"
    return "finish"
