import pytest

from clickhouse.migrate import migrate
from clickhouse.warehouse import ChdbWarehouse


@pytest.fixture(scope="session")
def chdb_wh(tmp_path_factory):
    """The real ClickHouse engine (chDB). One folder per test process: chDB hosts one engine."""
    wh = ChdbWarehouse(tmp_path_factory.mktemp("chdb") / "warehouse")
    migrate(wh)
    yield wh
    wh.close()
