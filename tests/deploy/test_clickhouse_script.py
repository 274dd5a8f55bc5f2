"""deploy/local/clickhouse.sh: a real ClickHouse HTTP server from the chdb wheel, started, found,
stopped and started again with its data, as tests and local distributed runs use it."""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from clickhouse.warehouse import ServerWarehouse, WarehouseError
from tests.conftest import ClickhouseServer, free_port

pytestmark = pytest.mark.integration


def test_start_status_stop_and_restart_keep_the_data(tmp_path):
    server = ClickhouseServer(free_port(), tmp_path / "ch")
    server.start(clean=True)
    try:
        assert server._script("status").returncode == 0
        assert httpx.get(f"http://127.0.0.1:{server.port}/ping", timeout=5).text.strip() == "Ok."
        # a wrong password is refused: the user and password are the configured ones
        bad = httpx.post(f"http://127.0.0.1:{server.port}/", content=b"SELECT 1", auth=("moneytrail", "nope"))
        assert bad.status_code in (401, 403, 516) or "AUTHENTICATION_FAILED" in bad.text
        wh = ServerWarehouse(server.new_database())
        wh.command("CREATE TABLE t (n UInt32) ENGINE = MergeTree ORDER BY n")
        wh.insert("t", [{"n": i} for i in range(5)])

        server.stop()
        assert server._script("status").returncode == 1
        with pytest.raises(WarehouseError):
            wh.rows("SELECT count() AS c FROM t")

        server.start()  # not clean: the same data folder
        assert wh.rows("SELECT count() AS c, sum(n) AS s FROM t") == [{"c": 5, "s": 10}]

        # killed outright, it comes back with every acknowledged insert
        os.kill(int((server.data_dir / "clickhouse.pid").read_text()), signal.SIGKILL)
        server.start()
        assert wh.rows("SELECT count() AS c FROM t") == [{"c": 5}]
        wh.close()
    finally:
        server.stop()
    assert not server.running()


def test_the_url_command_names_the_configured_user_and_database(tmp_path):
    server = ClickhouseServer(free_port(), tmp_path / "ch")
    out = server._script("url")
    assert out.stdout.strip() == f"clickhouse://moneytrail:moneytrail@127.0.0.1:{server.port}/moneytrail"
