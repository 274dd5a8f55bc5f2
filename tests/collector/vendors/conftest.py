"""Helpers for vendor mapper tests: saved real-format payloads and VendorRequests built from them."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from collector.ingest import IngestRules, Refusal, envelope_of_draft
from collector.privacy import Hasher
from collector.vendors.base import Accepted, Refused, VendorRequest
from schemas.reasons import RejectReason
from schemas.project import Project

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FORMATS = Path(__file__).resolve().parent / "payloads"  # vendor-format examples and their notes (SOURCES.md)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def fixture_bytes(name: str) -> bytes:
    """A saved payload: ours (tests/collector/vendors/fixtures) or a copied vendor example (payloads)."""
    for folder in (FIXTURES, FORMATS):
        if (folder / name).exists():
            return (folder / name).read_bytes()
    raise FileNotFoundError(f"no fixture {name} in {FIXTURES} or {FORMATS}")


def vendor_request(vendor: str, body: bytes = b"", headers: dict[str, str] | None = None, config: dict | None = None,
                   method: str = "POST", query: dict[str, str] | None = None, client_ip: str | None = "127.0.0.1",
                   received_at: datetime = NOW) -> VendorRequest:
    return VendorRequest(vendor=vendor, project=Project("shop", "Shop"), method=method,
                         headers={k.lower(): v for k, v in (headers or {}).items()}, query=query or {},
                         body=body, client_ip=client_ip, received_at=received_at, config=config or {})


@pytest.fixture
def formats_dir() -> Path:
    return FORMATS


RULES = IngestRules(Hasher(b"k" * 32))


def check_result(out: Accepted | Refused) -> None:
    """What any body must give: a refusal with a reason from the closed set and a 4xx, or drafts that
    all become envelopes."""
    if isinstance(out, Refused):
        assert out.reason in RejectReason and out.detail and 400 <= out.status < 500
        return
    for draft in out.drafts:
        env = envelope_of_draft(draft, "shop", NOW, RULES)
        assert not isinstance(env, Refusal), env
