"""A guarded forward proxy: the only way a download reaches the network.

yt-dlp is told to use it for everything (``proxy`` option), so the first request, each redirect and
each request an extractor makes on its own come here. For every request the proxy applies the
:class:`~audiojobs.net.urlguard.UrlPolicy`, resolves the host itself, checks every address and connects
to an address it checked, so a DNS answer cannot change between the check and the connection. It
also enforces a deadline and a byte budget on what flows back, so a server that streams forever is
cut off. It listens on 127.0.0.1 on a free port for the length of one download.

HTTPS goes through ``CONNECT`` (the TLS session is end to end; the proxy sees only the host and
port); plain HTTP is forwarded with ``Connection: close``, one request per connection.
"""

from __future__ import annotations

import logging
import selectors
import socket
import socketserver
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from audiojobs.net.urlguard import Refused, Target, UrlPolicy

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
_HOP_BY_HOP = {"connection", "proxy-connection", "proxy-authorization", "keep-alive", "te", "trailer", "upgrade"}


class _Server(socketserver.ThreadingTCPServer):
    """Remembers its handler threads and their client sockets, so closing it ends every transfer
    still under way (a stream the client stopped reading) and waits for the threads."""

    daemon_threads = True
    allow_reuse_address = True
    proxy: EgressProxy

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.handlers: list[tuple[threading.Thread, socket.socket]] = []

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name="egress-proxy-conn", daemon=True)
        self.handlers.append((thread, request))
        thread.start()

    def close_all(self, timeout: float) -> None:
        self.shutdown()
        for _thread, sock in self.handlers:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        deadline = time.monotonic() + timeout
        for thread, _sock in self.handlers:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.server_close()


class EgressProxy:
    """``with EgressProxy(policy, ...) as proxy:`` then hand ``proxy.url`` to the client library.

    ``refusals`` lists what the guard refused, so the caller can say why a download failed;
    ``bytes_in`` counts what came back from servers.
    """

    def __init__(self, policy: UrlPolicy, *, connect_timeout: float, deadline_seconds: float,
                 max_bytes: int) -> None:
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.deadline = time.monotonic() + deadline_seconds
        self.max_bytes = max_bytes
        self.refusals: list[Refused] = []
        self.cut_off: str | None = None
        self.bytes_in = 0
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def __enter__(self) -> EgressProxy:
        self._server = _Server(("127.0.0.1", 0))
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="egress-proxy", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.close_all(timeout=5)
        self._thread.join(timeout=5)

    # Used by the handler -------------------------------------------------------------------
    def refuse(self, refusal: Refused) -> None:
        with self._lock:
            self.refusals.append(refusal)
        log.warning("egress refused: %s", refusal.message)

    def add_bytes(self, count: int) -> bool:
        """Count bytes from a server; False when the budget is spent."""
        with self._lock:
            self.bytes_in += count
            if self.bytes_in > self.max_bytes:
                self.cut_off = self.cut_off or "size"
                return False
            return True

    def time_left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            with self._lock:
                self.cut_off = self.cut_off or "time"
        return left

    def open(self, target: Target) -> socket.socket:
        """A connection to a checked address of ``target``."""
        errors = []
        for address in self.policy.resolve(target):
            try:
                return socket.create_connection((str(address), target.port),
                                                timeout=min(self.connect_timeout, max(0.1, self.time_left())))
            except OSError as exc:
                errors.append(f"{address}: {exc.strerror or exc}")
        raise OSError("; ".join(errors) or "no address")


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        proxy = self.server.proxy
        client: socket.socket = self.request
        client.settimeout(max(0.1, min(proxy.connect_timeout, proxy.time_left())))
        try:
            head, rest = _read_head(client)
        except (OSError, ValueError):
            return
        try:
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, uri, version = request_line.split(" ", 2)
        except ValueError:
            _reply(client, 400, "Bad Request")
            return
        try:
            if method.upper() == "CONNECT":
                host, _, port = uri.rpartition(":")
                target = proxy.policy.check_target("https", host.strip("[]"), int(port))
            else:
                parts = urlsplit(uri)
                if parts.scheme.lower() != "http" or not parts.hostname:
                    raise Refused("only absolute http URLs may be forwarded", "unsupported_url_scheme")
                target = proxy.policy.check_url(uri)
            upstream = proxy.open(target)
        except Refused as refusal:
            proxy.refuse(refusal)
            _reply(client, 403, "Forbidden by the URL guard", refusal.message)
            return
        except (ValueError, OSError) as exc:
            _reply(client, 502, "Bad Gateway", str(exc))
            return
        with upstream:
            if method.upper() == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                first = rest
            else:
                path = parts.path or "/"
                if parts.query:
                    path += "?" + parts.query
                kept = [h for h in header_lines if h and h.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP]
                first = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""]).encode(
                    "latin-1") + rest
            if first:
                upstream.sendall(first)
            _pipe(client, upstream, proxy)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(8192)
        if not chunk:
            raise ValueError("closed before the request head ended")
        data += chunk
        if len(data) > MAX_HEAD_BYTES:
            raise ValueError("request head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _reply(sock: socket.socket, status: int, reason: str, body: str = "") -> None:
    payload = body.encode()
    try:
        sock.sendall(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(payload)}"
                     f"\r\nConnection: close\r\n\r\n".encode() + payload)
    except OSError:
        pass


def _pipe(client: socket.socket, upstream: socket.socket, proxy: EgressProxy) -> None:
    """Copy both ways until either side closes, the deadline passes or the byte budget is spent."""
    client.setblocking(False)
    upstream.setblocking(False)
    with selectors.DefaultSelector() as sel:
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        while True:
            left = proxy.time_left()
            if left <= 0:
                return
            for key, _ in sel.select(timeout=min(left, 1.0)):
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                dst: socket.socket = key.data
                try:
                    data = src.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                if src is upstream and not proxy.add_bytes(len(data)):
                    return
                try:
                    dst.setblocking(True)
                    dst.settimeout(max(0.1, left))
                    dst.sendall(data)
                    dst.setblocking(False)
                except OSError:
                    return
