"""bench/processors: events/s of the full step chain on one core, and bytes per identity.

    uv run python bench/processors.py [--events 200000] [--identities 1000000]

Prints numbers; asserts nothing. The step chain is what both runners call per raw envelope:
decode -> classify -> sessionize (visitor state through bytes, as RocksDB stores it) -> conversions
and identity links -> output records; then the persons stage (persons.py: identity graph, number
leases, live credits for six models with corrections) on those records, its state in RocksDB, its
writes applied per batch (as the runners do after publishing). The identity graph
alone is measured apart for bytes per identity.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import resource
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from schemas.envelope import Envelope, EventContext
from stream_processors.channels import ChannelRules
from stream_processors.embedded import RocksState
from stream_processors.outputs import records_of
from stream_processors.steps import ProcessorConfig, load_visitor, process

LANDINGS = [
    ("https://mebel.kz/?utm_source=google&utm_medium=cpc&utm_campaign=sofas&gclid={r}", ""),
    ("https://mebel.kz/?utm_source=ig&utm_medium=paid_social&utm_campaign=reels", ""),
    ("https://mebel.kz/", "https://www.google.kz/"),
    ("https://mebel.kz/", "https://kaspi.kz/shop/p/1"),
    ("https://mebel.kz/catalog", ""),
]


def raw_events(n: int, seed: int = 7, forms: float = 0.10, orders: float = 0.02,
               sessions: bool = False) -> list[tuple[bytes, bytes]]:
    """n raw envelopes of ~n/8 visitors. sessions=False: every pageview lands from a random channel
    (almost every pageview opens a session: the worst case). sessions=True: a visit is a landing
    and then 0-6 pages of the site (internal referrer, 1-3 minutes apart; ~3.3 pages a visit, as
    shops see), visits of a visitor hours to days apart."""
    rng = random.Random(seed)
    t0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
    out = []
    visitors = max(1, n // 8)
    clock: dict[int, datetime] = {}
    pages_left: dict[int, int] = {}
    for i in range(n):
        v = rng.randrange(visitors)
        if sessions and pages_left.get(v, 0) > 0:
            pages_left[v] -= 1
            clock[v] += timedelta(minutes=rng.choice((1, 2, 3)))
            url, ref = f"https://mebel.kz/catalog/item-{rng.randrange(5000)}", "https://mebel.kz/catalog"
        else:
            if sessions:
                pages_left[v] = rng.choice((0, 0, 1, 2, 3, 4, 6))
                gap = timedelta(hours=rng.randrange(2, 24 * 7))
            else:
                gap = timedelta(minutes=rng.choice((1, 2, 5, 45)))
            clock[v] = clock.get(v, t0 + timedelta(minutes=rng.randrange(60 * 24 * 30))) + gap
            url, ref = rng.choice(LANDINGS)
        kind = rng.random()
        common = dict(event_id=f"e{i}", project="shop", anonymous_id=f"v{v}", timestamp=clock[v], received_at=clock[v])
        if kind < 1 - forms - orders:
            env = Envelope(schema="pageview/1-0-0", type="pageview",
                           context=EventContext(page_url=url.format(r=rng.randrange(10**9)), referrer=ref,
                                                user_agent="Mozilla/5.0"), **common)
        elif kind < 1 - orders:
            env = Envelope(schema="track/1-0-0", type="track", event="Form Submitted",
                           ids={"phone": f"h_{v // 2:032x}"}, **common)
        else:
            env = Envelope(schema="track/1-0-0", type="track", event="Order Completed",
                           properties={"order_id": f"o{i}", "revenue": rng.randrange(10, 900) * 1000, "currency": "KZT"},
                           **common)
        out.append((env.key, env.to_bytes()))
    return out


def chain(events: list[tuple[bytes, bytes]], state) -> float:  # noqa: ANN001
    config = ProcessorConfig(ChannelRules.load())
    started = time.process_time()
    for key, value in events:
        visitor = load_visitor(state.get(key))
        new, result = process(config, visitor, value)
        if new is not visitor and new is not None:
            state[key] = new.to_bytes()
        records_of(result)
    return time.process_time() - started


def full_chain(events: list[tuple[bytes, bytes]], folder: Path) -> tuple[float, dict[str, int]]:
    """Both stages as the embedded mode runs them (EmbeddedRunner, PersonsRunner), raw envelopes
    in batches of 500; each stage's outputs go on before its state writes, as in production."""
    import asyncio

    from stream_processors.embedded import EmbeddedRunner, PersonsRunner
    from stream_processors.persons import PERSONS_INPUTS, Persons, PersonsConfig

    visitors = RocksState(folder / "visitors")
    store = RocksState(folder / "persons")
    counts: dict[str, int] = {}

    async def count(topic: str, records: list) -> None:
        counts[topic] = counts.get(topic, 0) + len(records)

    async def publish(topic: str, records: list) -> None:
        await count(topic, records)
        if topic in PERSONS_INPUTS:
            await persons.handle(topic, records)

    persons = PersonsRunner(Persons(store, PersonsConfig()), count, store)
    runner = EmbeddedRunner(ProcessorConfig(ChannelRules.load()), publish, visitors)

    async def run() -> None:
        for i in range(0, len(events), 500):
            await runner.handle_raw("raw", events[i:i + 500])

    started = time.process_time()
    asyncio.run(run())
    seconds = time.process_time() - started
    visitors.close()
    store.close()
    return seconds, counts


def identities(n: int) -> tuple[float, float, float]:
    from stream_processors.identity import Evidence, IdentityGraph, Link

    rng = random.Random(3)
    t0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    graph = IdentityGraph()
    started = time.process_time()
    made, links = 0, 0
    while made < n:  # ~3 identifiers a person: a cookie, sometimes a second device, a phone
        person = made
        anon = ("anon", f"{person:08x}-0000-4000-8000-{rng.randrange(16**12):012x}")
        phone = ("phone", f"h_{rng.randrange(16**32):032x}")
        graph.add(Link(anon, phone, Evidence.OBSERVED, f"l{links}", t0 + timedelta(seconds=links)))
        links += 1
        made += 2
        if rng.random() < 0.5:
            second = ("anon", f"{person:08x}-1111-4000-8000-{rng.randrange(16**12):012x}")
            graph.add(Link(second, phone, Evidence.OBSERVED, f"l{links}", t0 + timedelta(seconds=links)))
            links += 1
            made += 1
    seconds = time.process_time() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) * 1024 / made, links / seconds, float(made)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--identities", type=int, default=1_000_000)
    args = parser.parse_args()
    if not (1000 <= args.events <= 2_000_000 and 1000 <= args.identities <= 5_000_000):
        parser.error("out of range")
    events = raw_events(args.events)
    memory_s = chain(events, {})
    with tempfile.TemporaryDirectory() as tmp:
        rocks = RocksState(Path(tmp) / "visitors")
        rocks_s = chain(events, rocks)
        rocks.close()
        full_s, counts = full_chain(events, Path(tmp) / "full")
        typical = raw_events(args.events, forms=0.02, orders=0.005, sessions=True)
        typical_s, typical_counts = full_chain(typical, Path(tmp) / "typical")
    per_identity, links_s, made = identities(args.identities)
    print("=" * 92)
    print(f"processors: {os.cpu_count()} cores, one process, one core used; {len(events)} raw envelopes "
          f"(88% pageviews, 10% forms, 2% orders), ~8 per visitor, two visitors (devices) per phone")
    print(f"  step chain, visitor state as bytes in a dict : {len(events) / memory_s:10,.0f} events/s per core")
    print(f"  step chain, visitor state in RocksDB         : {len(events) / rocks_s:10,.0f} events/s per core"
          f"   (stage 1 alone)")
    print(f"  both stages (+ identity graph, live credits)  : {len(events) / full_s:10,.0f} events/s per core"
          f"   (every pageview a new visit, 10% forms, 2% orders: the worst case)")
    print("    records: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    print(f"  both stages, a typical shop (visits of ~3.3 pages, 2% forms, 0.5% orders): "
          f"{len(typical) / typical_s:10,.0f} events/s per core   (goal >= 20 000 with batching)")
    print("    records: " + ", ".join(f"{k} {v:,}" for k, v in sorted(typical_counts.items())))
    print(f"  identity graph: {made:,.0f} identities, {per_identity:,.0f} bytes per identity (max RSS growth), "
          f"{links_s:,.0f} links/s")
    print("=" * 92)


if __name__ == "__main__":
    main()
