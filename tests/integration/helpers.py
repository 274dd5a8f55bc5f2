"""Helpers of the distributed-mode fault tests: a Kafka broker of the test's own, a CPU hog that
makes the machine busy, and a moneytrail command restarted the way compose restarts it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import ROOT, Proc, free_port, missing_part

KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"


class Broker:
    """A single-node Apache Kafka broker of the test's own (deploy/local/kafka.sh on free ports and
    a data folder under the test's tmp_path): stopped and started at will. Never the shared broker
    of the suite (conftest's KAFKA_PORT), which other tests use at the same time."""

    def __init__(self, data: Path) -> None:
        self.port, self.controller, self.data = free_port(), free_port(), data

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, cmd: str, clean: bool = False) -> None:
        env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_CONTROLLER_PORT": str(self.controller),
               "KAFKA_DATA_DIR": str(self.data), "KAFKA_CLEAN": "1" if clean else "0"}
        out = subprocess.run(["bash", str(KAFKA_SH), cmd], env=env, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            missing_part(f"kafka.sh {cmd} failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")

    def start(self, clean: bool = False) -> None:
        self._run("start", clean)

    def stop(self) -> None:
        self._run("stop")


@contextmanager
def cpu_hog(seconds: float, cores: int | None = None) -> Iterator[None]:
    """A busy machine: one process spinning on each core for at most `seconds`, killed on exit."""
    end = time.time() + seconds
    code = f"import time\nwhile time.time() < {end}:\n    pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(cores or os.cpu_count() or 2)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait(10)


class Supervised:
    """A moneytrail command kept running as compose's `restart: unless-stopped` does: whenever it
    exits it is started again (after `delay` s), each run logging to a file of its own
    (<name>.log, <name>-2.log, ...). `exits` holds the exit code of every run that ended."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path, name: str, delay: float = 1.0) -> None:
        self.args, self.env, self.log_dir, self.name, self.delay = args, env, log_dir, name, delay
        self.runs: list[Proc] = []
        self.exits: list[int] = []
        self._stop = threading.Event()
        self._start()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _start(self) -> None:
        n = len(self.runs) + 1
        self.runs.append(Proc(self.args, self.env, self.log_dir / (f"{self.name}.log" if n == 1 else f"{self.name}-{n}.log")))

    def _watch(self) -> None:
        while not self._stop.wait(0.3):
            code = self.runs[-1].p.poll()
            if code is not None:
                self.exits.append(code)
                self.runs[-1].stop()  # closes its log file
                if self._stop.wait(self.delay):
                    return
                self._start()

    @property
    def restarts(self) -> int:
        return len(self.runs) - 1

    def stop(self) -> int:
        """Stop supervising, then the current run (SIGTERM); its exit code."""
        self._stop.set()
        self._thread.join(10)
        return self.runs[-1].stop()

    def logs(self) -> str:
        return "\n".join(f"===== {p.log.name}\n{p.output()}" for p in self.runs)


def metric(base: str, name: str) -> float:
    """A value from the collector's /metrics (-1 when absent)."""
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0
