"""Settings shared by every test: hypothesis runs on a loaded 2-core CI machine.

Two hypothesis profiles: ``nvtopo`` (default, random examples) and ``ci`` (derandomized,
so a failure reproduces from the same examples, with more of them), chosen by the
``NVTOPO_HYPOTHESIS`` environment variable; ``make test`` runs ``ci``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Wall-clock limits per example make property tests flaky on a busy machine; the examples'
# correctness is what is checked, their speed lives in benches/.
settings.register_profile("nvtopo", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", parent=settings.get_profile("nvtopo"), derandomize=True, max_examples=200
)
PROFILE = os.environ.get("NVTOPO_HYPOTHESIS", "nvtopo")
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """``n`` examples, doubled under the ``ci`` profile (for tests that set their own)."""
    return 2 * n if PROFILE == "ci" else n
