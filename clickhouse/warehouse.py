"""The warehouse port and its two adapters. Both run the same SQL files.

- ChdbWarehouse: the real ClickHouse engine embedded in this process (chDB). Only one process may
  open a data folder at a time: the process that owns it (`moneytrail serve`, or `sink`) is the
  one that reads and writes; other commands talk to that process over HTTP.
- ServerWarehouse: a ClickHouse server through clickhouse-connect.

Methods are blocking; async callers wrap them in a thread.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Iterable, Protocol
from urllib.parse import unquote, urlsplit

import orjson

# Same output on both engines: decimals as strings (money is never a float), 64-bit ints as numbers.
_READ_SETTINGS = {
    "output_format_json_quote_decimals": 1,
    "output_format_decimal_trailing_zeros": 1,  # "150000.00", not "150000": money keeps its cents
    "output_format_json_quote_64bit_integers": 0,
    "do_not_merge_across_partitions_select_final": 1,
    # Hash-table sizes remembered from earlier queries steer the planner's join-side swap; on the
    # report queries it then built the hash table from 10M touches instead of 1M persons, making
    # every repeated run ~2x slower than the first (bench/reports.py). Plan each query afresh.
    "collect_hash_table_stats_during_joins": 0,
}
_INSERT_SETTINGS = {"date_time_input_format": "best_effort", "input_format_skip_unknown_fields": 1}
# chDB runs the insert in this process: one parsing thread is enough for a sink batch, and leaves
# the cores to the processors (measured: same rows/s, less CPU per row)
_CHDB_INSERT_SETTINGS = {"max_threads": 1, "input_format_parallel_parsing": 0}
_TOKEN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


class WarehouseError(RuntimeError):
    """The warehouse refused or could not run a statement."""


class Warehouse(Protocol):
    def command(self, sql: str, params: dict[str, Any] | None = None) -> None: ...
    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...
    def insert(self, table: str, rows: Iterable[dict[str, Any]], token: str | None = None) -> None: ...
    def close(self) -> None: ...


def _json_lines(rows: Iterable[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def _check(table: str, token: str | None) -> None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
        raise ValueError(f"bad table name {table!r}")
    if token is not None and not _TOKEN.match(token):
        raise ValueError(f"bad deduplication token {token!r}")


def _literal(value: Any) -> str:
    """A list element as a ClickHouse literal (strings quoted and escaped, numbers as they are)."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"no ClickHouse literal for {type(value).__name__} in an array parameter")
    return repr(value)


def _chdb_params(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """chDB takes query parameters as text in ClickHouse's own syntax: an array is its literal.
    (clickhouse-connect renders Python lists itself; text there would be escaped as one string.)"""
    if not params:
        return None
    return {k: _literal(v) if isinstance(v, (list, tuple)) else v for k, v in params.items()}


class ChdbWarehouse:
    def __init__(self, path: str | Path) -> None:
        import chdb  # imported here: the server adapter must not need it

        self._path = Path(path)
        self._path.mkdir(parents=True, exist_ok=True)
        settings = "&".join(f"{k}={v}" for k, v in _READ_SETTINGS.items())
        self._url = f"{self._path}?{settings}"
        self._chdb = chdb
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._columns: dict[str, set[str]] = {}  # per table, for positional inserts
        try:
            self._conn()  # opens the engine now, so a second owner fails at start, not later
        except Exception as exc:  # chdb raises RuntimeError with the engine's message
            raise WarehouseError(f"cannot open chDB folder {self._path}: {exc}") from exc

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise WarehouseError("warehouse is closed")
            conn = self._chdb.connect(self._url)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _run(self, sql: str, params: dict[str, Any] | None) -> bytes:
        try:
            res = self._conn().query(sql, "JSONEachRow", params=_chdb_params(params))
        except Exception as exc:
            raise WarehouseError(str(exc)) from exc
        return res.bytes() if hasattr(res, "bytes") else bytes(res)

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._run(sql, params)

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        out = self._run(sql, params)
        return [orjson.loads(line) for line in out.splitlines() if line]

    def insert(self, table: str, rows: Iterable[dict[str, Any]], token: str | None = None) -> None:
        _check(table, token)
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        settings = {**_INSERT_SETTINGS, **_CHDB_INSERT_SETTINGS,
                    **({"insert_deduplication_token": token} if token else {})}
        clause = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in settings.items())
        columns = self._uniform_columns(table, rows)
        if columns is None:  # rows of different shapes: the engine matches each row's keys
            sql, data = f"INSERT INTO {table} SETTINGS {clause} FORMAT JSONEachRow\n", _json_lines(rows)
        else:  # one shape: positional values parse ~1.5x cheaper than keyed ones (bench/reports.py)
            sql = f"INSERT INTO {table} ({', '.join(columns)}) SETTINGS {clause} FORMAT JSONCompactEachRow\n"
            data = b"".join(orjson.dumps([r[c] for c in columns]) + b"\n" for r in rows)
        try:
            self._conn().query(sql + data.decode(), "JSONEachRow")
        except Exception as exc:
            raise WarehouseError(str(exc)) from exc

    def _uniform_columns(self, table: str, rows: list[dict[str, Any]]) -> list[str] | None:
        """The batch's columns when every row has the same keys (the sink's rows do; values are
        taken by name), without the keys the table lacks (as input_format_skip_unknown_fields
        drops them); None otherwise."""
        first = rows[0].keys()
        if any(r.keys() != first for r in rows):
            return None
        keys = list(first)
        known = self._columns.get(table)
        if known is None or not known.issuperset(keys):  # first insert, or a migration added columns
            known = self._columns[table] = {r["name"] for r in self.rows(
                "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
                {"t": table})}
        return [k for k in keys if k in known]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # closing is best effort; the engine stops with the last one
                pass


class ServerWarehouse:
    def __init__(self, url: str) -> None:
        import clickhouse_connect

        u = urlsplit(url)
        secure = u.scheme in ("clickhouses", "https")
        host, port = u.hostname or "127.0.0.1", u.port or (8443 if secure else 8123)
        database = (u.path or "/").strip("/") or "default"
        try:  # the client asks the server for its version at once: a server that is away fails here
            self._client = clickhouse_connect.get_client(
                host=host,
                port=port,
                username=unquote(u.username or "default"),
                password=unquote(u.password or ""),
                database=database,
                secure=secure,
                settings=_READ_SETTINGS,
                autogenerate_session_id=False,
            )
        except Exception as exc:
            raise WarehouseError(f"cannot reach the ClickHouse server at {host}:{port} (database {database}): "
                                 f"{short_reason(exc)}") from exc

    def command(self, sql: str, params: dict[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=params)
        except Exception as exc:
            raise WarehouseError(str(exc)) from exc

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            out = self._client.raw_query(sql, parameters=params, fmt="JSONEachRow")
        except Exception as exc:
            raise WarehouseError(str(exc)) from exc
        return [orjson.loads(line) for line in out.splitlines() if line]

    def insert(self, table: str, rows: Iterable[dict[str, Any]], token: str | None = None) -> None:
        _check(table, token)
        data = _json_lines(rows)
        if not data:
            return
        settings: dict[str, Any] = dict(_INSERT_SETTINGS)
        if token:
            settings["insert_deduplication_token"] = token
        try:
            self._client.raw_insert(table, insert_block=data, fmt="JSONEachRow", settings=settings)
        except Exception as exc:
            raise WarehouseError(str(exc)) from exc

    def close(self) -> None:
        self._client.close()


def short_reason(exc: BaseException) -> str:
    """The part of a warehouse error a person needs (clickhouse-connect's are several lines long,
    with the URL and a query id)."""
    text = " ".join(str(exc).split())
    for marker in ("Connection refused", "Name or service not known", "timed out", "AUTHENTICATION_FAILED",
                   "UNKNOWN_DATABASE"):
        if marker in text:
            return marker.lower().replace("_", " ")
    return text[:300]


def open_warehouse(url: str) -> Warehouse:
    """chdb:///abs/path, chdb://rel/path, clickhouse://user:pass@host:8123/db (clickhouses:// TLS)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "chdb":
        return ChdbWarehouse(url.split("://", 1)[1] or "./moneytrail-data/warehouse")
    if scheme in ("clickhouse", "clickhouses", "http", "https"):
        return ServerWarehouse(url)
    raise ValueError(f"unknown warehouse URL {url!r}: use chdb:///path or clickhouse://host:8123/db")
