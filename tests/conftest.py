"""Shared test helpers: real parts are started or found here; under CI=true a missing part fails
the test instead of skipping it."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
KAFKA_PORT = int(os.environ.get("MONEYTRAIL_TEST_KAFKA_PORT", "19092"))
CLICKHOUSE_PORT = int(os.environ.get("MONEYTRAIL_TEST_CLICKHOUSE_PORT", "18123"))


def missing_part(why: str) -> None:
    """A real part is not there: fail under CI, skip on a developer's machine."""
    if IN_CI:
        pytest.fail(f"required part missing under CI: {why}")
    pytest.skip(why)  # reached only off CI: under CI=true the line above fails the test


_HANDED_OUT: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port no one listens on, chosen BELOW the kernel's ephemeral range: a port the kernel hands
    out (bind to 0) is also what any outgoing connection may take a moment later, so a server that
    binds it later, or binds it again after a restart, can find it taken (CI once failed so: the
    Kafka controller port, picked as port+1 of such a port, was in use). Never the same port twice
    in one test run."""
    low, _ = _ephemeral_range()
    top = min(low, 32768) - 1
    for _ in range(200):
        port = random.randint(20000, top)
        if port in _HANDED_OUT or port in (KAFKA_PORT, KAFKA_PORT + 1, CLICKHOUSE_PORT):
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in 20000-{top}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def kafka_port() -> int:
    return KAFKA_PORT


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """A real Apache Kafka broker on 127.0.0.1 (started by deploy/local/kafka.sh if not up)."""
    if not _port_open(KAFKA_PORT):
        script = ROOT / "deploy" / "local" / "kafka.sh"
        env = {**os.environ, "KAFKA_PORT": str(KAFKA_PORT)}
        proc = subprocess.run(["bash", str(script), "start"], env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            missing_part(f"could not start Kafka: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    return f"127.0.0.1:{KAFKA_PORT}"


class ClickhouseServer:
    """A real ClickHouse HTTP server (deploy/local/clickhouse.sh: clickhouse-local from the chdb
    wheel, listening on 127.0.0.1). Each caller takes a database of its own."""

    USER = PASSWORD = "moneytrail"

    def __init__(self, port: int, data_dir: Path | None = None) -> None:
        self.port = port
        self.data_dir = data_dir or Path(f"/tmp/moneytrail-clickhouse-{port}")

    def _script(self, command: str, clean: bool = False, timeout: float = 120) -> subprocess.CompletedProcess:
        env = {**os.environ, "CLICKHOUSE_PORT": str(self.port), "CLICKHOUSE_DATA_DIR": str(self.data_dir),
               "CLICKHOUSE_USER": self.USER, "CLICKHOUSE_PASSWORD": self.PASSWORD,
               "CLICKHOUSE_PYTHON": sys.executable, "CLICKHOUSE_CLEAN": "1" if clean else "0"}
        return subprocess.run(["bash", str(ROOT / "deploy" / "local" / "clickhouse.sh"), command], env=env,
                              capture_output=True, text=True, timeout=timeout)

    def start(self, clean: bool = False) -> None:
        out = self._script("start", clean)
        if out.returncode != 0:
            raise RuntimeError(f"could not start the ClickHouse server: {out.stdout[-2000:]} {out.stderr[-2000:]}")

    def stop(self) -> None:
        self._script("stop")

    def running(self) -> bool:
        return _port_open(self.port)

    def url(self, database: str = "default") -> str:
        return f"clickhouse://{self.USER}:{self.PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; its warehouse URL."""
        import uuid

        from clickhouse.warehouse import ServerWarehouse

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        admin = ServerWarehouse(self.url())
        try:
            admin.command(f"CREATE DATABASE {name}")
        finally:
            admin.close()
        return self.url(name)


@pytest.fixture(scope="session")
def clickhouse_server() -> ClickhouseServer:
    """The shared ClickHouse test server (started by deploy/local/run-tests.sh, or here if not up).
    Tests that stop a server start one of their own: ClickhouseServer(free_port(), tmp_path)."""
    server = ClickhouseServer(CLICKHOUSE_PORT)
    if not server.running():
        try:
            server.start()
        except RuntimeError as exc:
            missing_part(str(exc))
    return server


class Proc:
    """A moneytrail command running as its own process, output captured to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.p = subprocess.Popen([sys.executable, "-m", "moneytrail", *args], env=env, cwd=ROOT,
                                  stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = 15, timeout: float = 30) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._fh.close()
        return self.p.returncode


def wait_http(url: str, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.p.poll() is not None:
            raise AssertionError(f"process exited {proc.p.returncode}:\n{proc.output()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in {timeout}s:\n{proc.output()[-4000:]}")


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONEYTRAIL_")}
    env.update({"MONEYTRAIL_DATA_DIR": str(data_dir), "MONEYTRAIL_LOG_LEVEL": "info"})
    env.update(extra)
    return env


_skipped: list[str] = []
_evidence: list[str] = []


def show(line: str) -> None:
    """A line for the end of the run: what real parts did (which broker, which worker, timings)."""
    _evidence.append(line)


def pytest_terminal_summary(terminalreporter):  # noqa: ANN001
    if _evidence:
        terminalreporter.section("real parts")
        for line in _evidence:
            terminalreporter.write_line(line)


def pytest_runtest_logreport(report):  # noqa: ANN001
    if report.skipped and not hasattr(report, "wasxfail"):  # a strict xfail documents a known gap; it runs
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):  # noqa: ANN001
    """Under CI a skipped test proves nothing: the run fails."""
    if IN_CI and _skipped:
        print(f"\nCI=true and {len(_skipped)} test(s) skipped: {', '.join(_skipped[:10])}")
        session.exitstatus = 1


def query_folder(env: dict[str, str], sql: str, params: dict | None = None) -> list[dict]:
    """Rows from the chDB folder of env's data dir, read in a process of its own (chDB hosts one
    folder per process) after the server that owned it has stopped."""
    import json

    code = (
        "import json, sys; from moneytrail import root; from clickhouse.warehouse import open_warehouse\n"
        "wh = open_warehouse(root.load_settings().warehouse_url)\n"
        "print(json.dumps(wh.rows(sys.argv[1], json.loads(sys.argv[2]))))\n"
        "wh.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code, sql, json.dumps(params or {})], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])
