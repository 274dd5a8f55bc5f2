"""Normalisation of a visit's source and its channel group. Pure: rules in, attributes out."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

DEFAULT_RULES = Path(__file__).parent / "rules" / "channels.toml"
DIRECT_SOURCE = "(direct)"
NO_MEDIUM = "(none)"


@dataclass(frozen=True)
class ChannelRules:
    source_aliases: dict[str, str]
    source_kinds: dict[str, str]
    medium_aliases: dict[str, str]
    click_ids: dict[str, tuple[str, str]]
    referrers: tuple[tuple[str, str], ...]  # (host pattern, source), longest pattern first
    referrer_mediums: dict[str, str]
    channels: tuple[dict[str, frozenset[str] | str], ...]
    # answers already worked out (every visit asks them; the rules never change in a process)
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, path: Path | str | None = None) -> "ChannelRules":
        with open(path or DEFAULT_RULES, "rb") as f:
            raw = tomllib.load(f)
        source_aliases = {}
        for canonical, aliases in raw.get("sources", {}).items():
            source_aliases[canonical.lower()] = canonical
            for alias in aliases:
                source_aliases[alias.strip().lower()] = canonical
        medium_aliases = {}
        for canonical, aliases in raw.get("mediums", {}).items():
            medium_aliases[canonical] = canonical
            for alias in aliases:
                medium_aliases[alias.strip().lower()] = canonical
        kinds = {src: kind for kind, srcs in raw.get("source_kinds", {}).items() for src in srcs}
        channels = []
        for rule in raw.get("channels", []):
            compiled: dict[str, frozenset[str] | str] = {"name": rule["name"]}
            for key in ("medium", "source", "source_kind"):
                if key in rule:
                    compiled[key] = frozenset(rule[key])
            channels.append(compiled)
        referrers = sorted(raw.get("referrers", {}).items(), key=lambda kv: -len(kv[0]))
        return cls(
            source_aliases=source_aliases,
            source_kinds=kinds,
            medium_aliases=medium_aliases,
            click_ids={k.lower(): (v[0], v[1]) for k, v in raw.get("click_ids", {}).items()},
            referrers=tuple(referrers),
            referrer_mediums=dict(raw.get("referrer_mediums", {})),
            channels=tuple(channels),
        )

    def fold_source(self, value: str) -> str:
        v = " ".join(value.strip().lower().split())
        return self.source_aliases.get(v, v)

    def fold_medium(self, value: str) -> str:
        v = " ".join(value.strip().lower().split())
        return self.medium_aliases.get(v, v)

    def source_of_referrer(self, host: str) -> str | None:
        key = ("referrer", host)
        if key not in self._memo:
            self._remember(key, self._source_of_referrer(host))
        return self._memo[key]

    def _remember(self, key: tuple, value: object) -> None:
        if len(self._memo) > 50_000:  # referrer hosts are unbounded: keep the memo bounded
            self._memo.clear()
        self._memo[key] = value

    def _source_of_referrer(self, host: str) -> str | None:
        for pattern, source in self.referrers:
            if pattern.endswith("."):  # "google." matches google.com, google.kz, news.google.ru
                if host.startswith(pattern) or f".{pattern}" in host:
                    return source
            elif host == pattern or host.endswith("." + pattern):
                return source
        return None

    def channel_of(self, source: str, medium: str) -> str:
        key = ("channel", source, medium)
        if key not in self._memo:
            self._remember(key, self._channel_of(source, medium))
        return self._memo[key]

    def _channel_of(self, source: str, medium: str) -> str:
        kind = self.source_kinds.get(source, "")
        facts = {"source": source, "medium": medium, "source_kind": kind}
        for rule in self.channels:
            if all(facts[k] in allowed for k, allowed in rule.items() if k != "name"):
                return str(rule["name"])
        return "Other"


@dataclass(frozen=True)
class Attribution:
    """Where a visit came from, normalised."""

    source: str
    medium: str
    campaign: str = ""
    content: str = ""
    term: str = ""
    click_id_type: str = ""
    click_id: str = ""  # the click id's value (the gclid itself): a new value is a new click
    channel: str = "Direct"
    referrer_host: str = ""
    unknown: tuple[str, ...] = field(default=())  # values not in the rules, for the quality report

    @property
    def is_direct(self) -> bool:
        return self.source == DIRECT_SOURCE


_PLAIN_HOST = re.compile(r"[A-Za-z0-9.\-]+")


def _host(url: str | None) -> str:
    if not url:
        return ""
    url = url.strip()
    # most URLs are plain http(s)://host/...: cut the host out without the full parser (which
    # costs a fifth of classifying a visit); anything else (ports, user info, IPv6, odd bytes)
    # goes through urlsplit. tests/stream_processors/test_channels.py checks both agree.
    for scheme in ("https://", "http://"):
        if url.startswith(scheme):
            rest = url[len(scheme):]
            end = len(rest)
            for stop in "/?#":
                at = rest.find(stop, 0, end)
                if at != -1:
                    end = at
            host = rest[:end]
            if host and _PLAIN_HOST.fullmatch(host):
                return host.lower().removeprefix("www.")
            break
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


def _query(url: str | None) -> dict[str, str]:
    if not url or "?" not in url:  # no query string at all (most pages after the landing one)
        return {}
    try:
        return {k.lower(): v for k, v in parse_qsl(urlsplit(url.strip()).query)}
    except ValueError:
        return {}


_UTM_PARAMS = (("source", "utm_source"), ("medium", "utm_medium"), ("name", "utm_campaign"),
               ("content", "utm_content"), ("term", "utm_term"))


def classify(
    rules: ChannelRules,
    page_url: str | None,
    referrer: str | None,
    campaign: dict[str, str] | None = None,
) -> Attribution:
    """The source, medium, campaign and channel of a visit landing on page_url."""
    if campaign or (page_url and "?" in page_url):
        return _classify(rules, page_url, referrer, campaign)
    # no tags and no click id: the answer depends on the two URLs only, and most pageviews are the
    # site's own pages reached from its own pages: remember them
    key = ("page", page_url, referrer)
    known = rules._memo.get(key)
    if known is None:
        known = _classify(rules, page_url, referrer, None)
        rules._remember(key, known)
    return known


def _classify(
    rules: ChannelRules,
    page_url: str | None,
    referrer: str | None,
    campaign: dict[str, str] | None = None,
) -> Attribution:
    query = _query(page_url)
    tags = {k: v for k, v in campaign.items() if isinstance(v, str) and v.strip()} if campaign else {}
    if query:
        for key, param in _UTM_PARAMS:
            url_value = query.get(param, "").strip()
            if url_value and key not in tags:
                tags[key] = url_value
        click_id_type = next((cid for cid in rules.click_ids if query.get(cid)), "")
    else:
        click_id_type = ""
    click_id = query[click_id_type].strip() if click_id_type else ""
    ref_host = _host(referrer)
    unknown: list[str] = []

    if tags.get("source"):
        source = rules.fold_source(tags["source"])
        medium = rules.fold_medium(tags.get("medium", "")) if tags.get("medium") else ""
        if not medium and click_id_type:
            medium = rules.click_ids[click_id_type][1]
        if not medium:
            medium = NO_MEDIUM
    elif click_id_type:
        source, medium = rules.click_ids[click_id_type]
        if tags.get("medium"):
            medium = rules.fold_medium(tags["medium"])
    elif ref_host and ref_host != _host(page_url):
        known = rules.source_of_referrer(ref_host)
        if known:
            source = known
            medium = rules.referrer_mediums.get(rules.source_kinds.get(known, ""), "referral")
        else:
            source, medium = ref_host, "referral"
    else:
        source, medium = DIRECT_SOURCE, NO_MEDIUM

    if source not in rules.source_kinds and source != DIRECT_SOURCE and source != ref_host:
        unknown.append(f"source:{source}")
    if medium not in rules.medium_aliases and medium != NO_MEDIUM:
        unknown.append(f"medium:{medium}")
    return Attribution(
        source=source,
        medium=medium,
        campaign=tags.get("name", "").strip().lower(),
        content=tags.get("content", "").strip(),
        term=tags.get("term", "").strip(),
        click_id_type=click_id_type,
        click_id=click_id,
        channel=rules.channel_of(source, medium),
        referrer_host=ref_host,
        unknown=tuple(unknown),
    )
