"""`moneytrail` command line. Each command builds what it needs through the composition root."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

from . import root
from .local import DataDirLock, RunningServer, running_server

app = typer.Typer(help="moneytrail: end-to-end marketing analytics, self-hosted.", no_args_is_help=True)
projects_app = typer.Typer(help="Projects and their keys.", no_args_is_help=True)
app.add_typer(projects_app, name="projects")
console = Console(width=None if sys.stdout.isatty() else 200)  # piped output keeps whole columns
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="local state folder (MONEYTRAIL_DATA_DIR)")


class _Repeats(logging.Filter):
    """The same message from a client library at most once per interval: a Kafka outage makes
    aiokafka log each reconnect attempt, hundreds of thousands of lines a minute."""

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        import time

        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self._interval_s:
            return False
        if len(self._last) > 10_000:
            self._last.clear()
        self._last[key] = now
        return True


def _quiet_client_loggers() -> None:
    """The worker's logging is Faust's (its own handlers, without our _Repeats): filter each Kafka
    client logger itself, so a broker outage is a line per message every 10 s, not ~800 lines a
    second. A logger's filter sees only its own records, hence one filter per module logger."""
    import aiokafka  # noqa: F401 - imports its modules, which create their loggers

    repeats = _Repeats()
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("aiokafka", "kafka")):
            logging.getLogger(name).addFilter(repeats)


def _logging(level: str) -> None:
    import json as _json

    class _Json(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            out = {"t": self.formatTime(record), "level": record.levelname, "logger": record.name,
                   "msg": record.getMessage()}
            if record.exc_info:
                out["exc"] = self.formatException(record.exc_info)
            return _json.dumps(out, ensure_ascii=False)

    handler = logging.StreamHandler()
    handler.setFormatter(_Json())
    handler.addFilter(_Repeats())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _server_or_none(settings: Any) -> RunningServer | None:
    """A running server that owns the chDB folder, if any (then we must go through it)."""
    if not settings.warehouse_url.startswith("chdb://"):
        return None
    return running_server(settings.data_dir)


def _admin_call(server: RunningServer, method: str, path: str, **kw: Any) -> Any:
    resp = httpx.request(method, server.url + path, headers={"Authorization": f"Bearer {server.admin_token}"},
                         timeout=30, **kw)
    body = resp.json()
    if resp.status_code >= 400:
        err.print(f"[red]{body.get('reason')}: {body.get('detail')}[/red]")
        raise typer.Exit(1)
    return body


def _graceful_server_class():  # noqa: ANN202 - uvicorn is imported lazily
    import contextlib
    import time

    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn re-raises SIGTERM after its graceful shutdown, so the process dies 'killed by
        signal' even when it drained cleanly; we exit 0 after a clean drain instead.

        SIGTERM first drains (Snowplow's preTerminationPeriod): `draining` is set (/readyz answers
        503) and requests are still served for `drain_seconds`, so a load balancer sees the 503
        and stops sending before the listener closes; then uvicorn's graceful shutdown. A second
        signal, or SIGINT (Ctrl-C), stops at once."""

        def __init__(self, config: Any, drain_seconds: float = 0.0, draining: Any = None) -> None:
            super().__init__(config)
            self.drain_seconds = drain_seconds
            self.draining = draining  # a threading.Event the app's /readyz reads
            self.drain_until: float | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if (sig == signal.SIGTERM and self.drain_seconds > 0 and self.draining is not None
                    and self.drain_until is None and not self.should_exit):
                self.draining.set()
                self.drain_until = time.monotonic() + self.drain_seconds
                return
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            if self.drain_until is not None and time.monotonic() >= self.drain_until:
                self.should_exit = True
            return await super().on_tick(counter)

        @contextlib.contextmanager
        def capture_signals(self):  # noqa: ANN202
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer


@app.command()
def serve(
    data_dir: Optional[Path] = DataDir,
    host: Optional[str] = typer.Option(None, help="listen address (MONEYTRAIL_HOST)"),
    port: Optional[int] = typer.Option(None, help="listen port (MONEYTRAIL_PORT)"),
    sink: Optional[bool] = typer.Option(None, "--sink/--no-sink", help="distributed mode: also run the Kafka->warehouse sink here (default: when the warehouse is chDB)"),
) -> None:
    """Run the collector, reports and (embedded mode) processors and warehouse in this process."""
    from collector.serving import uvicorn_config

    _GracefulServer = _graceful_server_class()
    settings = root.load_settings(data_dir=data_dir, host=host, port=port)
    _logging(settings.log_level)
    lock = DataDirLock(settings.data_dir)
    lock.acquire()
    try:
        admin = lock.publish_server(settings.base_url)
        server = root.build_server(settings, admin_token=admin, with_sink=sink)
        mode = "embedded" if settings.embedded else f"distributed (bus {settings.bus})"
        err.print(f"moneytrail {mode}: collector and reports on {settings.base_url}, warehouse {settings.warehouse_display}")
        _GracefulServer(uvicorn_config(server.app, settings.host, settings.port, settings.max_header_bytes,
                                       settings.header_timeout_s),
                        settings.drain_seconds, server.fastapi.state.draining if server.fastapi else None).run()
    finally:
        lock.release()


@app.command()
def demo(
    data_dir: Path = typer.Option(Path("moneytrail-demo"), "--data-dir", help="a folder of its own for the demo"),
    host: str = typer.Option("127.0.0.1", help="listen address"),
    port: int = typer.Option(8080, help="listen port"),
    seed: int = typer.Option(42, help="the same seed gives the same business"),
    days: int = typer.Option(90, help="days of history"),
    scale: float = typer.Option(1.0, help="volume: 1.0 is ~4 500 visitors, ~120 sales"),
    load_only: bool = typer.Option(False, "--load-only", help="load, print the numbers and stop (no serving)"),
    reload: bool = typer.Option(False, "--reload", help="load again although the demo is already there"),
) -> None:
    """Load a realistic business (Mebel Almaty: an online furniture shop in Almaty, tenge, 90 days of ads,
    visits, forms, calls, WhatsApp chats, CRM deals, payments and refunds) through the public HTTP
    interfaces, then serve the dashboard."""
    import threading
    import time

    from rich.progress import Progress

    from . import demo as demo_business

    _GracefulServer = _graceful_server_class()
    from collector.serving import uvicorn_config

    settings = root.load_settings(data_dir=data_dir, host=host, port=port)
    _logging("warning")
    lock = DataDirLock(settings.data_dir)
    lock.acquire()
    outcome: dict[str, Any] = {}
    try:
        admin = lock.publish_server(settings.base_url)
        server = root.build_server(settings, admin_token=admin)
        plan = demo_business.generate(seed=seed, days=days, scale=scale)
        name = "Mebel Almaty"
        existing = server.projects.get("mebel-almaty")
        skip_load = existing is not None and not reload
        if existing is None:
            project, creds = server.projects.create(name, ("http://127.0.0.1:%d" % port,))
        else:  # keys are shown once: a re-run gets fresh ones
            project, creds = existing, server.projects.rotate(existing.project_id)
        for vendor, values in demo_business.vendor_settings(plan).items():
            server.projects.configure(project.project_id, vendor, values)
        credentials = {"project": project.project_id, "write_key": creds.write_key, "read_token": creds.read_token,
                       "webhook_secret": creds.webhook_secret}
        uv = _GracefulServer(uvicorn_config(server.app, settings.host, settings.port, settings.max_header_bytes,
                                            settings.header_timeout_s))

        def load_then_announce() -> None:
            while not uv.started:
                time.sleep(0.05)
            if skip_load:
                err.print(f"the demo is already loaded in {settings.data_dir} (--reload loads it again); new keys:")
                console.print(f"dashboard:  {settings.base_url}/dashboard#token={credentials['read_token']}")
                console.print(f"read token: {credentials['read_token']}")
                if load_only:
                    uv.should_exit = True
                return
            try:
                with Progress(console=err, transient=True) as bar:
                    task = bar.add_task("loading Mebel Almaty through the public API", total=None)
                    outcome["result"] = demo_business.load(
                        plan, settings.base_url, credentials,
                        progress=lambda done, total: bar.update(task, completed=done, total=total),
                        ground_truth_path=settings.data_dir / "demo-ground-truth.json")
            except Exception as exc:  # noqa: BLE001 - shown, then the server stops
                outcome["error"] = exc
                uv.should_exit = True
                return
            time.sleep(1.0)  # the sink writes within 0.5 s
            r = outcome["result"]
            s = r.summary
            err.print(f"[green]loaded[/green] {r.events} events in {r.requests} requests "
                      f"({s.get('seconds', 0):.1f} s); ground truth: {r.ground_truth_path}")
            console.print(f"dashboard:  {settings.base_url}/dashboard#token={credentials['read_token']}")
            console.print(f"read token: {credentials['read_token']}")
            console.print(f"write key:  {credentials['write_key']}")
            if load_only:
                uv.should_exit = True
            else:
                err.print("serving; Ctrl-C stops")

        threading.Thread(target=load_then_announce, daemon=True, name="demo-load").start()
        uv.run()
    finally:
        lock.release()
    if "error" in outcome:
        err.print(f"[red]demo load failed: {outcome['error']}[/red]")
        raise typer.Exit(1)


@app.command()
def worker(data_dir: Optional[Path] = DataDir) -> None:
    """Distributed mode: a Faust worker running the stream processors."""
    settings = root.load_settings(data_dir=data_dir)
    if settings.embedded:
        err.print("[red]worker needs MONEYTRAIL_BUS=kafka://host:port (embedded mode runs processors inside serve)[/red]")
        raise typer.Exit(2)
    import faust
    from stream_processors.faust_app import build_app

    state_dir = settings.data_dir / "faust"
    state_dir.mkdir(parents=True, exist_ok=True)
    faust_app = build_app(settings.kafka_bootstrap, settings.topic_prefix, state_dir,
                          root.processor_config(settings), settings.worker_id, settings.worker_web_port,
                          settings.kafka_partitions, root.persons_config(settings), settings.worker_stall_seconds)
    err.print(f"moneytrail worker: Faust app {settings.worker_id} consuming from {settings.bus}")
    _quiet_client_loggers()
    faust.Worker(faust_app, loglevel=settings.log_level.upper()).execute_from_commandline()


@app.command("sink")
def sink_cmd(data_dir: Optional[Path] = DataDir) -> None:
    """Distributed mode: consume processed topics from Kafka into the warehouse."""
    from clickhouse.kafka_sink import run_kafka_sink

    from .bus import ensure_topics

    settings = root.load_settings(data_dir=data_dir)
    _logging(settings.log_level)
    lock = DataDirLock(settings.data_dir)
    if settings.warehouse_url.startswith("chdb://"):
        lock.acquire()
    wh = root.open_migrated_warehouse(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await ensure_topics(settings.kafka_bootstrap, settings.topic_prefix, settings.kafka_partitions,
                            settings.kafka_replication)
        await run_kafka_sink(wh, settings.kafka_bootstrap, settings.topic_prefix, settings.sink_group, stop,
                             settings.sink_batch_rows, settings.sink_batch_seconds, settings.credits_prune_minutes * 60)

    err.print(f"moneytrail sink: {settings.bus} -> {settings.warehouse_display}")
    try:
        asyncio.run(main())
    finally:
        wh.close()
        lock.release()


@app.command("migrate")
def migrate_cmd(data_dir: Optional[Path] = DataDir) -> None:
    """Apply the warehouse migrations that have not run yet."""
    from clickhouse.migrate import migrate as run_migrations
    from clickhouse.warehouse import open_warehouse

    settings = root.load_settings(data_dir=data_dir)
    if _server_or_none(settings):
        console.print("the running server applied migrations at start-up; nothing to do")
        return
    wh = open_warehouse(settings.warehouse_url)
    ran = run_migrations(wh)
    wh.close()
    console.print("applied: " + (", ".join(f"{m.version:04d}_{m.name}" for m in ran) or "nothing (up to date)"))


def _with_store(settings: Any):  # noqa: ANN202
    from clickhouse.projects import ProjectStore

    wh = root.open_migrated_warehouse(settings)
    return wh, ProjectStore(wh)


@projects_app.command("create")
def projects_create(
    name: str,
    origin: list[str] = typer.Option([], "--origin", help="allowed website origin, e.g. https://shop.kz (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Create a project; prints its write key, read token and webhook secret ONCE."""
    settings = root.load_settings(data_dir=data_dir)
    server = _server_or_none(settings)
    if server:
        out = _admin_call(server, "POST", "/api/admin/projects", json={"name": name, "origins": origin})
    else:
        from clickhouse.projects import ProjectExists

        wh, store = _with_store(settings)
        try:
            project, creds = store.create(name, tuple(origin))
        except (ProjectExists, ValueError) as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1)
        finally:
            wh.close()
        out = {"project": project.project_id, "name": project.name, "origins": list(project.origins),
               "write_key": creds.write_key, "read_token": creds.read_token, "webhook_secret": creds.webhook_secret}
    if as_json:
        print(orjson.dumps(out).decode())
        return
    for key, value in out.items():
        console.print(f"[bold]{key}[/bold]: {value}")
    console.print("[yellow]Keep these now: only their hashes are stored.[/yellow]")


@projects_app.command("list")
def projects_list(data_dir: Optional[Path] = DataDir, as_json: bool = typer.Option(False, "--json")) -> None:
    """List projects (never their keys)."""
    settings = root.load_settings(data_dir=data_dir)
    server = _server_or_none(settings)
    if server:
        rows = _admin_call(server, "GET", "/api/admin/projects")
    else:
        wh, store = _with_store(settings)
        rows = [{"project": p.project_id, "name": p.name, "origins": list(p.origins)} for p in store.list()]
        wh.close()
    if as_json:
        print(orjson.dumps(rows).decode())
        return
    table = Table("project", "name", "origins")
    for r in rows:
        table.add_row(r["project"], r["name"], " ".join(r["origins"]))
    console.print(table)


@projects_app.command("rotate-key")
def projects_rotate(name: str, data_dir: Optional[Path] = DataDir, as_json: bool = typer.Option(False, "--json")) -> None:
    """New keys for a project; the old ones stop working at once."""
    from schemas.project import project_id_of

    settings = root.load_settings(data_dir=data_dir)
    pid = project_id_of(name)
    server = _server_or_none(settings)
    if server:
        out = _admin_call(server, "POST", f"/api/admin/projects/{pid}/rotate")
    else:
        from clickhouse.projects import UnknownProject

        wh, store = _with_store(settings)
        try:
            creds = store.rotate(pid)
        except UnknownProject:
            err.print(f"[red]no project {pid!r}[/red]")
            raise typer.Exit(1)
        finally:
            wh.close()
        out = {"project": pid, "write_key": creds.write_key, "read_token": creds.read_token,
               "webhook_secret": creds.webhook_secret}
    if as_json:
        print(orjson.dumps(out).decode())
    else:
        for key, value in out.items():
            console.print(f"[bold]{key}[/bold]: {value}")


@projects_app.command("configure")
def projects_configure(
    name: str = typer.Argument(..., help="project name or id"),
    vendor: str = typer.Argument(..., help="stripe, yookassa, cloudpayments, payment, amocrm, bitrix24, crm, calls, calltouch, ringostat, whatsapp, telegram, or calltracking (the number pool)"),
    settings_: list[str] = typer.Argument(None, metavar="KEY=VALUE...", help="values are text; [..] and {..} are JSON lists and mappings, true/false switches; KEY= removes the setting"),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Set a vendor's settings for a project: signing secrets, account ids, field mappings.
    Values are never printed back; the answer lists the keys in force."""
    from collector.vendors.registry import CONFIGURABLE
    from schemas.project import project_id_of

    if vendor not in CONFIGURABLE:
        err.print(f"[red]unknown vendor {vendor!r}; vendors: {', '.join(CONFIGURABLE)}[/red]")
        raise typer.Exit(2)
    values: dict[str, Any] = {}
    for item in settings_ or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            err.print(f"[red]{item!r} is not KEY=VALUE[/red]")
            raise typer.Exit(2)
        if raw == "":
            values[key] = None
            continue
        if raw[:1] in ("[", "{") or raw in ("true", "false"):  # lists, mappings, switches
            try:
                values[key] = orjson.loads(raw)
                continue
            except orjson.JSONDecodeError:
                pass
        values[key] = raw  # everything else stays text: a secret of digits is still a secret
    pid = project_id_of(name)
    keys = _change_project(data_dir, pid, f"vendors/{vendor}", values,
                           lambda store: {"settings": sorted(store.configure(pid, vendor, values))})["settings"]
    console.print(f"{pid} {vendor}: " + (", ".join(keys) or "no settings"))


@projects_app.command("timezone")
def projects_timezone(
    name: str = typer.Argument(..., help="project name or id"),
    zone: str = typer.Argument(..., help="IANA time zone, e.g. Asia/Almaty, Europe/Moscow, UTC"),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """The time zone of the project's report days (from/to, spend days, cohort months)."""
    from schemas.project import project_id_of

    pid = project_id_of(name)
    zone = _change_project(data_dir, pid, "timezone", {"timezone": zone},
                           lambda store: {"timezone": store.set_timezone(pid, zone)})["timezone"]
    console.print(f"{pid}: report days in {zone}")


def _change_project(data_dir: Optional[Path], pid: str, admin_path: str, payload: dict[str, Any],
                    change: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """One change to a project: through the running server's admin API (it owns the chDB folder),
    else on the project store directly. Unknown project: exit 1; a refused value: exit 2."""
    settings = root.load_settings(data_dir=data_dir)
    server = _server_or_none(settings)
    if server:
        return _admin_call(server, "POST", f"/api/admin/projects/{pid}/{admin_path}", json=payload)
    from clickhouse.projects import UnknownProject

    wh, store = _with_store(settings)
    try:
        return change(store)
    except UnknownProject:
        err.print(f"[red]no project {pid!r}[/red]")
        raise typer.Exit(1)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2)
    finally:
        wh.close()


@app.command()
def replay(
    project: Optional[str] = typer.Option(None, help="only this project (default: all)"),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Re-process the kept raw events with the current channel rules and session settings."""
    from .replay import replay as run_replay, replay_rebuilding_persons

    settings = root.load_settings(data_dir=data_dir)
    if _server_or_none(settings):
        err.print("[red]stop `moneytrail serve` first: it owns the chDB folder (replay needs it alone)[/red]")
        raise typer.Exit(2)
    wh = root.open_migrated_warehouse(settings)
    rebuild = settings.embedded and project is None  # then live credits follow the new rules too

    def progress(n: int) -> None:
        err.print(f"replayed {n} events", end="\r")

    try:
        if rebuild:
            result = replay_rebuilding_persons(wh, root.processor_config(settings), root.persons_config(settings),
                                               settings.data_dir / "state", progress)
        else:
            result = run_replay(wh, root.processor_config(settings), project, progress=progress)
    finally:
        wh.close()
    if not rebuild and settings.embedded:
        err.print("[yellow]one project replayed: its live credits keep the old rules until a replay of all projects "
                  "rebuilds the persons stage (query-time reports follow the new rules now)[/yellow]")
    elif not settings.embedded:
        err.print("[yellow]distributed mode: the workers' persons state is not rebuilt; live credits follow the new "
                  "rules for new events (query-time reports follow them for all)[/yellow]")
    console.print(f"replayed {result.events} events of {len(result.projects)} project(s) in {result.seconds:.1f}s: "
                  + ", ".join(f"{k} {v}" for k, v in sorted(result.rows.items())))


def _import_rows(kind: str, file: Path, write_key: str, url: Optional[str], data_dir: Optional[Path]) -> None:
    settings = root.load_settings(data_dir=data_dir)
    if url is None:
        server = running_server(settings.data_dir)
        url = server.url if server else settings.base_url
    if not file.is_file():
        err.print(f"[red]no file {file}[/red]")
        raise typer.Exit(2)
    ctype = "application/json" if file.suffix.lower() == ".json" else "text/csv"
    try:
        resp = httpx.post(f"{url.rstrip('/')}/api/{kind}", content=file.read_bytes(), timeout=60,
                          headers={"Content-Type": ctype, "X-Write-Key": write_key})
    except httpx.HTTPError as exc:
        err.print(f"[red]the collector at {url} did not answer: {exc}[/red]")
        raise typer.Exit(1)
    body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    if resp.status_code >= 400:
        err.print(f"[red]{resp.status_code} {body.get('reason', '')}: {body.get('detail', resp.text[:300])}[/red]")
        for line in (body.get("errors") or [])[1:20]:
            err.print(f"[red]  {line}[/red]")
        raise typer.Exit(1)
    console.print(f"imported {body.get('rows')} {kind} rows ({body.get('from')} .. {body.get('to')}), "
                  f"import {body.get('import_id')}: a re-import of a day and source replaces it")


@app.command("import-spend")
def import_spend(
    file: Path = typer.Argument(..., help="CSV (date,source,medium,campaign,ad,keyword,cost,currency,clicks,impressions) or JSON rows"),
    write_key: str = typer.Option(..., "--write-key", envvar="MONEYTRAIL_WRITE_KEY", help="the project's write key"),
    url: Optional[str] = typer.Option(None, help="collector URL (default: the local server)"),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Import ad (and other channel) spend through POST /api/spend; errors name the row."""
    _import_rows("spend", file, write_key, url, data_dir)


@app.command("import-rates")
def import_rates(
    file: Path = typer.Argument(..., help="CSV (date,currency,base,rate) or JSON rows"),
    write_key: str = typer.Option(..., "--write-key", envvar="MONEYTRAIL_WRITE_KEY", help="the project's write key"),
    url: Optional[str] = typer.Option(None, help="collector URL (default: the local server)"),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Import currency rates per day through POST /api/rates."""
    _import_rows("rates", file, write_key, url, data_dir)


@app.command()
def report(
    name: str = typer.Argument(..., help="channels, campaigns, models, live, quality, cohorts, ltv, funnel, paths, "
                                          "datadriven, reconciliation, identity"),
    project: Optional[str] = typer.Option(None, help="project id (needed when there are several)"),
    date_from: Optional[str] = typer.Option(None, "--from", help="first day YYYY-MM-DD"),
    date_to: Optional[str] = typer.Option(None, "--to", help="last day YYYY-MM-DD (inclusive)"),
    model: str = typer.Option("last_non_direct"),
    currency: Optional[str] = typer.Option(None, help="ISO code (default MONEYTRAIL_DEFAULT_CURRENCY)"),
    lookback_days: Optional[int] = typer.Option(None, "--lookback-days", help="attribution window (default MONEYTRAIL_LOOKBACK_DAYS, 90)"),
    group_by: Optional[str] = typer.Option(None, "--group-by", help="channel | source | campaign"),
    margin: Optional[str] = typer.Option(None, help="gross margin 0..1 (ROMI in the channels report)"),
    option: list[str] = typer.Option([], "--option", "-o", help="other report parameters as key=value "
                                                                 "(kind, collapse, order, resamples, seed)"),
    fmt: str = typer.Option("table", "--format", help="table | json | csv"),
    data_dir: Optional[Path] = DataDir,
) -> None:
    """Print a report as a table (with a total row), JSON or CSV."""
    from collector.routes.reports import csv_of

    settings = root.load_settings(data_dir=data_dir)
    query = {k: str(v) for k, v in {"from": date_from, "to": date_to, "model": model, "currency": currency,
                                    "lookback_days": lookback_days, "group_by": group_by, "margin": margin}.items() if v}
    for item in option:
        key, sep, value = item.partition("=")
        if not sep:
            err.print(f"[red]--option wants key=value, got {item!r}[/red]")
            raise typer.Exit(2)
        query[key.strip()] = value.strip()
    server = _server_or_none(settings)
    if server:
        if project is None:
            listed = _admin_call(server, "GET", "/api/admin/projects")
            project = _only_project([p["project"] for p in listed])
        result = _admin_call(server, "GET", f"/api/reports/{name}", params={**query, "project": project})
    else:
        from clickhouse import reports

        wh, store = _with_store(settings)
        try:
            project = project or _only_project([p.project_id for p in store.list()])
            try:
                result = reports.run(wh, root.settings_report_request(settings, wh, name, project, query))
            except (LookupError, ValueError) as exc:
                err.print(f"[red]{exc}[/red]")
                raise typer.Exit(2)
        finally:
            wh.close()
    if fmt == "json":
        print(orjson.dumps(result).decode())
    elif fmt == "csv":
        print(csv_of(result), end="")
    else:
        _print_table(result)


def _only_project(ids: list[str]) -> str:
    if len(ids) == 1:
        return ids[0]
    err.print("[red]name the project with --project: " + (", ".join(ids) or "there are none yet") + "[/red]")
    raise typer.Exit(2)


def _print_table(result: dict[str, Any]) -> None:
    rows, total = result["rows"], result.get("total") or {}
    columns: list[str] = []
    for row in rows + [total]:
        columns.extend(k for k in row if k not in columns)
    labels = [c for c in columns if c not in total]  # key columns: blank in the total row
    if not labels:
        columns.insert(0, "")
        labels = [""]
    table = Table(title=f"{result['report']} {result['from']}..{result['to']} ({result['model']}, {result['currency']})",
                  show_footer=True)
    for col in columns:
        numeric = col not in labels
        table.add_column(col, footer=_cell(total.get(col, "")) if numeric else ("Total" if col == labels[0] else ""),
                         justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(_cell(row.get(c, "")) for c in columns))
    how = result.get("attribution")
    if how:  # where the credits came from: the live ones, or credited at query time (and why)
        table.caption = (f"credited by the live processors (as of {how['credited_at']} UTC)"
                         if how["computed"] == "live credits" else f"credited at query time: {how.get('why', '')}")
    console.print(table)


def _cell(value: Any) -> str:
    return "—" if value is None else str(value)


def main() -> None:
    from clickhouse.warehouse import WarehouseError

    try:
        app()
    except WarehouseError as exc:  # e.g. the ClickHouse server is away: one line, and an exit code a supervisor acts on
        typer.echo(f"moneytrail: the warehouse is unavailable: {exc}", err=True)
        raise SystemExit(69) from None  # EX_UNAVAILABLE
