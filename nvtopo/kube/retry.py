"""Retrying Kubernetes API requests: 429 and 5xx with backoff, everything else at once.

A request answered 429 (Too Many Requests: API priority and fairness, or a webhook) or
500/502/503/504 (an apiserver restarting, etcd leader change, a load balancer between) is
tried again, up to :attr:`RetryPolicy.attempts` times in all. The wait before try ``n+1`` is
the server's ``Retry-After`` (header, or ``details.retryAfterSeconds`` of the Status body)
when it gives one, capped at :attr:`RetryPolicy.max_retry_after`; otherwise *full jitter*:
a uniform draw from ``[0, min(max_delay, base * 2**(n-1))]``, which spreads the retries of
many agents hit by one outage instead of bringing them back in lockstep. A connection that
fails (refused, reset, timed out) is retried the same way.

Other answers (404, 409, 422, 403...) are not retried here: the caller decides (the
publisher re-reads on 409). When the tries run out, :class:`KubeApiError` says in one line
which object, which operation, the status and the server's message.

The loop is `tenacity`_'s, a well-kept library for exactly this (stop, wait and retry
conditions, pluggable sleep); only the wait rule above is nvtopo's.

.. _tenacity: https://tenacity.readthedocs.io/

Examples
--------
>>> class Refused(Exception):  # what kubernetes.client's ApiException carries
...     def __init__(self, status, headers=None):
...         self.status, self.reason, self.headers, self.body = status, "", headers or {}, None
>>> policy = RetryPolicy(attempts=3, base=0.5)
>>> delays = []
>>> calls = iter([Refused(503), Refused(429, {"Retry-After": "2"}), "ok"])
>>> def request():
...     answer = next(calls)
...     if isinstance(answer, Exception):
...         raise answer
...     return answer
>>> call_with_retry(request, what="ResourceSlice a", policy=policy, sleep=delays.append,
...                 rng=lambda: 1.0)
'ok'
>>> delays
[0.5, 2.0]
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timezone
from typing import Any, TypeVar

from nvtopo.exceptions import NvtopoError

__all__ = [
    "RETRY_STATUSES",
    "KubeApiError",
    "RetryPolicy",
    "api_message",
    "call_with_retry",
    "is_certificate_error",
    "is_retryable",
    "retry_after",
]

T = TypeVar("T")

#: HTTP statuses worth another try.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class KubeApiError(NvtopoError):
    """A Kubernetes API request failed for good.

    The message is one line: the object, the operation, the HTTP status and the server's
    message. ``status`` is the HTTP status (None when the server could not be reached).
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request.

    Attributes
    ----------
    attempts
        Tries in all, the first included.
    base
        Seconds: the cap of the first backoff draw; it doubles with each try.
    max_delay
        Seconds: the largest backoff draw.
    max_retry_after
        Seconds: the longest ``Retry-After`` honoured (a longer one is cut to this).
    timeout_attempts
        Tries in all when the server took the request but never answered: each such try
        already waited the whole read timeout, so a silent server fails in minutes, not
        ``attempts`` times that.
    """

    attempts: int = 6
    base: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 30.0
    timeout_attempts: int = 2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        if self.base < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("RetryPolicy delays must not be negative")

    def backoff(self, attempt: int, draw: float) -> float:
        """Full-jitter delay after failed try ``attempt`` (1-based), ``draw`` in ``[0, 1]``."""
        cap = min(self.max_delay, self.base * 2.0 ** (attempt - 1))
        return cap * draw


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _is_connection_error(exc: BaseException) -> bool:
    try:
        from urllib3.exceptions import HTTPError
    except ImportError:  # pragma: no cover - the kubernetes client depends on urllib3
        return isinstance(exc, ConnectionError)
    return isinstance(exc, (HTTPError, ConnectionError))


def is_certificate_error(exc: BaseException) -> bool:
    """True when TLS failed (an unknown CA, a wrong host name, an expired certificate).

    Trying again cannot fix that: the same certificate is offered on every try.
    """
    import ssl

    seen: BaseException | None = exc
    for _ in range(6):  # urllib3 wraps it: MaxRetryError.reason → SSLError → SSLCertVerify...
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError) or type(seen).__name__ == "SSLError":
            return True
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else seen.__cause__ or seen.__context__
    return False


def is_retryable(exc: BaseException) -> bool:
    """True for a 429/5xx answer and for a connection that failed (but not on TLS)."""
    status = _status(exc)
    if status is not None and status != 0:
        return status in RETRY_STATUSES
    return _is_connection_error(exc) and not is_certificate_error(exc)


def is_timeout(exc: BaseException) -> bool:
    """True when the server took the request and did not answer within the read timeout."""
    seen: BaseException | None = exc
    for _ in range(4):  # the timeout may come wrapped (MaxRetryError.reason, __cause__)
        if seen is None:
            return False
        if isinstance(seen, TimeoutError) or type(seen).__name__ in ("ReadTimeoutError",):
            return True
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else seen.__cause__ or seen.__context__
    return False


def _header(exc: BaseException, name: str) -> str | None:
    headers = getattr(exc, "headers", None)
    if not headers:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    return str(value) if value is not None else None


def retry_after(exc: BaseException, *, now: float | None = None) -> float | None:
    """Seconds the server asked to wait (``Retry-After`` or the Status body), else None.

    Examples
    --------
    >>> class Refused(Exception):
    ...     status, reason, body = 429, "Too Many Requests", None
    ...     headers = {"Retry-After": "3"}
    >>> retry_after(Refused())
    3.0
    """
    value = _header(exc, "Retry-After")
    if value is not None:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            current = now if now is not None else time.time()
            return max(0.0, when.timestamp() - current)
    body = getattr(exc, "body", None)
    if body:
        try:
            seconds = json.loads(body).get("details", {}).get("retryAfterSeconds")
        except (ValueError, AttributeError, TypeError):
            seconds = None
        if isinstance(seconds, int) and not isinstance(seconds, bool) and seconds >= 0:
            return float(seconds)
    return None


def api_message(exc: BaseException, *, host: str | None = None) -> str:
    """``503 Service Unavailable: <the server's message>`` (or the connection failure).

    The one rendering of an apiserver refusal for every caller (publisher, read-back,
    ComputeDomains); ``host`` names the server in a connection failure.
    """
    status = _status(exc)
    if status is None or status == 0:
        reason = getattr(exc, "reason", None) or exc
        where = f"the apiserver at {host}" if host else "the apiserver"
        if is_certificate_error(exc):
            return f"TLS with {where} failed, not retried ({reason})"
        return f"cannot reach {where} ({reason})"
    detail = None
    body = getattr(exc, "body", None)
    if body:
        try:
            detail = json.loads(body).get("message")
        except (ValueError, AttributeError, TypeError):
            detail = None
    head = f"{status} {getattr(exc, 'reason', '') or ''}".rstrip()
    return f"{head}: {detail}" if detail else head


def call_with_retry(
    fn: Callable[[], T],
    *,
    what: str,
    policy: RetryPolicy | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[BaseException, float], Any] | None = None,
    host: str | None = None,
) -> T:
    """Call ``fn``; retry it on 429/5xx and connection failures as ``policy`` says.

    Parameters
    ----------
    fn
        One API request.
    what
        The object and operation, for the final message (``"create ResourceSlice x"``).
    policy
        Tries and delays (:class:`RetryPolicy` defaults when None).
    sleep
        Called with each delay; a caller that must stop early (SIGTERM) passes a sleep that
        raises.
    rng
        Uniform draws in ``[0, 1)`` for the jitter.
    on_retry
        Called with the error and the delay before each retry (counting, logging).
    host
        The apiserver, named in the message of a connection failure.

    Raises
    ------
    KubeApiError
        The tries ran out, or TLS failed (not retried); one line naming ``what``, the
        status and the server's message.
    Exception
        Anything not retryable (an ``ApiException`` 409, 404, 422...) at once, unchanged.
    """
    from tenacity import RetryCallState, Retrying, retry_if_exception

    rules = policy or RetryPolicy()

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        asked = retry_after(exc) if exc is not None else None
        if asked is not None:
            return min(asked, rules.max_retry_after)
        return rules.backoff(state.attempt_number, rng())

    def before_sleep(state: RetryCallState) -> None:
        # Called only when another try follows (the wait is also computed after the last).
        exc = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None and exc is not None:
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            on_retry(exc, delay)

    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is not None and is_timeout(exc):
            return state.attempt_number >= min(rules.timeout_attempts, rules.attempts)
        return state.attempt_number >= rules.attempts

    retrying = Retrying(
        stop=stop,
        wait=wait,
        retry=retry_if_exception(is_retryable),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(fn)
    except Exception as exc:
        if not is_retryable(exc):
            if _status(exc) is None and _is_connection_error(exc):  # TLS: one line at once
                raise KubeApiError(f"{what}: {api_message(exc, host=host)}") from None
            raise
        tries = min(rules.timeout_attempts, rules.attempts) if is_timeout(exc) else rules.attempts
        gave_up = f"gave up after {tries} tr{'y' if tries == 1 else 'ies'}"
        raise KubeApiError(
            f"{what}: {api_message(exc, host=host)} ({gave_up})",
            status=_status(exc) or None,
        ) from None
