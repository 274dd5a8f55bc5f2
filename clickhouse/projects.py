"""Projects stored in the warehouse, looked up by key hash through an in-memory cache."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.project import Credentials, Project, key_hash, new_credentials, project_id_of

from .warehouse import Warehouse, WarehouseError


class ProjectExists(ValueError):
    pass


class UnknownProject(LookupError):
    pass


_SELECT = (
    "SELECT project_id, name, origins, write_key_hash, read_token_hash, webhook_secret_hash, vendor_config"
    " FROM projects FINAL WHERE NOT deleted ORDER BY project_id"
)


log = logging.getLogger("moneytrail.projects")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class ProjectStore:
    """Reads are served from a cache refreshed at most once per `min_refresh_s` on a miss, so a
    flood of unknown keys costs one warehouse query per interval, not one per request; and at least
    once per `max_age_s` on a hit, so a change made elsewhere (a rotated key, a webhook secret set by
    the CLI or another collector writing to the same ClickHouse server) reaches every collector
    within that time instead of never."""

    def __init__(self, wh: Warehouse, min_refresh_s: float = 1.0, max_age_s: float = 5.0) -> None:
        self._wh = wh
        self._min_refresh_s = min_refresh_s
        self.max_age_s = max(max_age_s, min_refresh_s)
        self._by_write: dict[str, Project] = {}
        self._by_read: dict[str, Project] = {}
        self._by_hook: dict[str, Project] = {}
        self._by_id: dict[str, Project] = {}
        self._loaded_at = 0.0
        self._refreshing: asyncio.Lock | None = None

    def reload(self) -> None:
        by_write, by_read, by_hook, by_id = {}, {}, {}, {}
        for r in self._wh.rows(_SELECT):
            p = Project(r["project_id"], r["name"], tuple(r["origins"]), orjson.loads(r["vendor_config"] or "{}"))
            by_write[r["write_key_hash"]] = p
            by_read[r["read_token_hash"]] = p
            by_hook[r["webhook_secret_hash"]] = p
            by_id[p.project_id] = p
        self._by_write, self._by_read, self._by_hook, self._by_id = by_write, by_read, by_hook, by_id
        self._loaded_at = time.monotonic()

    async def _refresh_if_stale(self) -> None:
        if time.monotonic() - self._loaded_at < self._min_refresh_s:
            return
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            if time.monotonic() - self._loaded_at >= self._min_refresh_s:
                await asyncio.to_thread(self.reload)

    async def _find(self, index: str, secret: str) -> Project | None:
        h = key_hash(secret)
        found = getattr(self, index).get(h)
        if found is None or time.monotonic() - self._loaded_at >= self.max_age_s:
            try:
                await self._refresh_if_stale()
            except Exception:  # noqa: BLE001 - warehouse away: known keys keep working from the cache
                if found is None:
                    raise
                log.warning("could not refresh projects; serving the cached ones", exc_info=True)
            found = getattr(self, index).get(h)
        return found

    async def by_write_key(self, key: str) -> Project | None:
        return await self._find("_by_write", key)

    async def by_read_token(self, token: str) -> Project | None:
        return await self._find("_by_read", token)

    async def by_webhook_secret(self, secret: str) -> Project | None:
        return await self._find("_by_hook", secret)

    def get(self, project_id: str) -> Project | None:
        if project_id not in self._by_id:
            self.reload()
        return self._by_id.get(project_id)

    def list(self) -> list[Project]:
        self.reload()
        return list(self._by_id.values())

    def create(self, name: str, origins: tuple[str, ...] = ()) -> tuple[Project, Credentials]:
        pid = project_id_of(name)
        if self.get(pid) is not None:
            raise ProjectExists(f"project {pid!r} exists")
        creds = new_credentials()
        self._write(pid, name, origins, creds, created_at=_now())
        self.reload()
        return self._by_id[pid], creds

    def rotate(self, project_id: str) -> Credentials:
        """New write key, read token and webhook secret; the old ones stop working at once."""
        row = self._row(project_id)
        creds = new_credentials()
        row.update(write_key_hash=key_hash(creds.write_key), read_token_hash=key_hash(creds.read_token),
                   webhook_secret_hash=key_hash(creds.webhook_secret))
        self._put(row)
        return creds

    def configure(self, project_id: str, vendor: str, values: dict[str, Any]) -> dict[str, Any]:
        """Merge settings for one vendor (a value of None removes that setting); returns the
        vendor's settings now in force."""
        row = self._row(project_id)
        config = orjson.loads(row["vendor_config"] or "{}")
        merged = {**config.get(vendor, {}), **values}
        config[vendor] = {k: v for k, v in merged.items() if v is not None}
        row["vendor_config"] = orjson.dumps(config).decode()
        self._put(row)
        return config[vendor]

    def set_timezone(self, project_id: str, name: str) -> str:
        """The project's reports count days in this IANA time zone (e.g. Asia/Almaty) from now on."""
        tz = valid_timezone(self._wh, name)
        row = self._row(project_id)
        row["timezone"] = tz
        self._put(row)
        return tz

    def _row(self, project_id: str) -> dict[str, Any]:
        rows = self._wh.rows("SELECT * FROM projects FINAL WHERE project_id = {p:String}", {"p": project_id})
        if not rows:
            raise UnknownProject(project_id)
        return rows[0]

    def _put(self, row: dict[str, Any]) -> None:
        self._wh.insert("projects", [{**row, "updated_at": _now()}])
        self.reload()

    def _write(self, pid: str, name: str, origins: tuple[str, ...], creds: Credentials, created_at: str) -> None:
        self._wh.insert(
            "projects",
            [
                {
                    "project_id": pid,
                    "name": name,
                    "write_key_hash": key_hash(creds.write_key),
                    "read_token_hash": key_hash(creds.read_token),
                    "webhook_secret_hash": key_hash(creds.webhook_secret),
                    "origins": list(origins),
                    "created_at": created_at,
                    "updated_at": _now(),
                    "vendor_config": "{}",
                }
            ],
        )


class UnknownTimezone(ValueError):
    pass


def valid_timezone(wh: Warehouse, name: str) -> str:
    """An IANA zone name both Python and the warehouse engine know (reports convert days in SQL)."""
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        raise UnknownTimezone(f"unknown time zone {name!r}: use an IANA name such as Asia/Almaty or UTC") from None
    try:
        wh.rows("SELECT toTimeZone(now(), {tz:String}) AS now", {"tz": name})
    except WarehouseError:
        raise UnknownTimezone(f"the warehouse does not know the time zone {name!r}") from None
    return name


def timezone_of(wh: Warehouse, project_id: str) -> str:
    """The project's time zone; UTC for a project with none set (or no row: tests, old data)."""
    rows = wh.rows("SELECT timezone FROM projects FINAL WHERE project_id = {p:String} AND NOT deleted",
                   {"p": project_id})
    return rows[0]["timezone"] if rows and rows[0]["timezone"] else "UTC"
