"""cas.retry: the backoff schedule and the transient/permanent split. Pure: no I/O, no sleeping."""

from __future__ import annotations

import errno
import http.client

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import (
    AllSourcesFailedError,
    IntegrityError,
    NotFoundError,
    SourceError,
)
from cas.retry import RetryPolicy, is_transient, retry_after_of, status_of

# a hang (a deadlock, a download that never ends) fails in a minute, not the global 300 s
pytestmark = pytest.mark.timeout(60)


class _StatusError(Exception):
    """An HTTP error as aiohttp/urllib libraries carry it: a `.status` attribute."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers or {}


class _Response:
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        self.status_code = status_code
        self.headers = headers or {}


class _HttpxStyleError(Exception):
    """httpx / requests / huggingface_hub: the status is on `.response.status_code`."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.response = _Response(status_code, headers)


class _BotoStyleError(Exception):
    """botocore.ClientError: `.response` is a dict with the error code and HTTP status."""

    def __init__(self, code: str, status: int) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}


# --- the schedule ---------------------------------------------------------------------------


def test_schedule_doubles_from_base_and_is_capped() -> None:
    p = RetryPolicy(attempts=10, base=0.5, cap=4.0, jitter=0.0)
    assert [p.delay(i) for i in range(8)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]


def test_cap_below_base_caps_the_first_delay_too() -> None:
    p = RetryPolicy(base=10.0, cap=3.0, jitter=0.0)
    assert p.delay(0) == 3.0


@pytest.mark.parametrize("attempt", [64, 1023, 1024, 5000, 100_000])
def test_late_attempts_stay_at_the_cap(attempt: int) -> None:
    """A policy with very many attempts must keep answering `cap`, not overflow a float."""
    p = RetryPolicy(attempts=attempt + 2, base=0.5, cap=30.0, jitter=0.0)
    assert p.delay(attempt) == 30.0


def test_jitter_takes_away_at_most_the_jitter_fraction() -> None:
    p = RetryPolicy(base=1.0, cap=100.0, jitter=0.5)
    assert p.delay(2, rand=lambda: 0.0) == 4.0  # no jitter drawn: the full delay
    assert p.delay(2, rand=lambda: 1.0) == pytest.approx(2.0)  # the most jitter: half gone
    assert p.delay(2, rand=lambda: 0.5) == pytest.approx(3.0)


def test_jitter_uses_the_random_source() -> None:
    """Two retries of the same attempt are spread out (not one thundering herd)."""
    p = RetryPolicy(base=1.0, cap=100.0, jitter=0.5)
    draws = iter([0.1, 0.9])
    a, b = p.delay(3, rand=lambda: next(draws)), p.delay(3, rand=lambda: 0.9)
    assert a != b
    # the default random source stays within the bounds too
    for _ in range(200):
        assert 4.0 <= p.delay(3) <= 8.0


def test_retry_after_is_honoured_exactly_without_jitter() -> None:
    p = RetryPolicy(base=0.5, cap=30.0, jitter=0.5)
    assert p.delay(0, retry_after=3.0, rand=lambda: 1.0) == 3.0
    assert p.delay(4, retry_after=0.0) == 0.0


def test_retry_after_is_capped_and_never_negative() -> None:
    p = RetryPolicy(cap=10.0)
    assert p.delay(0, retry_after=3600.0) == 10.0
    assert p.delay(0, retry_after=-5.0) == 0.0


def test_should_retry_counts_tries_not_retries() -> None:
    p = RetryPolicy(attempts=3)
    transient = ConnectionResetError()
    assert [p.should_retry(i, transient) for i in range(4)] == [True, True, False, False]
    assert not RetryPolicy(attempts=1).should_retry(0, transient)


def test_should_retry_never_retries_a_permanent_error() -> None:
    p = RetryPolicy(attempts=100)
    assert not p.should_retry(0, _StatusError(404))
    assert not p.should_retry(0, IntegrityError("digest mismatch"))


@given(
    attempt=st.integers(min_value=0, max_value=5000),
    base=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
    cap=st.floats(min_value=0.0, max_value=600.0, allow_nan=False),
    jitter=st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
    r=st.floats(min_value=0.0, max_value=1.0, exclude_max=True, allow_nan=False),
)
def test_delays_are_always_within_zero_and_cap(
    attempt: int, base: float, cap: float, jitter: float, r: float
) -> None:
    p = RetryPolicy(attempts=attempt + 1, base=base, cap=cap, jitter=jitter)
    d = p.delay(attempt, rand=lambda: r)
    assert 0.0 <= d <= cap
    undisturbed = RetryPolicy(attempts=attempt + 1, base=base, cap=cap, jitter=0.0).delay(attempt)
    assert d <= undisturbed
    assert d >= undisturbed * (1 - jitter) - 1e-9


@given(
    retry_after=st.floats(min_value=-1e6, max_value=1e9, allow_nan=False),
    cap=st.floats(min_value=0.0, max_value=600.0, allow_nan=False),
    attempt=st.integers(min_value=0, max_value=60),
)
def test_retry_after_delays_are_always_within_zero_and_cap(
    retry_after: float, cap: float, attempt: int
) -> None:
    d = RetryPolicy(cap=cap).delay(attempt, retry_after=retry_after)
    assert 0.0 <= d <= cap
    if 0.0 <= retry_after <= cap:
        assert d == retry_after


@given(attempt=st.integers(min_value=0, max_value=30))
def test_schedule_never_decreases(attempt: int) -> None:
    p = RetryPolicy(base=0.25, cap=30.0, jitter=0.0)
    assert p.delay(attempt) <= p.delay(attempt + 1)


# --- transient or permanent -----------------------------------------------------------------


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionResetError(errno.ECONNRESET, "reset by peer"),
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        BrokenPipeError(errno.EPIPE, "broken pipe"),
        TimeoutError("timed out"),
        TimeoutError(),  # socket.timeout is this class
        OSError(errno.ECONNRESET, "reset"),
        OSError(errno.ETIMEDOUT, "timed out"),
        http.client.IncompleteRead(b"partial", 100),
        http.client.RemoteDisconnected("closed"),
        SourceError("http://h/x", "connection closed after 3 of 10 bytes", transient=True),
        _StatusError(500),
        _StatusError(502),
        _StatusError(503),
        _StatusError(504),
        _StatusError(429),
        _StatusError(408),
        _HttpxStyleError(503),
        _HttpxStyleError(429),
        _BotoStyleError("SlowDown", 503),
        _BotoStyleError("InternalError", 500),
    ],
    ids=repr,
)
def test_transient(exc: BaseException) -> None:
    assert is_transient(exc) is True


@pytest.mark.parametrize(
    "exc",
    [
        SourceError("http://h/x", "HTTP 404 Not Found", transient=False),
        SourceError("http://h/x", "HTTP 503", transient=False),  # the source's own word wins
        AllSourcesFailedError("m@1", [("http://h/x", "HTTP 404")]),
        _StatusError(404),
        _StatusError(403),
        _StatusError(401),
        _StatusError(400),
        _StatusError(416),
        _HttpxStyleError(404),
        _HttpxStyleError(403),
        _BotoStyleError("NoSuchKey", 404),
        _BotoStyleError("AccessDenied", 403),
        FileNotFoundError(errno.ENOENT, "no such file"),
        NotFoundError("no such model"),
        PermissionError(errno.EACCES, "denied"),
        IsADirectoryError(errno.EISDIR, "is a directory"),
        IntegrityError("digest mismatch", expected="blake3:aa", actual="blake3:bb"),
        ValueError("bad value"),
        KeyError("x"),
        OSError(errno.ENOSPC, "no space left on device"),
    ],
    ids=repr,
)
def test_permanent(exc: BaseException) -> None:
    assert is_transient(exc) is False


def test_explicit_flag_beats_the_status() -> None:
    e = _StatusError(503)
    e.transient = False  # type: ignore[attr-defined]
    assert not is_transient(e)
    f = _StatusError(404)
    f.transient = True  # type: ignore[attr-defined]
    assert is_transient(f)


def test_a_wrapped_transient_cause_is_transient() -> None:
    try:
        try:
            raise ConnectionResetError(errno.ECONNRESET, "reset")
        except ConnectionResetError as inner:
            raise RuntimeError("read failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
    try:
        try:
            raise FileNotFoundError("gone")
        except FileNotFoundError as inner:
            raise RuntimeError("read failed") from inner
    except RuntimeError as outer:
        assert not is_transient(outer)


def test_aiohttp_errors() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    assert is_transient(aiohttp.ServerDisconnectedError())
    assert is_transient(aiohttp.ClientPayloadError("truncated"))
    info = aiohttp.RequestInfo(
        URL("http://h/x"), "GET", CIMultiDictProxy(CIMultiDict()), URL("http://h/x")
    )
    assert is_transient(aiohttp.ClientResponseError(info, (), status=503))
    assert is_transient(aiohttp.ClientResponseError(info, (), status=429))
    assert not is_transient(aiohttp.ClientResponseError(info, (), status=404))
    assert not is_transient(aiohttp.ClientResponseError(info, (), status=403))


# --- what an error says about itself ---------------------------------------------------------


def test_status_of_reads_every_library_style() -> None:
    assert status_of(_StatusError(503)) == 503
    assert status_of(_HttpxStyleError(404)) == 404
    assert status_of(_BotoStyleError("SlowDown", 503)) == 503
    assert status_of(ValueError("x")) is None
    assert status_of(OSError(errno.ECONNRESET, "x")) is None  # an errno is not a status


def test_retry_after_of() -> None:
    assert retry_after_of(SourceError("u", "HTTP 429", transient=True, retry_after=7.0)) == 7.0
    assert retry_after_of(_StatusError(429, {"Retry-After": "3"})) == 3.0
    assert retry_after_of(_HttpxStyleError(503, {"Retry-After": "0"})) == 0.0
    # an HTTP-date is not seconds: fall back to the schedule
    assert (
        retry_after_of(_StatusError(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None
    )
    assert retry_after_of(_StatusError(503)) is None
    assert retry_after_of(ConnectionResetError()) is None
