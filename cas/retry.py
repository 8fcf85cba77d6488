"""Backoff schedule and the transient/permanent split of errors. Pure.

Example:
    >>> p = RetryPolicy(attempts=4, base=0.5, cap=4.0, jitter=0.0)
    >>> [p.delay(i) for i in range(4)]
    [0.5, 1.0, 2.0, 4.0]
    >>> p.delay(0, retry_after=3.0)
    3.0
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable
from dataclasses import dataclass

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "503"}
)
TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EAGAIN,
    }
)
_TRANSIENT_NAMES = (
    "ClientPayloadError",
    "ServerDisconnectedError",
    "ClientConnectionError",
    "ClientOSError",
    "IncompleteRead",
    "RemoteDisconnected",
    "ReadTimeout",
    "ConnectTimeout",
    "ConnectError",
    "ReadError",
    "RemoteProtocolError",
    "ResponseStreamingError",
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ProtocolError",
)


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter; `attempts` counts tries, not retries."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.5  # up to this fraction of the delay is randomised away

    def delay(
        self,
        attempt: int,
        retry_after: float | None = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before retry number `attempt` (0-based); honours Retry-After."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        d = min(self.cap, self.base * (2 ** min(attempt, 64)))
        return d * (1 - self.jitter * rand())

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        """True when `exc` is transient and tries remain after try number `attempt` (0-based)."""
        return attempt + 1 < self.attempts and is_transient(exc)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (aiohttp, urllib, httpx, botocore, vvstore)."""
    for attr in ("status", "code", "status_code"):
        v = getattr(exc, attr, None)
        if isinstance(v, int) and 100 <= v < 600:
            return v
    resp = getattr(exc, "response", None)
    v = getattr(resp, "status_code", None)
    if isinstance(v, int):
        return v
    if isinstance(resp, dict):  # botocore ClientError
        v = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return v if isinstance(v, int) else None
    return None


def retry_after_of(exc: BaseException) -> float | None:
    """Seconds from a Retry-After header carried by the exception, if any."""
    explicit = getattr(exc, "retry_after", None)
    if isinstance(explicit, (int, float)):
        return float(explicit)
    headers = getattr(exc, "headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    try:
        value = headers.get("Retry-After") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: dropped connections, timeouts, 5xx, 429. Not: 4xx, missing, mismatch."""
    explicit = getattr(exc, "transient", None)
    if isinstance(explicit, bool):
        return explicit
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, ValueError)):
        return type(exc).__name__ in _TRANSIENT_NAMES
    status = status_of(exc)
    if status is not None:
        return status in TRANSIENT_STATUS
    code = (
        getattr(exc, "response", {}).get("Error", {}).get("Code")
        if isinstance(getattr(exc, "response", None), dict)
        else None
    )
    if code is not None:
        return code in TRANSIENT_S3_CODES
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if type(exc).__name__ in _TRANSIENT_NAMES:
        return True
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient(cause)
