"""PHP-style form bodies (amoCRM, Bitrix24, CloudPayments send application/x-www-form-urlencoded
with nested keys such as leads[status][0][status_id])."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from schemas.reasons import RejectReason

from .base import Refused

MAX_FORM_BYTES = 2 * 1024 * 1024
MAX_PAIRS = 20_000
MAX_DEPTH = 10  # bracketed segments after the name: leads[status][0][custom_fields][0][values][0][value] is 7

_INDEX = re.compile(r"0|[1-9][0-9]{0,17}")
_SEGMENTS = re.compile(r"(?:\[[^\[\]]*\])+")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


class _Node(dict):
    """A nested level of the form; remembers the next index for `key[]=` appends (PHP semantics)."""

    __slots__ = ("next_index",)

    def __init__(self) -> None:
        super().__init__()
        self.next_index = 0

    def put(self, key: str, value: Any) -> None:
        if _INDEX.fullmatch(key):
            self.next_index = max(self.next_index, int(key) + 1)
        self[key] = value


def _form_text(raw: bytes, n: int, what: str) -> str | Refused:
    try:
        return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return Refused(RejectReason.invalid_utf8, f"form field #{n} {what} is not UTF-8 after percent-decoding")


def parse_form(body: bytes, *, max_bytes: int = MAX_FORM_BYTES, max_pairs: int = MAX_PAIRS,
               max_depth: int = MAX_DEPTH) -> dict[str, Any] | Refused:
    """An x-www-form-urlencoded body with PHP-style keys as nested dicts (PHP `parse_str`):
    `a[b][0][c]=1&a[b][1][c]=2` -> {"a": {"b": {"0": {"c": "1"}, "1": {"c": "2"}}}}.

    Lists stay dicts keyed by their index strings, in the order sent ("0", "1", or whatever ids a
    vendor uses as keys); `a[]=x` appends at the next integer index. '+' and %XX are decoded, then
    UTF-8. A later value for the same key wins (a scalar and a nested level replace each other).
    A key whose brackets do not nest cleanly ("a[b", "a[b]c") is kept whole as a flat name.
    Never raises: too big / too many fields -> too_large, too deep -> too_deep, bad UTF-8 ->
    invalid_utf8."""
    if len(body) > max_bytes:
        return Refused(RejectReason.too_large, f"form body over {max_bytes} bytes", 413)
    root = _Node()
    pairs = [p for p in body.split(b"&") if p]
    if len(pairs) > max_pairs:
        return Refused(RejectReason.too_large, f"form body has {len(pairs)} fields (limit {max_pairs})", 413)
    for n, pair in enumerate(pairs):
        raw_key, _, raw_value = pair.partition(b"=")
        key = _form_text(raw_key, n, "name")
        if isinstance(key, Refused):
            return key
        value = _form_text(raw_value, n, "value")
        if isinstance(value, Refused):
            return value
        if not key:
            continue
        path = _key_path(key)
        if len(path) - 1 > max_depth:
            return Refused(RejectReason.too_deep, f"form field {key[:80]!r} nests deeper than {max_depth} levels")
        node = root
        for segment in path[:-1]:
            if segment == "":
                segment = str(node.next_index)
            child = node.get(segment)
            if not isinstance(child, _Node):
                child = _Node()
                node.put(segment, child)
            node = child
        last = path[-1]
        node.put(str(node.next_index) if last == "" else last, value)
    return root


def _key_path(key: str) -> list[str]:
    cut = key.find("[")
    if cut <= 0 or not _SEGMENTS.fullmatch(key, cut):
        return [key]
    return [key[:cut], *_SEGMENT.findall(key, cut)]
