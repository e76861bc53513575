"""A fault-injecting HTTP-aware TCP proxy on 127.0.0.1, for testing retries against real servers.

Why: moto and the vault stand-in never fail on their own, and the transfer layer's retry logic
must be shown to work against real sockets: a reset, a silent drop, a stall past the read
timeout, a 500/503, a response cut off mid-body. The proxy sits between boto3 and a loopback
upstream, parses HTTP/1.1 request and response boundaries (Content-Length, chunked, read-to-close;
keep-alive; ``Expect: 100-continue`` answered by the proxy itself), and applies scheduled faults
to whole requests:

  kind           | what the client sees
  drop           | request read, connection closed with no answer (request not forwarded)
  drop_response  | request forwarded and answered upstream, answer thrown away, connection closed
  reset          | request read, connection reset (RST, SO_LINGER 0), not forwarded
  stall          | nothing for ``seconds``, then the request is forwarded if the client is still there
  stall_body     | answer headers and ``after_bytes`` of the body, nothing for ``seconds``, then the rest
  http500        | canned 500 InternalError (S3 XML, or JSON ServiceUnavailableException for "json")
  http503        | canned 503 SlowDown (S3 XML, or JSON ThrottlingException for "json")
  truncate       | answer headers and ``after_bytes`` of the body (default: half), then close
  flip_body      | request forwarded with one byte of its body flipped (damage on the way in:
                 |   what Content-MD5 or a checksum header lets the server refuse)

``proxy.inject("reset", count=2, when=...)``: ``when`` is a regex searched in the request line
(``"^PUT .*partNumber=3"``) or a callable taking a ``RequestInfo``. The first scheduled fault
that matches a request takes it. ``truncate``/``stall_body`` only count when the answer has a
body longer than ``after_bytes``; otherwise they wait for the next matching request.
Counters (``connections``, ``requests``, ``forwarded``, ``passed``, ``injected[kind]``) and
``events`` (outcome, request line) let tests assert that faults really happened.

Only loopback upstreams are accepted. Every socket has a timeout, stalls end on ``stop()``, and
``stop()`` closes every socket. Run alone: ``python3 -m tests.servers.faultproxy --upstream PORT``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import select
import signal
import socket
import struct
import sys
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Iterator
from urllib.parse import urlsplit

KINDS = ("drop", "drop_response", "reset", "stall", "stall_body", "http500", "http503", "truncate", "flip_body")
HEAD_LIMIT = 64 * 1024
PIECE = 64 * 1024

_S3_ERRORS = {
    500: ("Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
    503: ("Slow Down", "SlowDown", "Please reduce your request rate."),
}
_JSON_ERRORS = {
    500: ("Internal Server Error", "ServiceUnavailableException", "Injected internal error", "Server"),
    503: ("Service Unavailable", "ThrottlingException", "Injected throttling", "Client"),
}


class _Closed(Exception):
    """The peer closed (or broke) the connection before a message was complete."""


@dataclass
class RequestInfo:
    """One parsed request head, as given to ``when`` predicates."""

    method: str
    target: str
    version: str
    headers: list

    @property
    def request_line(self) -> str:
        return f"{self.method} {self.target} {self.version}"

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


@dataclass
class Fault:
    """A scheduled fault; ``hits`` counts how often it was actually applied."""

    kind: str
    count: int | None  # None: until cleared
    when: Callable[[RequestInfo], bool] | None
    seconds: float
    after_bytes: int | None
    hits: int = 0
    reserved: int = field(default=0, repr=False)

    def available(self) -> bool:
        return self.count is None or self.hits + self.reserved < self.count


class _Stream:
    """Buffered reads from a socket, enough to find HTTP message boundaries."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(PIECE)
        except (ConnectionError, socket.timeout, OSError):
            return False
        self.buf += data
        return bool(data)

    def read_head(self) -> bytes | None:
        """Bytes up to and including the blank line; None on a clean close before any byte."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[: end + 4])
                del self.buf[: end + 4]
                return head
            if len(self.buf) > HEAD_LIMIT:
                raise _Closed("header section too long")
            if not self._fill():
                if self.buf.strip():
                    raise _Closed("closed inside a header section")
                return None

    def read_line(self) -> bytes:
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[: end + 1])
                del self.buf[: end + 1]
                return line
            if len(self.buf) > HEAD_LIMIT or not self._fill():
                raise _Closed("closed inside a chunk header")

    def pieces(self, n: int) -> Iterator[bytes]:
        """Exactly ``n`` bytes, in pieces as they arrive."""
        while n:
            if not self.buf and not self._fill():
                raise _Closed(f"closed with {n} body bytes missing")
            piece = bytes(self.buf[:n])
            del self.buf[: len(piece)]
            n -= len(piece)
            yield piece

    def until_close(self) -> Iterator[bytes]:
        while self.buf or self._fill():
            piece = bytes(self.buf)
            self.buf.clear()
            yield piece


def _parse_head(head: bytes) -> tuple[list[str], list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) < 3:
        raise _Closed(f"malformed start line: {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return first, headers


def _get(headers: list, name: str) -> str | None:
    name = name.lower()
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _body(stream: _Stream, headers: list, until_close: bool) -> Iterator[bytes]:
    """Raw body bytes of one message (chunk framing included), framed as HTTP/1.1 says."""
    if "chunked" in (_get(headers, "Transfer-Encoding") or "").lower():
        while True:
            line = stream.read_line()
            yield line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:
                    trailer = stream.read_line()
                    yield trailer
                    if trailer in (b"\r\n", b"\n"):
                        return
            yield from stream.pieces(size + 2)
    elif _get(headers, "Content-Length") is not None:
        yield from stream.pieces(int(_get(headers, "Content-Length")))
    elif until_close:
        yield from stream.until_close()


def _head(start_line: str, headers: list, drop: tuple = (), close: bool = False) -> bytes:
    """Serialize a message head, leaving out the ``drop`` headers (lower-case names)."""
    lines = [start_line] + [f"{k}: {v}" for k, v in headers if k.lower() not in drop]
    if close and _get(headers, "Connection") is None:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _wants_close(headers: list) -> bool:
    return "close" in (_get(headers, "Connection") or "").lower()


def _loopback(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"refusing non-loopback upstream {host!r}: the proxy only talks to 127.0.0.1")


class FaultProxy:
    """The proxy. ``upstream``: a port, ``(host, port)`` or ``http://127.0.0.1:PORT`` URL.

    ``flavor`` picks the canned error bodies: ``"s3"`` (XML) or ``"json"`` (vault API).
    ``stall_seconds`` is the default length of stalls; ``idle_timeout`` bounds every socket wait.
    """

    def __init__(
        self,
        upstream: int | tuple[str, int] | str,
        *,
        flavor: str = "s3",
        stall_seconds: float = 5.0,
        idle_timeout: float = 30.0,
        port: int = 0,
    ) -> None:
        if isinstance(upstream, int):
            host, up_port = "127.0.0.1", upstream
        elif isinstance(upstream, str):
            split = urlsplit(upstream)
            host, up_port = split.hostname or "", split.port or 80
        else:
            host, up_port = upstream
        self.upstream = (_loopback(host), int(up_port))
        if flavor not in ("s3", "json"):
            raise ValueError(f"flavor must be 's3' or 'json', not {flavor!r}")
        self.flavor = flavor
        self.stall_seconds = stall_seconds
        self.idle_timeout = idle_timeout
        self.port = port
        self.url: str | None = None
        self.connections = 0  # accepted client connections
        self.requests = 0  # request heads read
        self.forwarded = 0  # requests sent upstream (with or without a fault)
        self.passed = 0  # requests relayed with no fault at all
        self.injected: Counter = Counter()
        self.events: deque = deque(maxlen=10_000)  # (outcome, request line)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._sockets: set = set()
        self._threads: list[threading.Thread] = []
        self._accepter: threading.Thread | None = None

    # ----------------------------------------------------------------- control
    def start(self) -> str:
        """Listen on 127.0.0.1 (port 0: any free port); returns ``http://127.0.0.1:PORT``."""
        if self._listener is not None:
            raise RuntimeError("already started")
        self._stop.clear()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self._accepter = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        self._accepter.start()
        return self.url

    def stop(self) -> None:
        """Stop accepting, end stalls, close every socket, join the threads (bounded)."""
        self._stop.set()
        if self._accepter is not None:
            self._accepter.join(timeout=5)  # after this, no new connection threads appear
            self._accepter = None
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            _close(sock)
        for thread in threads:
            thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._threads = []

    def __enter__(self) -> "FaultProxy":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def inject(
        self,
        kind: str,
        count: int | None = 1,
        *,
        when: str | Callable[[RequestInfo], bool] | None = None,
        seconds: float | None = None,
        after_bytes: int | None = None,
    ) -> Fault:
        """Schedule ``kind`` for the next ``count`` matching requests (None: until ``clear()``)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")
        if isinstance(when, str):
            pattern = re.compile(when)
            when = lambda req: bool(pattern.search(req.request_line))  # noqa: E731
        fault = Fault(kind, count, when, self.stall_seconds if seconds is None else seconds, after_bytes)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Forget every scheduled fault (counters stay)."""
        with self._lock:
            self._faults = []

    def pending(self) -> int:
        """Scheduled fault applications not yet used (unbounded faults count as one)."""
        with self._lock:
            return sum(1 if f.count is None else f.count - f.hits for f in self._faults)

    # ----------------------------------------------------------------- bookkeeping
    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
        if self._stop.is_set():  # opened while stop() was sweeping: close it now
            _close(sock)

    def _forget(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.discard(sock)
        _close(sock)

    def _take(self, req: RequestInfo) -> Fault | None:
        with self._lock:
            self.requests += 1
            for fault in self._faults:
                if fault.available() and (fault.when is None or fault.when(req)):
                    fault.reserved += 1
                    return fault
        return None

    def _settle(self, fault: Fault | None, req: RequestInfo, outcome: str) -> None:
        """Record a request's fate: "applied" (the fault), "passed", or "aborted" (peer gone)."""
        with self._lock:
            if fault is not None:
                fault.reserved -= 1
                if outcome == "applied":
                    fault.hits += 1
                    self.injected[fault.kind] += 1
            if outcome == "passed":
                self.passed += 1
            self.events.append((fault.kind if outcome == "applied" else outcome, req.request_line))

    # ----------------------------------------------------------------- serving
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(self.idle_timeout)
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self.connections += 1
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            self._track(client)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        conn = _Conn(self, client)
        try:
            while not self._stop.is_set() and conn.one_request():
                pass
        except (_Closed, OSError):
            pass
        finally:
            self._forget(conn.upstream)
            self._forget(client)

    def _canned(self, status: int) -> bytes:
        if self.flavor == "s3":
            reason, code, message = _S3_ERRORS[status]
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>{message}</Message>"
                "<RequestId>FAULTPROXY</RequestId><HostId>faultproxy</HostId></Error>"
            ).encode()
            ctype = "application/xml"
        else:
            reason, code, message, kind = _JSON_ERRORS[status]
            body = json.dumps({"code": code, "message": message, "type": kind}).encode()
            ctype = "application/json"
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nx-amz-request-id: FAULTPROXY\r\n"
            "x-amzn-RequestId: FAULTPROXY\r\n\r\n"
        )
        return head.encode() + body


class _Conn:
    """One client connection and its upstream connection, request after request."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.cs = _Stream(client)
        self.upstream: socket.socket | None = None
        self.us: _Stream | None = None
        self._open: tuple | None = None  # (fault, request) not yet settled

    def _settle(self, outcome: str) -> None:
        if self._open is not None:
            fault, req = self._open
            self._open = None
            self.proxy._settle(fault, req, outcome)

    def one_request(self) -> bool:
        """Handle one request; False when the client connection must end."""
        head = self.cs.read_head()
        if head is None:
            return False
        (method, target, version), headers = _parse_head(head)
        req = RequestInfo(method, target, version, headers)
        fault = self.proxy._take(req)
        self._open = (fault, req)
        try:
            return self._handle(req, fault)
        finally:
            self._settle("aborted")

    def _handle(self, req: RequestInfo, fault: Fault | None) -> bool:
        kind = fault.kind if fault else None
        if kind == "stall":
            self._settle("applied")
            if self.proxy._stop.wait(fault.seconds) or not _alive(self.client):
                return False
        elif kind in ("drop", "reset", "http500", "http503"):
            self._continue_if_expected(req)
            for _ in _body(self.cs, req.headers, until_close=False):
                pass
            self._settle("applied")
            if kind == "reset":
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
            if kind == "drop":
                return False
            self.client.sendall(self.proxy._canned(500 if kind == "http500" else 503))
            return not _wants_close(req.headers)
        return self._forward(req, kind)

    def _continue_if_expected(self, req: RequestInfo) -> None:
        if "100-continue" in (req.header("Expect") or "").lower():
            self.client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _connect(self) -> None:
        if self.upstream is not None and _alive(self.upstream):
            return
        self.proxy._forget(self.upstream)
        sock = socket.create_connection(self.proxy.upstream, timeout=self.proxy.idle_timeout)
        self.proxy._track(sock)
        self.upstream, self.us = sock, _Stream(sock)

    def _forward(self, req: RequestInfo, kind: str | None) -> bool:
        """Send the request upstream and relay the answer, applying answer-side faults."""
        self._connect()
        self.upstream.sendall(_head(req.request_line, req.headers, drop=("expect",)))
        self._continue_if_expected(req)
        flip = kind == "flip_body"
        for piece in _body(self.cs, req.headers, until_close=False):
            if flip and piece:  # the first body byte (of the first chunk's framing, if chunked)
                piece, flip = bytes([piece[0] ^ 0x01]) + piece[1:], False
            self.upstream.sendall(piece)
        with self.proxy._lock:
            self.proxy.forwarded += 1
        while True:  # skip interim 1xx answers: the proxy already said 100 Continue itself
            head = self.us.read_head()
            if head is None:
                raise _Closed("upstream closed without answering")
            start, headers = _parse_head(head)
            status = start[1]
            if not status.startswith("1") or status == "101":
                break
        no_body = req.method == "HEAD" or status in ("204", "304")
        pieces = iter(()) if no_body else _body(self.us, headers, until_close=True)
        framed = no_body or _get(headers, "Content-Length") is not None or "chunked" in (
            _get(headers, "Transfer-Encoding") or "").lower()
        # The client's connection lives on its own: an upstream that closes after each answer
        # (werkzeug, hence moto, does) is simply reconnected for the next request.
        keep = framed and not _wants_close(req.headers)
        if kind == "drop_response":
            for _ in pieces:
                pass
            self._settle("applied")
            return False
        cut = self._cut_point(headers) if kind in ("truncate", "stall_body") else None
        if cut is None:  # before the client can see the answer complete
            self._settle("applied" if kind == "flip_body" else "passed")
        drop = ("connection", "keep-alive") if keep else ()
        self.client.sendall(_head(" ".join(start), headers, drop, close=not keep))
        if cut is not None:
            keep = self._relay_with_cut(cut, pieces) and keep
        else:
            for piece in pieces:
                self.client.sendall(piece)
        if _wants_close(headers) or not framed:
            self.proxy._forget(self.upstream)
            self.upstream = self.us = None
        return keep

    def _cut_point(self, headers: list) -> int | None:
        """Body offset where truncate/stall_body strikes; None if the body is too short for it."""
        fault = self._open[0]
        length = _get(headers, "Content-Length")
        cut = fault.after_bytes
        if cut is None:
            cut = int(length) // 2 if length is not None else 1
        if length is not None and int(length) <= cut:
            return None
        return cut

    def _relay_with_cut(self, cut: int, pieces) -> bool:
        """Relay the body, cutting it (truncate) or pausing it (stall_body) after ``cut`` bytes."""
        fault = self._open[0]
        sent = 0
        for piece in pieces:
            if self._open is not None and sent + len(piece) > cut:
                first = cut - sent
                self._settle("applied")
                self.client.sendall(piece[:first])
                if fault.kind == "truncate" or self.proxy._stop.wait(fault.seconds):
                    return False
                piece, sent = piece[first:], cut
            self.client.sendall(piece)
            sent += len(piece)
        self._settle("passed")  # (chunked) body too short to cut: the fault stays scheduled
        return True


def _alive(sock: socket.socket) -> bool:
    """False when the peer has closed (EOF or error pending); never blocks."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return True
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fault-injecting proxy on 127.0.0.1")
    parser.add_argument("--upstream", required=True, help="upstream port or http://127.0.0.1:PORT")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--flavor", choices=("s3", "json"), default="s3")
    args = parser.parse_args(argv)
    upstream = int(args.upstream) if args.upstream.isdigit() else args.upstream
    proxy = FaultProxy(upstream, flavor=args.flavor, port=args.port)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    print(proxy.start(), flush=True)
    while not stopping.wait(0.5):
        pass
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
