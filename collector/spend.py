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


def parse_spend(rows: list[dict[str, Any]], project: str, received_at: datetime, default_currency: str,
                first_line: int = 2) -> SpendImport:
    """Rows -> spend envelopes. first_line: the file line of the first row (2 after a CSV header)."""
    out = SpendImport(import_id=uuid.uuid4().hex)
    if not rows:
        out.errors.append("no rows")
    for n, raw in enumerate(rows):
        if len(out.errors) >= MAX_ERRORS:
            out.errors.append("... more errors not shown")
            break
        line = f"row {n + first_line}" if first_line else f"rows[{n}]"
        values = {k: (_number(v) if k in ("cost", "clicks", "impressions") else v) for k, v in raw.items()
                  if k in COLUMNS and v not in (None, "")}
        values.setdefault("currency", default_currency)
        values["currency"] = str(values["currency"]).strip().upper()
        try:
            row = SpendRow(**values, import_id=out.import_id)
        except ValidationError as exc:
            err = exc.errors()[0]
            field_name = ".".join(str(x) for x in err["loc"]) or "row"
            out.errors.append(f"{line}: {field_name}: {err['msg']} (got {raw.get(field_name, '')!r})")
            continue
        out.envelopes.append(Envelope(
            schema=SPEND, event_id=f"spend:{out.import_id}:{n}", type="spend", project=project,
            timestamp=datetime.combine(row.date, time.min, tzinfo=timezone.utc), received_at=received_at,
            properties=row.model_dump(mode="json")))
    return out


RATE_COLUMNS = ("date", "currency", "base", "rate")
RATE_ALIASES = {"day": "date", "дата": "date", "валюта": "currency", "курс": "rate", "to": "base", "from": "currency"}


def parse_rates(rows: list[dict[str, Any]], project: str, received_at: datetime, default_base: str,
                first_line: int = 2) -> SpendImport:
    """Currency rates -> rate envelopes; all or nothing, like spend."""
    out = SpendImport(import_id=uuid.uuid4().hex)
    if not rows:
        out.errors.append("no rows")
    for n, raw in enumerate(rows):
        if len(out.errors) >= MAX_ERRORS:
            out.errors.append("... more errors not shown")
            break
        line = f"row {n + first_line}" if first_line else f"rows[{n}]"
        values = {RATE_ALIASES.get(str(k).strip().lower(), str(k).strip().lower()): v for k, v in raw.items()}
        values = {k: (_number(v) if k == "rate" else v) for k, v in values.items() if k in RATE_COLUMNS and v not in (None, "")}
        values.setdefault("base", default_base)
        for key in ("currency", "base"):
            if key in values:
                values[key] = str(values[key]).strip().upper()
        try:
            rate = CurrencyRate(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field_name = ".".join(str(x) for x in err["loc"]) or "row"
            out.errors.append(f"{line}: {field_name}: {err['msg']} (got {raw.get(field_name, '')!r})")
            continue
        out.envelopes.append(Envelope(
            schema=RATE, event_id=f"rate:{rate.base}:{rate.currency}:{rate.date}", type="rate", project=project,
            timestamp=datetime.combine(rate.date, time.min, tzinfo=timezone.utc), received_at=received_at,
            properties=rate.model_dump(mode="json")))
    return out
