"""The HTTP edge against slow and oversized request heads, on a real uvicorn configured as `moneytrail
serve` runs it (collector.serving.uvicorn_config), over raw sockets: httptools alone read 10 MB of
headers and let a client that never finished its head hold the socket forever."""

from __future__ import annotations

import functools
import socket
import time

from collector.serving import uvicorn_config

from .test_serving import HOST, _served

TIMEOUT_S = 1.0
LIMIT = 8192


def _config(app, host, port):
    return uvicorn_config(app, host, port, max_header_bytes=LIMIT, header_timeout_s=TIMEOUT_S)


def _connect(base: str) -> socket.socket:
    port = int(base.rsplit(":", 1)[1])
    sock = socket.create_connection((HOST, port), timeout=10)
    _BUFFERS[sock.fileno()] = bytearray()
    return sock


def _read_response(sock: socket.socket) -> bytes:
    """One response (this test's answers carry content-length), or what came before the close;
    bytes past it (a pipelined next response) stay buffered for the next call."""
    buffered = _BUFFERS.setdefault(sock.fileno(), bytearray())
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        if not chunk:
            data = bytes(buffered)
            buffered.clear()
            return data
        buffered += chunk
    end = buffered.index(b"\r\n\r\n") + 4
    length = next((int(line.split(b":", 1)[1]) for line in bytes(buffered[:end]).split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(buffered) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffered += chunk
    data = bytes(buffered[:end + length])
    del buffered[:end + length]
    return data


_BUFFERS: dict[int, bytearray] = {}


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed the socket within `seconds` (reading whatever it sent first)."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except socket.timeout:
        return False, got
    except ConnectionResetError:
        pass
    return True, got


def _get(path: str = "/healthz", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + extra + b"\r\n"


def test_a_megabyte_of_headers_is_answered_431_and_closed_quickly():
    with _served((), config_of=_config) as (base, _):
        sock = _connect(base)
        started = time.monotonic()
        head = b"GET /healthz HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000)
                                                                   for i in range(1000))
        try:
            sock.sendall(head)  # the server may close before all of it is sent
        except (BrokenPipeError, ConnectionResetError):
            pass
        closed, got = _closed_within(sock, 5)
        assert closed and time.monotonic() - started < 3
        assert got == b"" or got.startswith(b"HTTP/1.1 431 "), got[:100]
        sock.close()
        # a head just over the limit, sent whole, is measured exactly: 431, not a 200 or a 400
        sock = _connect(base)
        sock.sendall(_get(extra=b"X-Pad: " + b"a" * LIMIT + b"\r\n"))
        answer = _read_response(sock)
        assert answer.startswith(b"HTTP/1.1 431 ") and b"request headers over 8192 bytes" in answer
        assert _closed_within(sock, 3)[0]
        sock.close()
        # and the server goes on serving
        sock = _connect(base)
        sock.sendall(_get())
        assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
        sock.close()


def test_a_head_under_the_limit_and_a_large_body_in_the_same_packet_are_served():
    with _served((), config_of=_config) as (base, published):
        sock = _connect(base)
        sock.sendall(_get(extra=b"X-Pad: " + b"a" * (LIMIT - 200) + b"\r\n"))
        assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
        body = b'{"type": "page", "anonymousId": "a", "pad": "' + b"b" * 100_000 + b'"}'
        sock.sendall(b"POST /webhooks/payment/nope HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        answer = _read_response(sock)  # the body's bytes are not the head's: the route answers
        assert answer.startswith(b"HTTP/1.1 401 ") and b"unknown project key" in answer
        sock.close()


def test_a_client_that_never_finishes_its_head_is_disconnected_after_the_timeout():
    with _served((), config_of=_config) as (base, _):
        slow = _connect(base)
        started = time.monotonic()
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        for _ in range(3):  # slowloris: a byte now and then never resets the clock
            time.sleep(TIMEOUT_S / 4)
            slow.sendall(b"a")
        closed, got = _closed_within(slow, 5)
        waited = time.monotonic() - started
        assert closed and got == b"" and TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + 2.5, waited
        silent = _connect(base)  # connects and sends nothing at all
        started = time.monotonic()
        closed, _ = _closed_within(silent, 5)
        assert closed and TIMEOUT_S * 0.9 <= time.monotonic() - started < TIMEOUT_S + 2.5
        slow.close()
        silent.close()


def test_keep_alive_connections_idle_longer_than_the_head_timeout_still_work():
    with _served((), config_of=_config) as (base, _):
        sock = _connect(base)
        for _ in range(3):
            sock.sendall(_get())
            assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(TIMEOUT_S * 1.5)  # idle between requests: uvicorn's keep-alive timeout (5 s) rules
        sock.sendall(_get() + _get())  # pipelined: both answered
        assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
        assert _read_response(sock).startswith(b"HTTP/1.1 200 ")
        sock.close()


def test_the_limits_come_from_the_settings():
    from moneytrail.settings import Settings

    settings = Settings(max_header_bytes=4096, header_timeout_s=2.5)
    config = uvicorn_config(lambda *a: None, HOST, 1, settings.max_header_bytes, settings.header_timeout_s)
    assert (config.http.max_header_bytes, config.http.header_timeout_s) == (4096, 2.5)
    assert (Settings().max_header_bytes, Settings().header_timeout_s) == (16384, 10.0)
