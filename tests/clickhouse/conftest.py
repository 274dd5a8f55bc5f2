import pytest

from clickhouse.migrate import migrate
from clickhouse.warehouse import ChdbWarehouse, ServerWarehouse
from tests.conftest import show


def _version(wh) -> str:
    return wh.rows("SELECT version() AS v")[0]["v"]


@pytest.fixture(scope="session")
def chdb_wh(tmp_path_factory):
    """The real ClickHouse engine (chDB). One folder per test process: chDB hosts one engine."""
    wh = ChdbWarehouse(tmp_path_factory.mktemp("chdb") / "warehouse")
    migrate(wh)
    show(f"warehouse tests [chdb]: ClickHouse {_version(wh)} embedded (chDB)")
    yield wh
    wh.close()


@pytest.fixture(scope="session")
def server_wh(clickhouse_server):
    """A ClickHouse server (deploy/local/clickhouse.sh) through clickhouse-connect, a fresh database."""
    wh = ServerWarehouse(clickhouse_server.new_database("whtest"))
    migrate(wh)
    show(f"warehouse tests [server]: ClickHouse {_version(wh)} over HTTP at 127.0.0.1:{clickhouse_server.port} "
         "(clickhouse-connect)")
    yield wh
    wh.close()


@pytest.fixture(scope="session", params=["chdb", "server"])
def wh(request):
    """Both adapters: every warehouse test runs the same SQL files on chDB and on a server."""
    return request.getfixturevalue(f"{request.param}_wh")
