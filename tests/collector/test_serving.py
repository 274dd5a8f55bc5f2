"""The collector behind a real uvicorn server, configured the way `moneytrail serve` runs it
(collector.serving.uvicorn_config): who the client is comes from our trusted_proxies setting only,
never from uvicorn's own X-Forwarded-For handling (which believes 127.0.0.1 by default)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from collector.app import create_app
from collector.ports import CollectorConfig
from collector.serving import EdgeHttpProtocol, uvicorn_config
from schemas.envelope import Envelope
from schemas.project import Project
from tests.conftest import free_port

from .vendors.conftest import fixture_bytes

YOOKASSA_IP = "185.71.76.5"  # in YooKassa's published list; this test's client is 127.0.0.1
HOST = "127.0.0.1"


class _Projects:
    async def by_webhook_secret(self, key: str):
        return Project("shop", "Shop") if key == "whs_t" else None

    async def by_write_key(self, key: str):
        return None


@contextmanager
def _served(trusted: tuple[str, ...], config_of=uvicorn_config, **limits: float) -> Iterator[tuple[str, list]]:
    """The app on a real uvicorn in a thread; yields its base URL and what it published."""
    published: list[Envelope] = []

    async def publish(topic, records):
        published.extend(Envelope.from_bytes(v) for _, v in records)

    async def report(name, project, query):
        raise LookupError(name)

    app = create_app(CollectorConfig(pii_key=b"k" * 32, trusted_proxies=trusted, **limits), _Projects(), publish,
                     report)
    port = free_port()
    server = uvicorn.Server(config_of(app, HOST, port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://{HOST}:{port}", published
    finally:
        server.should_exit = True
        thread.join(15)


def _yookassa(base: str, forwarded_for: str) -> httpx.Response:
    return httpx.post(f"{base}/webhooks/yookassa/whs_t", content=fixture_bytes("yookassa_payment.succeeded.json"),
                      headers={"Content-Type": "application/json", "X-Forwarded-For": forwarded_for}, timeout=10)


def _uvicorn_defaults(app, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning")


def test_the_serving_config_leaves_forwarded_headers_to_the_app():
    config = uvicorn_config(lambda *a: None, HOST, 1)
    assert config.proxy_headers is False
    assert (config.loop, config.access_log) == ("uvloop", False)
    assert issubclass(config.http, EdgeHttpProtocol) and issubclass(config.http, HttpToolsProtocol)


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored_and_a_trusted_proxys_is_used():
    # control: uvicorn's defaults believe 127.0.0.1's X-Forwarded-For, so the allow-list is fooled
    with _served((), _uvicorn_defaults) as (base, published):
        assert _yookassa(base, YOOKASSA_IP).status_code == 200 and len(published) == 1
    # ours: no trusted proxies configured, so the peer (127.0.0.1) is the client whatever it writes
    with _served(()) as (base, published):
        r = _yookassa(base, YOOKASSA_IP)
        assert (r.status_code, r.json()["reason"]) == (403, "origin_not_allowed") and published == []
    # 127.0.0.1 configured as our proxy: its X-Forwarded-For is used (the last hop it did not add itself)
    with _served(("127.0.0.1/32",)) as (base, published):
        assert _yookassa(base, f"203.0.113.9, {YOOKASSA_IP}").status_code == 200 and len(published) == 1
        forged_first_hop = _yookassa(base, f"{YOOKASSA_IP}, 203.0.113.9")
        assert forged_first_hop.status_code == 403 and len(published) == 1


def test_an_untrusted_peer_cannot_dodge_the_per_address_limit_by_rotating_forwarded_for():
    # burst 2 per address: a third request from the same peer is limited, whatever X-Forwarded-For says
    with _served((), rate_limit_ip_rps=1.0) as (base, _):
        codes = [httpx.post(f"{base}/collect", content=b"{}", timeout=10,
                            headers={"Content-Type": "application/json", "X-Write-Key": "wk_x",
                                     "X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(3)]
    assert codes == [401, 401, 429]
    # behind a trusted proxy each forwarded client has its own bucket
    with _served(("127.0.0.1/32",), rate_limit_ip_rps=1.0) as (base, _):
        codes = [httpx.post(f"{base}/collect", content=b"{}", timeout=10,
                            headers={"Content-Type": "application/json", "X-Write-Key": "wk_x",
                                     "X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(3)]
    assert codes == [401, 401, 401]
