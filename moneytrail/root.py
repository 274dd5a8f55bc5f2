"""The composition root: the only place that reads settings and wires the parts together."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from clickhouse import reports
from clickhouse.kafka_sink import run_kafka_sink
from clickhouse.migrate import migrate
from clickhouse.projects import ProjectStore, timezone_of
from clickhouse.sink import TABLE_OF_TOPIC, BatchingSink, SinkHealth, warehouse_unavailable
from clickhouse.warehouse import Warehouse, WarehouseError, open_warehouse, short_reason
from collector.app import Edge, create_app
from collector.calltracking import Lease
from collector.ports import CollectorConfig, WarehouseUnavailable
from schemas import topics
from stream_processors.channels import ChannelRules
from stream_processors.embedded import EmbeddedRunner, PersonsRunner, RocksState
from stream_processors.persons import PERSONS_INPUTS, Persons, PersonsConfig
from stream_processors.steps import ProcessorConfig

from .bus import KafkaBus, MemoryBus, SpooledKafkaBus, ensure_topics
from .spool import Spool
from .settings import Settings

log = logging.getLogger("moneytrail")
MAX_RANGE_DAYS = 3660


def load_settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def open_migrated_warehouse(settings: Settings) -> Warehouse:
    wh = open_warehouse(settings.warehouse_url)
    ran = migrate(wh)
    if ran:
        log.info("applied migrations: %s", ", ".join(f"{m.version:04d}_{m.name}" for m in ran))
    return wh


def pii_key(settings: Settings) -> bytes:
    """The key that hashes phones and emails. Every collector of an installation must share it:
    distributed mode requires MONEYTRAIL_PII_KEY; embedded mode keeps one in the data dir."""
    if settings.pii_key:
        if len(settings.pii_key) < 32:
            raise ValueError("MONEYTRAIL_PII_KEY must be at least 32 characters")
        return settings.pii_key.encode()
    if not settings.embedded:
        raise ValueError("distributed mode needs MONEYTRAIL_PII_KEY (the same on every collector)")
    path = settings.data_dir / "pii.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def channel_rules(settings: Settings) -> ChannelRules:
    return ChannelRules.load(settings.channel_rules)


def processor_config(settings: Settings) -> ProcessorConfig:
    return ProcessorConfig(channel_rules(settings), timedelta(minutes=settings.session_timeout_minutes),
                           settings.default_currency)


def persons_config(settings: Settings) -> PersonsConfig:
    return PersonsConfig(lookback=timedelta(days=settings.lookback_days),
                         max_verified_phones=settings.max_verified_phones,
                         lead_repeat=timedelta(days=settings.lead_repeat_days))


def sink_topics() -> tuple[str, ...]:
    return tuple(TABLE_OF_TOPIC)


REPORT_PARAMETERS = ("from", "to", "model", "currency", "lookback_days", "group_by", "margin", "kind", "collapse",
                     "order", "resamples", "seed", "recompute")


def _whole(query: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    try:
        value = int(query.get(key) or default)
    except ValueError:
        raise ValueError(f"{key} must be a whole number") from None
    if not low <= value <= high:
        raise ValueError(f"{key} must be between {low} and {high}")
    return value


def _flag(query: dict[str, str], key: str, hint: str) -> bool:
    value = (query.get(key) or "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ValueError(f"{key} must be true or false{hint}")
    return value in ("true", "1")


def report_request(name: str, project: str, query: dict[str, str], default_currency: str = "KZT",
                   lookback_days: int = 90, lead_repeat_days: int = 30,
                   today: date | None = None, live: reports.LiveRules | None = None) -> reports.ReportRequest:
    """Report parameters from the query string, with clear errors (an unknown one is refused, so a
    typo never silently gives the default). The defaults of the lookback and the repeat-lead rule
    are the live credits' own settings, so a report without parameters gives the live numbers."""
    unknown = sorted(set(query) - set(REPORT_PARAMETERS))
    if unknown:
        raise ValueError(f"unknown parameter {', '.join(unknown)}; parameters: {', '.join(REPORT_PARAMETERS)}")
    try:
        date_to = date.fromisoformat(query["to"]) if query.get("to") else (today or datetime.now(timezone.utc).date())
        date_from = date.fromisoformat(query["from"]) if query.get("from") else date_to - timedelta(days=29)
    except ValueError as exc:
        raise ValueError(f"dates must be YYYY-MM-DD: {exc}") from None
    if date_from > date_to:
        raise ValueError("'from' is after 'to'")
    if (date_to - date_from).days > MAX_RANGE_DAYS:
        raise ValueError(f"a range may span at most {MAX_RANGE_DAYS} days")
    if name not in reports.NAMES:
        raise LookupError(f"no report {name!r}; reports: {', '.join(reports.NAMES)}")
    model = query.get("model") or "last_non_direct"
    if model not in reports.QUERY_TIME_MODELS:
        hint = " (data-driven models are in the datadriven report)" if model in ("markov", "shapley") else ""
        raise ValueError(f"unknown model {model!r}{hint}; use one of {', '.join(reports.QUERY_TIME_MODELS)}")
    group_by = query.get("group_by") or "channel"
    if group_by not in reports.GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(reports.GROUP_BY)}, not {group_by!r}")
    if name == "campaigns" and group_by == "campaign":
        raise ValueError("the campaigns report is grouped by campaign already; group_by: channel or source")
    margin = None
    if query.get("margin"):
        try:
            margin = Decimal(query["margin"])
        except ArithmeticError:
            raise ValueError("margin must be a fraction such as 0.35 (35% gross margin)") from None
        if not (margin.is_finite() and 0 <= margin <= 1):
            raise ValueError("margin must be between 0 and 1 (0.35 = 35% gross margin)")
        if margin.as_tuple().exponent < -6:  # type: ignore[operator]
            raise ValueError("margin may have at most 6 decimals")
    currency = (query.get("currency") or default_currency).upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ValueError("currency must be a 3-letter ISO code such as KZT or RUB")
    try:
        lookback = int(query.get("lookback_days") or lookback_days)
    except ValueError:
        raise ValueError("lookback_days must be a whole number of days") from None
    if not 1 <= lookback <= 3650:
        raise ValueError("lookback_days must be between 1 and 3650")
    kind = query.get("kind") or "sale"
    if kind not in ("sale", "lead"):
        raise ValueError("kind must be sale or lead (the conversions that end a path)")
    collapse = _flag(query, "collapse", "")
    recompute = _flag(query, "recompute", " (true: credit at query time even when the live credits could answer)")
    return reports.ReportRequest(name, project, date_from, date_to, model=model, currency=currency, lookback_days=lookback,
                                 lead_repeat_days=lead_repeat_days,
                                 group_by=group_by, margin=margin, kind=kind, collapse=collapse,
                                 order=_whole(query, "order", 1, 1, 4), resamples=_whole(query, "resamples", 100, 0, 2000),
                                 seed=_whole(query, "seed", 0, 0, 2**31 - 1), recompute=recompute,
                                 live=live)


def settings_report_request(settings: Settings, wh: Warehouse, name: str, project: str,
                            query: dict[str, str]) -> reports.ReportRequest:
    """report_request with this installation's defaults; "today" (the default `to`) is the project's
    local day (its time zone), not the UTC one."""
    today = datetime.now(ZoneInfo(timezone_of(wh, project))).date()
    return report_request(name, project, query, settings.default_currency, settings.lookback_days,
                          settings.lead_repeat_days, today,
                          live=reports.LiveRules(settings.lookback_days, settings.lead_repeat_days))


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@dataclass
class Server:
    """Everything `moneytrail serve` runs in one process."""

    settings: Settings
    warehouse: Warehouse
    projects: ProjectStore
    app: Any  # the ASGI entry point (Edge around the FastAPI app)
    fastapi: FastAPI | None = None
    memory_bus: MemoryBus | None = None
    sink: BatchingSink | None = None
    runner: EmbeddedRunner | None = None
    persons_runner: PersonsRunner | None = None
    background: list[asyncio.Task] = field(default_factory=list)


# The sink's inserts failing for this long makes /readyz 503: a short blip is retried unseen.
SINK_UNREADY_AFTER_S = 30.0


def sink_unready(health: SinkHealth) -> str | None:
    """Why this process is not ready because of its sink, or None."""
    failing = health.failing_for()
    if failing > SINK_UNREADY_AFTER_S:
        return f"warehouse unavailable: the sink's inserts have failed for {failing:.0f}s: {health.last_error}"
    return None


def sink_gauges(health: SinkHealth) -> dict[str, Any]:
    return {
        "moneytrail_sink_failing_seconds": ("Seconds the sink's inserts have been failing (0: writing)", health.failing_for),
        "moneytrail_sink_insert_failures": ("Warehouse inserts that failed since start (each retry counts)",
                                            lambda: health.insert_failures),
        "moneytrail_sink_dead_lettered": ("Rows the warehouse refused, written to dead_letters with its reason",
                                          lambda: health.dead_lettered),
    }


class WarehouseProbe:
    """Whether the warehouse answers, asked every `every_s` in the background by a process without a
    sink (`serve --no-sink`). Its collecting does not need the warehouse (events go to Kafka), so
    /readyz stays 200 (a 503 would take the collector out of the load balancer and stop collection
    while Kafka could hold the events) and says there that the warehouse is unreachable and reports
    answer 503 meanwhile; /metrics has moneytrail_warehouse_up."""

    def __init__(self, wh: Warehouse, every_s: float = 5.0) -> None:
        self.wh, self.every_s = wh, every_s
        self.down_since: float | None = None
        self.last_error = ""

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(asyncio.to_thread(self.wh.rows, "SELECT 1"), self.every_s)
                self.down_since = None
            except (WarehouseError, asyncio.TimeoutError) as exc:
                self.last_error = short_reason(exc) if str(exc) else f"no answer within {self.every_s:.0f}s"
                if self.down_since is None:
                    self.down_since = time.monotonic()
                    log.warning("warehouse unreachable (reports answer 503 until it is back): %s", self.last_error)
            try:
                await asyncio.wait_for(stop.wait(), self.every_s)
            except asyncio.TimeoutError:
                pass

    def notes(self) -> dict[str, Any]:
        if self.down_since is None:
            return {"warehouse": {"ok": True}}
        return {"warehouse": {"ok": False, "detail": (
            f"warehouse unreachable for {time.monotonic() - self.down_since:.0f}s ({self.last_error}): reports "
            "answer 503 until it is back; events are still collected")}}


def build_server(settings: Settings, admin_token: str = "", with_sink: bool | None = None) -> Server:
    """Embedded mode (memory bus): collector + processors + sink + reports in this process.
    Distributed mode (kafka bus): collector + reports; plus the Kafka sink when with_sink (needed
    when the warehouse is a chDB folder, which only its owner may write)."""
    wh = open_migrated_warehouse(settings)
    projects = ProjectStore(wh)
    projects.reload()
    config = CollectorConfig(
        max_event_bytes=settings.max_event_bytes,
        max_request_bytes=settings.max_request_bytes,
        max_batch_events=settings.max_batch_events,
        clock_skew_tolerance_s=settings.clock_skew_tolerance_s,
        admin_token=admin_token,
        pii_key=pii_key(settings),
        default_region=settings.default_region,
        default_currency=settings.default_currency,
        trusted_proxies=settings.trusted_proxies,
        rate_limit_ip_rps=settings.rate_limit_ip_rps,
        rate_limit_key_eps=settings.rate_limit_key_eps,
    )

    async def run_report(name: str, project: str, query: dict[str, str]) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(lambda: reports.run(wh, settings_report_request(settings, wh, name, project, query)))
        except WarehouseError as exc:
            if warehouse_unavailable(exc):  # down or overloaded: 503 + Retry-After, not a 500
                raise WarehouseUnavailable(f"warehouse unavailable: {short_reason(exc)}") from exc
            raise

    server = Server(settings, wh, projects, app=None)  # type: ignore[arg-type]
    gauges: dict[str, Any] = {}
    health: SinkHealth | None = None  # the sink's, when this process runs one: /readyz and /metrics show it
    probe: WarehouseProbe | None = None  # a process with no sink (serve --no-sink) asks the warehouse itself
    if settings.embedded:
        bus = MemoryBus()
        sink = BatchingSink(wh, settings.sink_batch_rows, settings.sink_batch_seconds, settings.credits_prune_minutes * 60)
        runner = EmbeddedRunner(processor_config(settings), bus.publish, RocksState(settings.data_dir / "state" / "visitors"))
        bus.subscribe(topics.RAW, runner.handle_raw)
        persons_store = RocksState(settings.data_dir / "state" / "persons")
        persons_runner = PersonsRunner(Persons(persons_store, persons_config(settings)), bus.publish, persons_store)
        for topic in PERSONS_INPUTS:
            bus.subscribe(topic, persons_runner.handle)
        for topic in sink_topics():
            bus.subscribe(topic, sink.put)
        server.memory_bus, server.sink, server.runner = bus, sink, runner
        health = sink.health
        server.persons_runner = persons_runner

        async def on_start() -> None:
            await sink.start()
            await bus.start()

        async def on_stop() -> None:
            await bus.stop()
            await sink.stop()
            runner.close()
            persons_runner.close()
            wh.close()  # close the engine now, not in interpreter teardown (chDB can crash there)

        publish = bus.publish
    else:
        kafka = SpooledKafkaBus(KafkaBus(settings.kafka_bootstrap, settings.topic_prefix),
                                Spool(settings.data_dir / "spool", max_bytes=settings.spool_max_bytes,
                                      min_free_bytes=settings.spool_min_free_bytes),
                                settings.kafka_ack_timeout_s)
        stop = asyncio.Event()
        sink_wanted = with_sink if with_sink is not None else settings.warehouse_url.startswith("chdb://")
        health = SinkHealth() if sink_wanted else None
        probe = None if sink_wanted else WarehouseProbe(wh)

        async def on_start() -> None:
            try:
                await asyncio.wait_for(ensure_topics(settings.kafka_bootstrap, settings.topic_prefix,
                                                     settings.kafka_partitions, settings.kafka_replication), 15)
            except Exception as exc:  # noqa: BLE001 - the sink and workers create them too
                log.warning("could not check Kafka topics at start (kafka away?): %s", exc)
            await kafka.start()
            if sink_wanted:
                server.background.append(asyncio.create_task(run_kafka_sink(
                    wh, settings.kafka_bootstrap, settings.topic_prefix, settings.sink_group, stop,
                    settings.sink_batch_rows, settings.sink_batch_seconds, settings.credits_prune_minutes * 60,
                    health)))
            if probe is not None:
                server.background.append(asyncio.create_task(probe.run(stop)))

        async def on_stop() -> None:
            await kafka.stop()
            stop.set()
            await asyncio.gather(*server.background, return_exceptions=True)
            wh.close()

        publish = kafka.publish
        gauges = {
            "moneytrail_spool_pending": ("Events in the local spool waiting for Kafka", lambda: kafka.spool.pending),
            "moneytrail_spooled": ("Events spooled because Kafka did not acknowledge in time", lambda: kafka.spooled),
        }
        if probe is not None:
            gauges["moneytrail_warehouse_up"] = ("1 when the warehouse answered the last probe, 0 when not",
                                                 lambda: 0.0 if probe.down_since is not None else 1.0)

    async def load_leases(project_id: str) -> list[Lease]:
        """Leases still running (or in their grace), so a restart does not hand a number to a second
        visitor while the first may still call it."""
        rows = await asyncio.to_thread(
            wh.rows, "SELECT lease_id, tracking_number, anonymous_id, started_at, expires_at FROM leases FINAL"
                     " WHERE project = {p:String} AND matches_until > now64(3)", {"p": project_id})
        return [Lease(r["lease_id"], r["tracking_number"], r["anonymous_id"], _utc(r["started_at"]),
                      _utc(r["expires_at"])) for r in rows]

    if health is not None:
        gauges = {**gauges, **sink_gauges(health)}
    server.fastapi = create_app(config, projects, publish, run_report, on_start, on_stop, gauges, load_leases,
                                not_ready=(lambda: sink_unready(health)) if health is not None else None,
                                readiness_notes=probe.notes if probe is not None else None)
    server.app = Edge(server.fastapi)
    return server
