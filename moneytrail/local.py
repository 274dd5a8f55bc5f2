"""Who owns the local data folder. chDB lets one process open a folder; that process (the
server) takes a lock and leaves its URL and a local admin token (0600) beside it, so CLI commands
run while it is up talk to it over HTTP instead of opening the folder themselves."""

from __future__ import annotations

import fcntl
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson


@dataclass(frozen=True)
class RunningServer:
    url: str
    admin_token: str


class DataDirBusy(RuntimeError):
    pass


class DataDirLock:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.data_dir / "moneytrail.lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise DataDirBusy(f"{self.data_dir} is in use by another moneytrail process") from None
        self._file = f

    def publish_server(self, url: str) -> str:
        token = "adm_" + secrets.token_urlsafe(24)
        path = self.data_dir / "server.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(orjson.dumps({"url": url, "admin_token": token, "pid": os.getpid()}))
        return token

    def release(self) -> None:
        if self._file is not None:
            (self.data_dir / "server.json").unlink(missing_ok=True)
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def running_server(data_dir: Path) -> RunningServer | None:
    """The server holding data_dir, if one does."""
    lock_path = data_dir / "moneytrail.lock"
    if not lock_path.exists():
        return None
    with open(lock_path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # held: someone runs
        else:
            fcntl.flock(f, fcntl.LOCK_UN)
            return None
    try:
        info = orjson.loads((data_dir / "server.json").read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        raise DataDirBusy(f"{data_dir} is held by a process that serves no HTTP (a sink?)") from None
    return RunningServer(info["url"], info["admin_token"])
