"""cas.sources: URLs to readable byte ranges (local, fsspec, and the direct HTTP reader)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import socket
from pathlib import Path

import pytest

from cas.errors import SourceError, UsageError
from cas.sources import (
    FsspecSource,
    HttpSource,
    RangeIgnored,
    open_source,
    resolve_local,
    scheme_of,
)
from tests.servers.http_server import (
    BackgroundHTTPServer,
    FaultyHTTPServer,
    QuietHandler,
    drop_after,
    ignore_range,
    status,
)

# a hang (a deadlock, a download that never ends) fails in a minute, not the global 300 s
pytestmark = pytest.mark.timeout(60)

PAYLOAD = bytes(range(256)) * 64  # 16 KiB, every byte value


def dead_url(path: str = "/x") -> str:
    """A URL on a loopback port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# --- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("s3://bucket/key", "s3"),
        ("S3://bucket/key", "s3"),
        ("hf://org/repo@main/f", "hf"),
        ("https://h/x", "https"),
        ("file:///tmp/x", "file"),
        ("/tmp/x", "file"),
        ("relative/x.onnx", "file"),
        ("gs://b/k", "gs"),
    ],
)
def test_scheme_of(url: str, scheme: str) -> None:
    assert scheme_of(url) == scheme


def test_relative_local_sources_are_relative_to_the_project(tmp_path: Path) -> None:
    assert resolve_local("models/a.onnx", tmp_path) == str(tmp_path / "models/a.onnx")
    assert resolve_local(f"file://{tmp_path}/a.onnx", None) == str(tmp_path / "a.onnx")
    assert resolve_local("/abs/a.onnx", tmp_path) == "/abs/a.onnx"
    assert resolve_local("s3://b/k", tmp_path) == "s3://b/k"


def test_open_source_picks_the_reader() -> None:
    assert isinstance(open_source("http://127.0.0.1:1/x"), HttpSource)
    assert isinstance(open_source("https://127.0.0.1:1/x"), HttpSource)
    # storage options for http mean fsspec's HTTP filesystem (it takes them)
    assert isinstance(
        open_source("http://127.0.0.1:1/x", options={"http": {"block_size": 0}}), FsspecSource
    )
    s3 = open_source("s3://bucket/key", options={"s3": {"endpoint_url": "http://127.0.0.1:1"}})
    assert isinstance(s3, FsspecSource) and s3.options == {"endpoint_url": "http://127.0.0.1:1"}
    assert isinstance(open_source("/tmp/x"), FsspecSource)


def test_display_is_redacted() -> None:
    src = open_source("http://user:secret@127.0.0.1:1/x?token=abc")
    assert "secret" not in src.display and "abc" not in src.display
    assert "127.0.0.1:1/x" in src.display
    s3 = open_source("s3://bucket/k?X-Amz-Signature=sig123&X-Amz-Credential=cred")
    assert "sig123" not in s3.display and "cred" not in s3.display


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_a_missing_backend_names_the_extra_to_install() -> None:
    with pytest.raises(UsageError) as e:
        open_source("gs://bucket/model.onnx").info()
    assert "vvstore[gcs]" in str(e.value)
    assert e.value.exit_code == 2


def test_an_unknown_protocol_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        open_source("nosuchproto://bucket/model.onnx").info()


# --- local and fsspec -------------------------------------------------------------------------


def test_local_file_info_and_ranged_reads(tmp_path: Path) -> None:
    f = tmp_path / "m.bin"
    f.write_bytes(PAYLOAD)
    src = open_source("m.bin", base_dir=tmp_path)
    info = src.info()
    assert info.size == len(PAYLOAD)
    assert info.version is not None  # an mtime: changes when the file does
    assert not src.is_dir()
    assert b"".join(src.read()) == PAYLOAD
    assert b"".join(src.read(1000)) == PAYLOAD[1000:]
    assert b"".join(src.read(1000, 5000)) == PAYLOAD[1000:5000]
    assert b"".join(src.read(len(PAYLOAD) - 1, len(PAYLOAD))) == PAYLOAD[-1:]


def test_file_url(tmp_path: Path) -> None:
    f = tmp_path / "m.bin"
    f.write_bytes(PAYLOAD)
    src = open_source(f"file://{f}")
    assert src.info().size == len(PAYLOAD)
    assert b"".join(src.read()) == PAYLOAD


def test_local_directory_lists_every_file_recursively(tmp_path: Path) -> None:
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_bytes(b"{}")
    (d / "sub" / "w.bin").write_bytes(PAYLOAD)
    src = open_source(str(d))
    assert src.is_dir()
    entries = src.list()
    assert [(e.path, e.size) for e in entries] == [("config.json", 2), ("sub/w.bin", len(PAYLOAD))]
    assert b"".join(entries[1].source.read()) == PAYLOAD


def test_local_missing_file_is_a_permanent_error(tmp_path: Path) -> None:
    from cas.retry import is_transient

    with pytest.raises(FileNotFoundError) as e:
        open_source(str(tmp_path / "nope")).info()
    assert not is_transient(e.value)


def test_fsspec_http_source_reads_ranges(http_server: FaultyHTTPServer) -> None:
    http_server.files["/m.bin"] = PAYLOAD
    src = open_source(http_server.url("/m.bin"), options={"http": {"skip_instance_cache": True}})
    assert isinstance(src, FsspecSource)
    assert src.info().size == len(PAYLOAD)
    assert b"".join(src.read()) == PAYLOAD
    assert b"".join(src.read(100, 300)) == PAYLOAD[100:300]


# --- direct HTTP ------------------------------------------------------------------------------


def test_http_info(http_server: FaultyHTTPServer) -> None:
    http_server.files["/m.bin"] = PAYLOAD
    info = HttpSource(http_server.url("/m.bin")).info()
    assert info.size == len(PAYLOAD)
    assert info.version == hashlib.sha1(PAYLOAD).hexdigest()  # the ETag, unquoted
    assert info.ranges is True
    assert [r[0] for r in http_server.requests] == ["HEAD"]


def test_http_info_without_ranges() -> None:
    with FaultyHTTPServer({"/m.bin": PAYLOAD}, no_range=True) as srv:
        assert HttpSource(srv.url("/m.bin")).info().ranges is False


def test_http_reads_whole_and_ranges(http_server: FaultyHTTPServer) -> None:
    http_server.files["/m.bin"] = PAYLOAD
    src = HttpSource(http_server.url("/m.bin"))
    assert b"".join(src.read()) == PAYLOAD
    assert b"".join(src.read(5000)) == PAYLOAD[5000:]
    assert b"".join(src.read(10, 20)) == PAYLOAD[10:20]
    ranges = [r[2] for r in http_server.requests]
    assert ranges == [None, "bytes=5000-", "bytes=10-19"]
    assert http_server.bytes_served["/m.bin"] == len(PAYLOAD) + len(PAYLOAD) - 5000 + 10


def test_http_range_answered_with_200_is_reported(http_server: FaultyHTTPServer) -> None:
    http_server.files["/m.bin"] = PAYLOAD
    http_server.inject("/m.bin", ignore_range())
    with pytest.raises(RangeIgnored):
        b"".join(HttpSource(http_server.url("/m.bin")).read(100))


@pytest.mark.parametrize("code", [404, 403, 401, 410])
def test_http_client_errors_are_permanent(http_server: FaultyHTTPServer, code: int) -> None:
    http_server.files["/m.bin"] = PAYLOAD
    http_server.inject("/m.bin", status(code))
    with pytest.raises(SourceError) as e:
        HttpSource(http_server.url("/m.bin")).info()
    assert e.value.transient is False
    assert str(code) in e.value.reason
    assert e.value.exit_code == 6


def test_http_missing_file_is_404(http_server: FaultyHTTPServer) -> None:
    with pytest.raises(SourceError) as e:
        HttpSource(http_server.url("/nope")).info()
    assert "404" in e.value.reason and not e.value.transient


@pytest.mark.parametrize("code", [500, 502, 503, 504, 429])
def test_http_server_errors_are_transient(http_server: FaultyHTTPServer, code: int) -> None:
    http_server.files["/m.bin"] = PAYLOAD
    http_server.inject("/m.bin", status(code, {"Retry-After": "2"}))
    with pytest.raises(SourceError) as e:
        b"".join(HttpSource(http_server.url("/m.bin")).read())
    assert e.value.transient is True
    assert e.value.retry_after == 2.0


def test_http_dropped_connection_is_transient(http_server: FaultyHTTPServer) -> None:
    http_server.files["/m.bin"] = PAYLOAD
    http_server.inject("/m.bin", drop_after(1000))
    got = bytearray()
    with pytest.raises(SourceError) as e:
        for chunk in HttpSource(http_server.url("/m.bin")).read():
            got += chunk
    assert e.value.transient is True
    assert bytes(got) == PAYLOAD[:1000]  # what did arrive is good and kept


def test_http_dead_port_is_transient() -> None:
    with pytest.raises(SourceError) as e:
        HttpSource(dead_url()).info()
    assert e.value.transient is True


def test_http_errors_never_show_credentials(http_server: FaultyHTTPServer) -> None:
    url = f"http://user:secret@127.0.0.1:{http_server.port}/nope?token=tok123"
    with pytest.raises(SourceError) as e:
        HttpSource(url).info()
    assert "secret" not in str(e.value) and "tok123" not in str(e.value)


class _BasicAuthHandler(QuietHandler):
    """Serves PAYLOAD only to `Authorization: Basic user:secret`; records what it was sent."""

    seen: list[str | None] = []

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve()

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        auth = self.headers.get("Authorization")
        type(self).seen.append(auth)
        if auth != "Basic " + base64.b64encode(b"user:secret").decode():
            return self.send_bytes(401, b"", {"WWW-Authenticate": 'Basic realm="x"'})
        self.send_bytes(200, PAYLOAD, {"Content-Type": "application/octet-stream"})


def test_http_userinfo_is_sent_as_credentials_not_as_host() -> None:
    """`http://user:pw@host/x` must reach `host` with basic auth, not look up `user:pw@host`
    as a host name (which fails, and leaks the password to the resolver)."""
    _BasicAuthHandler.seen = []
    with BackgroundHTTPServer(_BasicAuthHandler) as srv:
        src = HttpSource(f"http://user:secret@127.0.0.1:{srv.port}/m.bin")
        assert src.info().size == len(PAYLOAD)
        assert b"".join(src.read()) == PAYLOAD
    assert _BasicAuthHandler.seen and all(a is not None for a in _BasicAuthHandler.seen)
    assert "secret" not in src.display


def test_http_url_is_not_a_directory(http_server: FaultyHTTPServer) -> None:
    src = HttpSource(http_server.url("/m.bin"))
    assert src.is_dir() is False
    with pytest.raises(UsageError):
        src.list()


def test_redirect_to_another_host_never_carries_basic_auth() -> None:
    """Regression (docs review): urllib forwards Authorization on every redirect, so a 302 to
    another host received the user's basic-auth password. HEAD must also stay HEAD."""
    import http.server
    import threading

    seen: list[tuple[int, str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:  # noqa: N802
            self.answer()

        def do_GET(self) -> None:  # noqa: N802
            self.answer()

        def answer(self) -> None:
            port = self.server.server_address[1]
            seen.append((port, self.command, self.headers.get("Authorization")))
            if port == first.server_address[1]:
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{second.server_address[1]}/y")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(b"abc")

    first = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    second = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    for srv in (first, second):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        src = HttpSource(f"http://alice:s3cret@127.0.0.1:{first.server_address[1]}/x")
        assert src.info().size == 3
        assert b"".join(src.read()) == b"abc"
    finally:
        for srv in (first, second):
            srv.shutdown()
            srv.server_close()
    to_second = [(method, auth) for port, method, auth in seen if port == second.server_address[1]]
    assert to_second == [("HEAD", None), ("GET", None)]
    assert all(auth is not None for port, _, auth in seen if port == first.server_address[1])
