"""Spend imports: CSV (as exported by ad cabinets and spreadsheets) or JSON rows -> spend envelopes.

An import is atomic: one bad row refuses the whole file with every error by row number, because an
import replaces the (day, source) pairs it contains and half an import would erase good numbers.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.families import RATE, SPEND, CurrencyRate, SpendRow
from schemas.reasons import RejectReason
from schemas.values import reason_of

COLUMNS = ("date", "source", "medium", "campaign", "ad", "keyword", "cost", "currency", "clicks", "impressions")
ALIASES = {"day": "date", "дата": "date", "utm_source": "source", "источник": "source", "utm_medium": "medium",
           "utm_campaign": "campaign", "кампания": "campaign", "spend": "cost", "amount": "cost", "расход": "cost",
           "валюта": "currency", "клики": "clicks", "показы": "impressions", "utm_content": "ad", "utm_term": "keyword"}
MAX_ERRORS = 50


@dataclass
class SpendImport:
    import_id: str
    envelopes: list[Envelope] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reason: RejectReason = RejectReason.schema_violation  # the first error's (schemas.values' money, day, text rules)


def _number(text: Any) -> Any:
    """'1 500,50' (a Russian spreadsheet) -> '1500.50'; numbers pass through."""
    if not isinstance(text, str):
        return text
    t = text.replace("\u00a0", "").replace(" ", "").strip()
    if "," in t and "." not in t:
        t = t.replace(",", ".")
    return t


def rows_of_body(body: bytes, content_type: str) -> list[dict[str, Any]] | str:
    """Rows as dicts, or a reason the body could not be read at all."""
    if "json" in content_type:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return f"body is not JSON: {exc}"
        rows = next((data[k] for k in ("rows", "rates") if k in data), None) if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return 'JSON must be a list of rows or {"rows": [...]}'
        return rows
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return f"CSV is not UTF-8 (byte {exc.start}); save it as UTF-8"
    if not text.strip():
        return "the file is empty"
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    if not reader.fieldnames:
        return "no header row"
    return [{ALIASES.get((k or "").strip().lower(), (k or "").strip().lower()): v for k, v in row.items()} for row in reader]


@dataclass(frozen=True)
class _Table:
    """How one kind of imported row is read."""

    family: type
    schema: str
    kind: str
    columns: tuple[str, ...]
    aliases: dict[str, str]
    numbers: tuple[str, ...]  # columns written as numbers ('1 500,50' allowed)
    upper: tuple[str, ...]  # ISO codes
    default_key: str  # the column that takes the default currency when absent


SPEND_TABLE = _Table(SpendRow, SPEND, "spend", COLUMNS, {}, ("cost", "clicks", "impressions"), ("currency",), "currency")
RATE_TABLE = _Table(CurrencyRate, RATE, "rate", ("date", "currency", "base", "rate"),
                    {"валюта": "currency", "курс": "rate", "to": "base", "from": "currency"}, ("rate",),
                    ("currency", "base"), "base")


def _parse(table: _Table, rows: list[dict[str, Any]], project: str, received_at: datetime, default_currency: str,
           first_line: int) -> SpendImport:
    """Rows -> envelopes, all or nothing; first_line: the file line of the first row (2 after a CSV
    header, 0 for JSON, whose rows are named rows[n])."""
    out = SpendImport(import_id=uuid.uuid4().hex)
    if not rows:
        out.errors.append("no rows")
    for n, raw in enumerate(rows):
        if len(out.errors) >= MAX_ERRORS:
            out.errors.append("... more errors not shown")
            break
        line = f"row {n + first_line}" if first_line else f"rows[{n}]"
        named = {table.aliases.get(str(k).strip().lower(), str(k).strip().lower()): v for k, v in raw.items()}
        values = {k: (_number(v) if k in table.numbers else v) for k, v in named.items()
                  if k in table.columns and v not in (None, "")}
        values.setdefault(table.default_key, default_currency)
        for key in table.upper:
            if key in values:
                values[key] = str(values[key]).strip().upper()
        if table.kind == "spend":
            values["import_id"] = out.import_id
        try:
            row = table.family(**values)
        except ValidationError as exc:
            if not out.errors:
                out.reason = reason_of(exc)
            err = exc.errors()[0]
            field_name = ".".join(str(x) for x in err["loc"]) or "row"
            out.errors.append(f"{line}: {field_name}: {err['msg']} (got {raw.get(field_name, '')!r})")
            continue
        event_id = (f"spend:{out.import_id}:{n}" if table.kind == "spend"
                    else f"rate:{row.base}:{row.currency}:{row.date}")
        out.envelopes.append(Envelope(
            schema=table.schema, event_id=event_id, type=table.kind, project=project,
            timestamp=datetime.combine(row.date, time.min, tzinfo=timezone.utc), received_at=received_at,
            properties=row.model_dump(mode="json")))
    return out


def parse_spend(rows: list[dict[str, Any]], project: str, received_at: datetime, default_currency: str,
                first_line: int = 2) -> SpendImport:
    """Spend rows -> spend envelopes (the latest import of a day and source replaces earlier ones)."""
    return _parse(SPEND_TABLE, rows, project, received_at, default_currency, first_line)


def parse_rates(rows: list[dict[str, Any]], project: str, received_at: datetime, default_base: str,
                first_line: int = 2) -> SpendImport:
    """Currency rates -> rate envelopes (one per base, currency and day: a later import wins)."""
    return _parse(RATE_TABLE, rows, project, received_at, default_base, first_line)
