"""bench/processors: events/s of the full step chain on one core, and bytes per identity.

    uv run python bench/processors.py [--events 200000] [--identities 1000000]

Prints numbers; asserts nothing. The step chain is what both runners call per raw envelope:
decode -> classify -> sessionize (visitor state through bytes, as RocksDB stores it) -> conversions
and identity links -> output records; then the persons stage (persons.py: identity graph, number
leases, live credits for six models with corrections) on those records, its state in RocksDB, its
writes applied per batch of 500 records (as the runners do after publishing). The identity graph
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


def raw_events(n: int, seed: int = 7, forms: float = 0.10, orders: float = 0.02) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    t0 = datetime(2026, 10, 1, tzinfo=timezone.utc)
    out = []
    visitors = max(1, n // 8)
    clock = {}
    for i in range(n):
        v = rng.randrange(visitors)
        clock[v] = clock.get(v, t0 + timedelta(minutes=rng.randrange(60 * 24 * 30))) + timedelta(minutes=rng.choice((1, 2, 5, 45)))
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
    from schemas import topics
    from stream_processors.persons import PERSONS_INPUTS, Persons, PersonsConfig

    config = ProcessorConfig(ChannelRules.load())
    visitors = RocksState(folder / "visitors")
    store = RocksState(folder / "persons")
    persons = Persons(store, PersonsConfig())
    counts: dict[str, int] = {}
    started = time.process_time()
    persons.begin_batch()
    for i, (key, value) in enumerate(events):
        visitor = load_visitor(visitors.get(key))
        new, result = process(config, visitor, value)
        if new is not visitor and new is not None:
            visitors[key] = new.to_bytes()
        for topic, records in records_of(result).items():
            counts[topic] = counts.get(topic, 0) + len(records)
            if topic in PERSONS_INPUTS:
                for _k, record in records:
                    for out_topic, out in persons.step(topic, record).records().items():
                        counts[out_topic] = counts.get(out_topic, 0) + len(out)
        if i % 500 == 499:
            for out_topic, out in persons.end_batch().records().items():
                counts[out_topic] = counts.get(out_topic, 0) + len(out)
            persons.overlay.flush()
            persons.begin_batch()
    for out_topic, out in persons.end_batch().records().items():
        counts[out_topic] = counts.get(out_topic, 0) + len(out)
    persons.overlay.flush()
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
        typical = raw_events(args.events, forms=0.02, orders=0.005)
        typical_s, typical_counts = full_chain(typical, Path(tmp) / "typical")
    per_identity, links_s, made = identities(args.identities)
    print("=" * 92)
    print(f"processors: {os.cpu_count()} cores, one process, one core used; {len(events)} raw envelopes "
          f"(88% pageviews, 10% forms, 2% orders), ~8 per visitor, two visitors (devices) per phone")
    print(f"  step chain, visitor state as bytes in a dict : {len(events) / memory_s:10,.0f} events/s per core")
    print(f"  step chain, visitor state in RocksDB         : {len(events) / rocks_s:10,.0f} events/s per core"
          f"   (stage 1 alone)")
    print(f"  both stages (+ identity graph, live credits)  : {len(events) / full_s:10,.0f} events/s per core"
          f"   (goal >= 20 000 with batching)")
    print("    records: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
    print(f"  both stages, a typical shop (2% forms, 0.5% orders): {len(typical) / typical_s:10,.0f} events/s per core")
    print("    records: " + ", ".join(f"{k} {v:,}" for k, v in sorted(typical_counts.items())))
    print(f"  identity graph: {made:,.0f} identities, {per_identity:,.0f} bytes per identity (max RSS growth), "
          f"{links_s:,.0f} links/s")
    print("=" * 92)


if __name__ == "__main__":
    main()
