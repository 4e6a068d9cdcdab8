"""Settings shared by every test: hypothesis runs on a loaded 2-core CI machine."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Wall-clock limits per example make property tests flaky on a busy machine; the examples'
# correctness is what is checked, their speed lives in benches/.
settings.register_profile("nvtopo", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nvtopo")
