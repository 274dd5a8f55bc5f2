"""Numbered migrations (clickhouse/migrations/NNNN_name.sql), applied once each, in order.

Statements are idempotent (IF NOT EXISTS), so two processes migrating at once cannot break a
database; the schema_migrations table records what ran.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .warehouse import Warehouse

MIGRATIONS = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self) -> list[str]:
        text = "\n".join(
            line for line in self.path.read_text().splitlines() if not line.lstrip().startswith("--")
        )
        return [s.strip() for s in text.split(";") if s.strip()]


def available(folder: Path = MIGRATIONS) -> list[Migration]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migrations share a number in {folder}")
    return found


def applied(wh: Warehouse) -> set[int]:
    wh.command(_LEDGER)
    return {int(r["version"]) for r in wh.rows("SELECT version FROM schema_migrations FINAL")}


def migrate(wh: Warehouse, folder: Path = MIGRATIONS) -> list[Migration]:
    """Apply what has not run yet; return what was applied now."""
    done = applied(wh)
    ran = []
    for mig in available(folder):
        if mig.version in done:
            continue
        for stmt in mig.statements():
            wh.command(stmt)
        wh.insert("schema_migrations", [{"version": mig.version, "name": mig.name}])
        ran.append(mig)
    return ran
