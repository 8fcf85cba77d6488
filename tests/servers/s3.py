"""moto's S3 server on 127.0.0.1, plus a per-request delay proxy for WAN-like benchmarks.

``MotoS3`` runs ``moto.server.ThreadedMotoServer`` on an ephemeral port and hands out a boto3
client, s3fs ``storage_options`` and environment variables for subprocesses. ``delay_proxy``
puts a counting HTTP proxy in front that sleeps a fixed time before forwarding each request.
"""

from __future__ import annotations

import http.client
import logging
import os
import threading
import time
import urllib.request
from types import TracebackType
from typing import Any

from .http_server import BackgroundHTTPServer, QuietHandler

__all__ = ["DelayProxy", "MotoS3"]

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "trailer", "upgrade", "expect"}
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class _ProxyHandler(QuietHandler):
    server: DelayProxy

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._forward()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET  # noqa: N815

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length else None

    def _forward(self) -> None:
        proxy = self.server
        body = self._read_body()
        proxy.count(self.command, self.path)
        time.sleep(proxy.delay)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            resp = upstream.getresponse()
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
            length = resp.getheader("Content-Length")
            streamed = (self.command == "HEAD" or length is not None) and not resp.chunked
            data = b"" if streamed else resp.read()
            self.send_response_only(resp.status, resp.reason)
            for name, value in out:
                if streamed or name.lower() != "content-length":
                    self.send_header(name, value)
            if not streamed:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if not streamed:
                self.wfile.write(data)
                return
            while chunk := resp.read(1024 * 1024):
                self.wfile.write(chunk)
        finally:
            upstream.close()


class DelayProxy(BackgroundHTTPServer):
    """HTTP proxy on 127.0.0.1 adding ``delay`` seconds to every request; counts requests."""

    def __init__(self, upstream_url: str, delay: float) -> None:
        super().__init__(_ProxyHandler)
        host_port = upstream_url.split("://", 1)[1].rstrip("/")
        host, _, port = host_port.partition(":")
        self.upstream_host, self.upstream_port = host, int(port or 80)
        self.delay = delay
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Endpoint URL of the proxy."""
        return self.base_url

    @property
    def request_count(self) -> int:
        """Requests forwarded so far."""
        return len(self.requests)

    def count(self, method: str, path: str) -> None:
        """Record one request."""
        with self._lock:
            self.requests.append((method, path))


class MotoS3:
    """moto's S3 server in a thread on an ephemeral 127.0.0.1 port; ``with`` or start/stop."""

    key = "testing"
    secret = "testing"
    region = "us-east-1"

    def __init__(self) -> None:
        self._server: Any = None
        self.endpoint_url = ""
        self.proxies: list[DelayProxy] = []

    def start(self) -> MotoS3:
        """Start the server (idempotent); returns self."""
        if self._server is None:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._server.start()
            self.endpoint_url = f"http://127.0.0.1:{self._server.get_host_and_port()[1]}"
        return self

    def stop(self) -> None:
        """Stop proxies and the server, releasing the port."""
        self.stop_proxies()
        if self._server is not None:
            self._server.stop()
            self._server._server.server_close()
            self._server = None

    def __enter__(self) -> MotoS3:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Delete every bucket and object (``POST /moto-api/reset``) and zero proxy counters."""
        req = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
        with _NO_PROXY_OPENER.open(req, timeout=30) as resp:
            resp.read()
        for proxy in self.proxies:
            proxy.requests.clear()

    def client(self, endpoint_url: str | None = None, **kwargs: Any) -> Any:
        """A boto3 S3 client for the server (or for ``endpoint_url``, e.g. a delay proxy)."""
        import boto3
        from botocore.config import Config

        config = Config(request_checksum_calculation="when_required",
                        response_checksum_validation="when_required")
        return boto3.client("s3", endpoint_url=endpoint_url or self.endpoint_url,
                            aws_access_key_id=self.key, aws_secret_access_key=self.secret,
                            region_name=self.region, config=config, **kwargs)

    def env(self, endpoint_url: str | None = None) -> dict[str, str]:
        """Environment variables that point boto3/s3fs in a subprocess at the server.

        Unset ``AWS_PROFILE`` (and other ``AWS_*``) in the child: config files are /dev/null.
        """
        return {
            "AWS_ENDPOINT_URL_S3": endpoint_url or self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def storage_options(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """``s3fs.S3FileSystem(**storage_options())`` reaches the server (or ``endpoint_url``)."""
        return {
            "endpoint_url": endpoint_url or self.endpoint_url,
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"region_name": self.region},
            "config_kwargs": {"request_checksum_calculation": "when_required",
                              "response_checksum_validation": "when_required"},
        }

    def delay_proxy(self, delay_seconds: float) -> str:
        """Start a proxy adding ``delay_seconds`` per request; returns its endpoint URL."""
        proxy = DelayProxy(self.endpoint_url, delay_seconds).start()
        self.proxies.append(proxy)
        return proxy.url

    def stop_proxies(self) -> None:
        """Stop every proxy made by ``delay_proxy``."""
        while self.proxies:
            self.proxies.pop().stop()

    @property
    def request_count(self) -> int:
        """Requests that went through this server's delay proxies since the last ``reset``."""
        return sum(p.request_count for p in self.proxies)
