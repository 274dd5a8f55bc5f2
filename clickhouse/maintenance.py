"""Upkeep the warehouse needs while it runs, done by the sink between batches: superseded credit
versions are deleted every so often (clickhouse/maintenance/superseded_credits.sql)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from .warehouse import Warehouse, WarehouseError

log = logging.getLogger("moneytrail.sink")
SUPERSEDED_CREDITS = (Path(__file__).parent / "maintenance" / "superseded_credits.sql").read_text()


def prune_superseded_credits(wh: Warehouse) -> None:
    wh.command(SUPERSEDED_CREDITS)


class Upkeep:
    """Runs the upkeep at most once every `every_s` seconds (0: never); a failure is logged and
    tried again at the next turn (the warehouse may be down: the sink is retrying anyway)."""

    def __init__(self, wh: Warehouse, every_s: float) -> None:
        self._wh = wh
        self._every_s = every_s
        self._last = time.monotonic()

    def due(self) -> bool:
        return self._every_s > 0 and time.monotonic() - self._last >= self._every_s

    def run(self) -> bool:
        self._last = time.monotonic()
        try:
            prune_superseded_credits(self._wh)
            return True
        except WarehouseError as exc:
            log.warning("pruning superseded credit versions failed (next turn retries): %s", exc)
            return False
