"""A project: one business (or one site) with its own keys. Keys are never stored raw."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Mapping

_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Project:
    project_id: str
    name: str
    origins: tuple[str, ...] = field(default=())
    # vendor -> its settings for this project (secrets, account ids, field mappings)
    vendor_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Credentials:
    """Printed once at creation; only their hashes are kept."""

    write_key: str
    read_token: str
    webhook_secret: str


def key_hash(key: str) -> str:
    # Keys are 192-bit random strings, so a fast unsalted hash is safe and lets us look them up.
    return hashlib.sha256(key.encode()).hexdigest()


def new_credentials() -> Credentials:
    return Credentials(
        write_key="wk_" + secrets.token_urlsafe(24),
        read_token="rt_" + secrets.token_urlsafe(24),
        webhook_secret="whs_" + secrets.token_urlsafe(24),
    )


def project_id_of(name: str) -> str:
    slug = _SLUG.sub("-", name.strip().lower()).strip("-")
    if not slug:
        raise ValueError("a project name needs at least one latin letter or digit")
    return slug[:64]
