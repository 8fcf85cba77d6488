"""A real threaded HTTP/1.1 file server on 127.0.0.1 with per-path fault injection.

``FaultyHTTPServer`` serves an in-memory dict of files with HEAD/GET, strong ETags and single
byte ranges; faults queued per path make it fail the way real servers and networks do.
``BackgroundHTTPServer``, ``QuietHandler`` and ``parse_range`` are shared with ``hf_hub.py``.
"""

from __future__ import annotations

import hashlib
import socket
import socketserver
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "BackgroundHTTPServer", "Fault", "FaultyHTTPServer", "QuietHandler", "RangeNotSatisfiable",
    "drop_after", "ignore_range", "parse_range", "send_paced", "slow", "status", "wrong_bytes",
]

_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
_INVERT = bytes(255 - i for i in range(256))
_S = TypeVar("_S", bound="BackgroundHTTPServer")


class RangeNotSatisfiable(Exception):
    """The ``Range`` header asks for bytes past the end of the body."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range into ``(start, stop)``.

    Returns None when there is no usable range (absent, malformed or multi-range: the caller
    answers 200 with the whole body, as RFC 9110 allows); raises ``RangeNotSatisfiable``.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[len("bytes=") :].strip().partition("-")
    if not sep or not (first + last).isdigit():
        return None
    if not first:  # suffix range: the last n bytes
        if int(last) == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - int(last)), size
    start = int(first)
    if last and int(last) < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, min(int(last) + 1, size) if last else size


def send_paced(
    wfile: Any, data: bytes | memoryview, bps: float | None, on_sent: Callable[[int], None]
) -> None:
    """Write ``data`` in chunks, at most ``bps`` bytes per second if given.

    Pacing waits *before* each chunk, so a client has the whole body no sooner than
    ``len(data) / bps`` seconds after the headers. ``on_sent(n)`` runs just before each write
    (undone if it fails), so counters are up to date by the time the client has the bytes.
    """
    view = memoryview(data)
    step = max(1, min(64 * 1024, int(bps / 20))) if bps else 1024 * 1024
    start, sent = time.monotonic(), 0
    while sent < len(view):
        piece = view[sent : sent + step]
        if bps:
            delay = start + (sent + len(piece)) / bps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        on_sent(len(piece))  # before the write: a client that has the bytes sees them counted
        try:
            wfile.write(piece)
        except BaseException:
            on_sent(-len(piece))
            raise
        sent += len(piece)


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler that logs nothing and ignores client disconnects."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the per-request stderr log."""

    def handle(self) -> None:
        """Serve the connection; a client that goes away is not an error."""
        try:
            super().handle()
        except _DISCONNECTS:
            self.close_connection = True

    def send_bytes(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """Send a complete small response (no body for HEAD)."""
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class BackgroundHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer bound to an ephemeral port on 127.0.0.1, served from a thread.

    Use ``start()``/``stop()`` or ``with``. The port is bound at construction, so ``base_url``
    is valid before ``start()``. ``stop()`` also closes idle keep-alive connections.
    """

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup (getfqdn)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self.server_port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` with no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        """Track the connection so ``stop()`` can close it."""
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget and close a finished connection."""
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about disconnects; print anything else (a bug in a handler)."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def start(self: _S) -> _S:
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and release the port."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        with self._open_lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


FaultKind = Literal["status", "drop_after", "ignore_range", "slow", "wrong_bytes"]


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour, consumed by the next matching request to its path."""

    kind: FaultKind
    code: int = 0
    headers: tuple[tuple[str, str], ...] = ()
    n: int = 0
    bps: float = 0.0
    methods: frozenset[str] = frozenset({"GET"})


def status(
    code: int, headers: dict[str, str] | None = None, *, methods: tuple[str, ...] = ("GET", "HEAD")
) -> Fault:
    """Answer ``code`` (e.g. 500, 503, 404, 403, 429 + Retry-After) to a GET or HEAD.

    ``methods=("GET",)`` lets a client's HEAD (fsspec's ``info``/``open``) through untouched.
    """
    return Fault("status", code=code, headers=tuple((headers or {}).items()),
                 methods=frozenset(methods))


def drop_after(n: int) -> Fault:
    """Send the headers and the first ``n`` body bytes of a GET, then close the connection."""
    return Fault("drop_after", n=n)


def ignore_range() -> Fault:
    """Answer a GET 200 with the whole body even if it asked for a Range."""
    return Fault("ignore_range")


def slow(bytes_per_second: float) -> Fault:
    """Drip the body of a GET at ``bytes_per_second``."""
    return Fault("slow", bps=float(bytes_per_second))


def wrong_bytes() -> Fault:
    """Serve a GET body of the right length but different content (every byte inverted)."""
    return Fault("wrong_bytes")


class _FileHandler(QuietHandler):
    server: FaultyHTTPServer

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self._serve()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._serve()

    def _serve(self) -> None:
        srv = self.server
        path = unquote(urlsplit(self.path).path)
        range_header = self.headers.get("Range")
        fault = srv.take_fault(path, self.command)
        data = srv.files.get(path)
        if fault is not None and fault.kind == "status":
            srv.record(self.command, path, range_header, fault.code)
            text = f"injected {fault.code}\n".encode()
            return self.send_bytes(fault.code, text, dict(fault.headers))
        if data is None:
            srv.record(self.command, path, range_header, 404)
            return self.send_bytes(404, b"not found\n")
        code, start, stop = 200, 0, len(data)
        if not srv.no_range and not (fault is not None and fault.kind == "ignore_range"):
            try:
                span = parse_range(range_header, len(data))
            except RangeNotSatisfiable:
                srv.record(self.command, path, range_header, 416)
                return self.send_bytes(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            if span is not None:
                code, (start, stop) = 206, span
        body: bytes | memoryview = memoryview(data)[start:stop]
        if fault is not None and fault.kind == "wrong_bytes":
            body = bytes(body).translate(_INVERT)
        srv.record(self.command, path, range_header, code)
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", srv.etag(path, data))
        if not srv.no_range:
            self.send_header("Accept-Ranges", "bytes")
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
        self.end_headers()
        if self.command == "HEAD":
            return
        dropping = fault is not None and fault.kind == "drop_after"
        if dropping:
            body = body[: fault.n]  # type: ignore[union-attr]
        rates = [r for r in (srv.rate_limit_bps, fault.bps if fault else 0) if r]
        send_paced(self.wfile, body, min(rates) if rates else None,
                   lambda n: srv.count_bytes(path, n))
        if dropping:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


class FaultyHTTPServer(BackgroundHTTPServer):
    """In-memory HTTP file server with byte ranges, counters and per-path fault queues.

    ``files`` maps URL paths (``"/dir/x.bin"``) to bytes and may be changed at any time.
    ``rate_limit_bps`` throttles every response body per connection (parallel ranged downloads
    scale with connections); ``no_range=True`` ignores Range and sends no Accept-Ranges.
    """

    def __init__(
        self,
        files: dict[str, bytes] | None = None,
        *,
        rate_limit_bps: float | None = None,
        no_range: bool = False,
    ) -> None:
        super().__init__(_FileHandler)
        self.files: dict[str, bytes] = dict(files or {})
        self.rate_limit_bps = rate_limit_bps
        self.no_range = no_range
        self.bytes_served: Counter[str] = Counter()
        self.requests: list[tuple[str, str, str | None, int]] = []
        self.faults: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()
        self._etags: dict[str, tuple[bytes, str]] = {}

    def url(self, path: str) -> str:
        """Full URL of ``path`` (which starts with ``/``)."""
        return self.base_url + quote(path)

    def inject(self, path: str, *faults: Fault) -> None:
        """Queue ``faults`` for ``path``; each is used up by the next request it applies to."""
        with self._lock:
            self.faults.setdefault(path, deque()).extend(faults)

    def take_fault(self, path: str, method: str) -> Fault | None:
        """Pop the next fault for ``path`` if it applies to ``method``."""
        with self._lock:
            queue = self.faults.get(path)
            if queue and method in queue[0].methods:
                return queue.popleft()
        return None

    def etag(self, path: str, data: bytes) -> str:
        """Strong quoted ETag: sha1 of the content (cached while the content object is the same)."""
        cached = self._etags.get(path)
        if cached is None or cached[0] is not data:
            cached = (data, '"' + hashlib.sha1(data).hexdigest() + '"')
            self._etags[path] = cached
        return cached[1]

    def record(self, method: str, path: str, range_header: str | None, code: int) -> None:
        """Append to ``requests``."""
        with self._lock:
            self.requests.append((method, path, range_header, code))

    def count_bytes(self, path: str, n: int) -> None:
        """Add ``n`` body bytes written for ``path``."""
        with self._lock:
            self.bytes_served[path] += n

    def reset_counters(self) -> None:
        """Clear ``requests``, ``bytes_served`` and pending faults."""
        with self._lock:
            self.requests.clear()
            self.bytes_served.clear()
            self.faults.clear()
