from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processors.channels import Attribution, ChannelRules, classify
from stream_processors.sessions import (
    Hit,
    VisitorSessions,
    click_key,
    is_milestone,
    sessionize,
)

RULES = ChannelRules.load()
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SHOP = "https://shop.kz/"
IG_AD = "https://shop.kz/sofas?utm_source=ig&utm_medium=paid_social&utm_campaign=spring_sale&utm_content=carousel_1"
GCLID = "Cj0KCQjw8--2BhCHARIsAF_w1gyZ3kFq7hN5x0ZcYv3Q2pR1sT4uV6wX8yZ0aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uVaAk8wEALw_wcB"


def hit(event_id, at, url=SHOP, referrer=None, user_id=None, is_bot=False, anonymous_id="anon-1"):
    return Hit(
        event_id=event_id,
        project="shop",
        anonymous_id=anonymous_id,
        user_id=user_id,
        at=at,
        attribution=classify(RULES, url, referrer),
        landing_url=url,
        is_bot=is_bot,
    )


def run(hits, state=None, timeout=timedelta(minutes=30), via_bytes=False):
    """All hits through sessionize; the final state and every touch emitted, in order."""
    out = []
    for h in hits:
        if via_bytes and state is not None:
            state = VisitorSessions.from_bytes(state.to_bytes())
        state, touches = sessionize(state, h, timeout)
        out.extend(touches)
    return state, out


def latest(touches):
    """touch_id -> the last emitted version, in order of first appearance."""
    result = {}
    for t in touches:
        result[t.touch_id] = t
    return result


def test_seed_journey_gives_three_touches_with_their_channels():
    hits = [
        hit("e1", T0, IG_AD),
        hit("e2", T0 + timedelta(minutes=2), "https://shop.kz/sofas/1", referrer="https://shop.kz/sofas"),
        hit("e3", T0 + timedelta(days=7), SHOP, referrer="https://www.google.kz/"),
        hit("e4", T0 + timedelta(days=10), SHOP),
    ]
    state, touches = run(hits)
    final = latest(touches)
    assert list(final) == ["e1", "e3", "e4"]
    assert [t.channel for t in final.values()] == ["Paid Social", "Organic Search", "Direct"]
    assert [t.source for t in final.values()] == ["instagram", "google", "(direct)"]
    first = final["e1"]
    assert (first.campaign, first.content, first.landing_url, first.started_at) == ("spring_sale", "carousel_1", IG_AD, T0)
    assert first.events == 2
    assert state.session_id == "e4"


def test_direct_visit_ten_minutes_into_a_paid_session_joins_it():
    state, touches = run([hit("e1", T0, IG_AD), hit("e2", T0 + timedelta(minutes=10))])
    assert {t.touch_id for t in touches} == {"e1"}
    assert all(t.source == "instagram" and t.channel == "Paid Social" for t in touches)
    assert (state.session_id, state.source, state.events) == ("e1", "instagram", 2)


def test_direct_visit_31_minutes_later_opens_a_new_direct_touch():
    state, touches = run([hit("e1", T0, IG_AD), hit("e2", T0 + timedelta(minutes=31))])
    assert [(t.touch_id, t.channel, t.events) for t in touches] == [("e1", "Paid Social", 1), ("e2", "Direct", 1)]
    assert touches[1].started_at == T0 + timedelta(minutes=31)
    assert state.session_id == "e2"


def test_inactivity_counts_from_the_last_hit_and_exactly_the_timeout_still_joins():
    hits = [hit(f"e{i}", T0 + timedelta(minutes=30 * i)) for i in range(4)]
    state, touches = run(hits)
    assert {t.touch_id for t in touches} == {"e0"}
    assert state.events == 4
    _, touches = run([*hits, hit("next", T0 + timedelta(minutes=120, microseconds=1))])
    assert touches[-1].touch_id == "next"


def test_same_utm_reloaded_is_the_same_session():
    hits = [hit(f"e{i}", T0 + timedelta(minutes=i), IG_AD) for i in range(5)]
    state, touches = run(hits)
    assert {t.touch_id for t in touches} == {"e0"}
    assert state.events == 5


def test_a_different_campaign_within_five_minutes_is_a_new_session():
    other = IG_AD.replace("spring_sale", "summer_sale")
    state, touches = run([hit("e1", T0, IG_AD), hit("e2", T0 + timedelta(minutes=5), other)])
    assert [(t.touch_id, t.campaign) for t in touches] == [("e1", "spring_sale"), ("e2", "summer_sale")]
    assert state.campaign == "summer_sale"


def test_a_different_source_or_medium_is_a_new_session():
    _, touches = run([hit("e1", T0, SHOP, referrer="https://www.google.kz/"),
                      hit("e2", T0 + timedelta(minutes=1), SHOP, referrer="https://yandex.kz/search")])
    assert [t.touch_id for t in touches] == ["e1", "e2"]
    _, touches = run([hit("e1", T0, IG_AD),
                      hit("e2", T0 + timedelta(minutes=1), IG_AD.replace("paid_social", "social"))])
    assert [(t.touch_id, t.medium) for t in touches] == [("e1", "cpc"), ("e2", "social")]


def test_organic_search_again_within_the_session_joins_it():
    _, touches = run([hit("e1", T0, SHOP, referrer="https://www.google.kz/"),
                      hit("e2", T0 + timedelta(minutes=3), SHOP + "b", referrer="https://google.com/")])
    assert {t.touch_id for t in touches} == {"e1"}


def test_a_new_gclid_value_is_a_new_session_and_the_same_one_reloaded_is_not():
    first, second = f"{SHOP}?gclid={GCLID}", f"{SHOP}?gclid={GCLID[:-1]}X"
    assert classify(RULES, first, None).click_id == GCLID
    _, touches = run([hit("e1", T0, first), hit("e2", T0 + timedelta(minutes=1), first),
                      hit("e3", T0 + timedelta(minutes=2), second)])
    final = latest(touches)
    assert list(final) == ["e1", "e3"]
    assert [t.click_id_type for t in final.values()] == ["gclid", "gclid"]
    assert final["e1"].events == 2


def test_the_timeout_is_configurable():
    hits = [hit("e1", T0, IG_AD), hit("e2", T0 + timedelta(minutes=15))]
    _, default = run(hits)
    _, short = run(hits, timeout=timedelta(minutes=10))
    _, long_ = run([hit("e1", T0, IG_AD), hit("e2", T0 + timedelta(minutes=45))], timeout=timedelta(hours=1))
    assert {t.touch_id for t in default} == {"e1"}
    assert [(t.touch_id, t.channel) for t in short] == [("e1", "Paid Social"), ("e2", "Direct")]
    assert {t.touch_id for t in long_} == {"e1"}


def test_growing_sessions_are_re_emitted_at_1_2_5_steps_only():
    hits = [hit(f"e{i}", T0 + timedelta(seconds=10 * i), IG_AD) for i in range(120)]
    state, touches = run(hits)
    assert [t.events for t in touches] == [1, 2, 5, 10, 20, 50, 100]
    assert {t.touch_id for t in touches} == {"e0"}
    assert state.events == 120 and state.reported == 100
    assert [n for n in range(1, 1001) if is_milestone(n)] == [2, 5, 10, 20, 50, 100, 200, 500, 1000]


def test_the_next_session_flushes_the_exact_count_of_the_one_it_closes():
    hits = [hit(f"e{i}", T0 + timedelta(minutes=i), IG_AD) for i in range(3)]
    _, touches = run([*hits, hit("n", T0 + timedelta(hours=2))])
    assert [(t.touch_id, t.events) for t in touches] == [("e0", 1), ("e0", 2), ("e0", 3), ("n", 1)]
    # no flush when the last emitted count is already exact
    _, touches = run([*hits[:2], hit("n", T0 + timedelta(hours=2))])
    assert [(t.touch_id, t.events) for t in touches] == [("e0", 1), ("e0", 2), ("n", 1)]


def _open_session():
    """A paid session from T0 to T0+20min, 3 hits (last emitted count 2)."""
    return run([hit("e1", T0, IG_AD), hit("e2", T0 + timedelta(minutes=10)), hit("e3", T0 + timedelta(minutes=20))])[0]


def test_a_late_direct_hit_inside_the_session_joins_it_without_moving_its_times():
    state = _open_session()
    new, touches = sessionize(state, hit("late", T0 + timedelta(minutes=5)))
    assert touches == ()
    assert (new.session_id, new.events, new.started_at, new.last_seen) == ("e1", 4, T0, T0 + timedelta(minutes=20))


def test_a_late_hit_before_the_start_within_the_timeout_joins_and_lowers_started_at():
    state = _open_session()
    new, touches = sessionize(state, hit("late", T0 - timedelta(minutes=25)))
    assert (new.session_id, new.events, new.started_at, new.last_seen) == ("e1", 4, T0 - timedelta(minutes=25), state.last_seen)
    assert [(t.touch_id, t.started_at, t.source, t.events) for t in touches] == [("e1", T0 - timedelta(minutes=25), "instagram", 4)]
    # the same fingerprint joins too
    new, _ = sessionize(state, hit("late", T0 - timedelta(minutes=30), IG_AD))
    assert (new.session_id, new.started_at) == ("e1", T0 - timedelta(minutes=30))


def test_a_late_hit_of_another_campaign_gets_its_own_touch_and_leaves_the_state():
    state = _open_session()
    new, touches = sessionize(state, hit("late", T0 + timedelta(minutes=5), SHOP, referrer="https://www.google.kz/"))
    assert new == state
    assert [(t.touch_id, t.channel, t.events, t.started_at) for t in touches] == [
        ("late", "Organic Search", 1, T0 + timedelta(minutes=5))
    ]


def test_a_late_hit_older_than_the_window_gets_its_own_touch_even_if_direct():
    state = _open_session()
    new, touches = sessionize(state, hit("late", T0 - timedelta(minutes=30, seconds=1)))
    assert new == state
    assert [(t.touch_id, t.channel, t.events) for t in touches] == [("late", "Direct", 1)]


def test_a_redelivered_opening_hit_is_ignored():
    state = _open_session()
    assert sessionize(state, hit("e1", T0, IG_AD)) == (state, ())


def test_bots_are_sessionized_and_marked():
    _, touches = run([hit("b1", T0, IG_AD, is_bot=True), hit("b2", T0 + timedelta(minutes=1), is_bot=True)])
    assert [(t.touch_id, t.is_bot, t.events) for t in touches] == [("b1", True, 1), ("b1", True, 2)]
    _, touches = run([hit("h1", T0, IG_AD)])
    assert touches[0].is_bot is False


def test_user_id_is_the_latest_known_and_carries_over_to_later_sessions():
    hits = [hit("e1", T0, IG_AD), hit("e2", T0 + timedelta(minutes=1), IG_AD), hit("e3", T0 + timedelta(minutes=2), user_id="u-7")]
    state, touches = run(hits)
    assert [(t.touch_id, t.events, t.user_id) for t in touches] == [("e1", 1, None), ("e1", 2, None), ("e1", 3, "u-7")]
    state, touches = sessionize(state, hit("e4", T0 + timedelta(days=1)))
    assert [(t.touch_id, t.user_id) for t in touches] == [("e4", "u-7")]
    state, touches = sessionize(state, hit("e5", T0 + timedelta(days=1, minutes=1), user_id="u-8"))
    assert [(t.touch_id, t.events, t.user_id) for t in touches] == [("e4", 2, "u-8")]


def test_replaying_the_same_hits_gives_identical_outputs():
    hits = [
        hit("e1", T0, IG_AD), hit("e2", T0 + timedelta(minutes=4)), hit("e3", T0 + timedelta(hours=1), f"{SHOP}?gclid=a"),
        hit("e4", T0 + timedelta(minutes=30)), hit("e5", T0 + timedelta(hours=1, minutes=1), f"{SHOP}?gclid=b"),
    ]
    s1, t1 = run(hits)
    s2, t2 = run(hits)
    s3, t3 = run(hits, via_bytes=True)
    assert s1 == s2 == s3 and s1.to_bytes() == s3.to_bytes()
    assert [t.to_bytes() for t in t1] == [t.to_bytes() for t in t2] == [t.to_bytes() for t in t3]


def test_state_round_trips_through_compact_versioned_bytes():
    state = run([hit("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", T0.replace(microsecond=123456), IG_AD, user_id="crm-100542"),
                 hit("e2", T0 + timedelta(minutes=7, microseconds=1), is_bot=False)])[0]
    data = state.to_bytes()
    assert VisitorSessions.from_bytes(data) == state
    assert data.startswith(b"[2,")
    assert len(data) < 300, len(data)
    with pytest.raises(ValueError, match="version"):
        VisitorSessions.from_bytes(b"[3" + data[2:])
    v1 = b"[1" + data[2:data.rindex(b",[")] + b"]"  # a state written before `past` existed
    assert VisitorSessions.from_bytes(v1) == state


def test_redelivered_old_hits_do_not_become_sessions_of_their_own():
    """At-least-once delivery and history reloads send old hits again; hits inside a session that
    was already counted are absorbed, while a genuinely late hit from before is still its own visit."""
    hits = [hit("a1", T0, IG_AD), hit("a2", T0 + timedelta(minutes=5)),
            hit("b1", T0 + timedelta(days=1), f"{SHOP}?gclid=x"), hit("b2", T0 + timedelta(days=1, minutes=3)),
            hit("c1", T0 + timedelta(days=3), SHOP, referrer="https://www.google.kz/")]
    state, first = run(hits)
    again, repeated = run(hits, state=state)
    assert {t.touch_id for t in first} == {"a1", "b1", "c1"}
    assert {t.touch_id for t in repeated} <= {"c1"}  # nothing new: at most the open session again
    assert len(state.past) == 2
    lost, alone = sessionize(state, hit("x", T0 - timedelta(days=2)))  # from before anything remembered
    assert lost == state and [t.touch_id for t in alone] == ["x"]


def test_a_gclid_state_keeps_a_digest_not_the_click_id():
    state, _ = sessionize(None, hit("e1", T0, f"{SHOP}?gclid={GCLID}"))
    assert state.click_key == click_key(GCLID) and len(state.click_key) == 12
    assert len(state.to_bytes()) < 300
    assert state.to_bytes().count(GCLID.encode()) == 1  # in the landing URL only


def test_hit_times_must_be_aware_and_are_kept_in_utc():
    a = classify(RULES, SHOP, None)
    with pytest.raises(ValueError, match="naive"):
        Hit("e1", "shop", "anon", None, datetime(2025, 3, 1, 12), a, SHOP, False)
    almaty = Hit("e1", "shop", "anon", None, datetime(2025, 3, 1, 17, tzinfo=timezone(timedelta(hours=5))), a, SHOP, False)
    assert almaty.at == T0.replace(hour=12) and almaty.at.tzinfo is UTC


# --- properties -------------------------------------------------------------------------------

ATTRIBUTIONS = [
    Attribution("(direct)", "(none)"),
    Attribution("google", "organic", channel="Organic Search", referrer_host="google.kz"),
    Attribution("google", "cpc", "sofas", click_id_type="gclid", click_id="g1", channel="Paid Search"),
    Attribution("google", "cpc", "sofas", click_id_type="gclid", click_id="g2", channel="Paid Search"),
    Attribution("google", "cpc", "beds", channel="Paid Search"),
    Attribution("instagram", "cpc", "beds", channel="Paid Social"),
    Attribution("instagram", "cpc", "sofas", content="a", channel="Paid Social"),
    Attribution("instagram", "cpc", "sofas", content="b", channel="Paid Social"),  # content is not in the fingerprint
    Attribution("instagram", "social", "sofas", channel="Organic Social"),
]
GAPS = st.one_of(
    st.sampled_from([timedelta(0), timedelta(minutes=10), timedelta(minutes=30),
                     timedelta(minutes=30, microseconds=1), timedelta(days=7)]),
    st.integers(0, 3 * 3600 * 10**6).map(lambda us: timedelta(microseconds=us)),
)
HITS = st.lists(
    st.tuples(GAPS, st.sampled_from(range(len(ATTRIBUTIONS))), st.sampled_from([None, "u1", "u2"]), st.booleans()),
    max_size=60,
)
TIMEOUTS = st.sampled_from([timedelta(minutes=10), timedelta(minutes=30), timedelta(hours=1)])


def as_hits(spec):
    at, hits = T0, []
    for i, (gap, attribution, user_id, bot) in enumerate(spec):
        at += gap
        hits.append(Hit(f"ev-{i}", "shop", "anon", user_id, at, ATTRIBUTIONS[attribution], f"{SHOP}p{i}", bot))
    return hits


def reference_sessions(hits, timeout):
    """Independent statement of the rules for in-order hits: the size of each session."""
    sizes, last, fingerprint = [], None, None
    for h in hits:
        a = h.attribution
        fp = (a.source, a.medium, a.campaign, a.click_id)
        if last is None or h.at - last > timeout or (a.source != "(direct)" and fp != fingerprint):
            sizes.append(0)
            fingerprint = fp
        sizes[-1] += 1
        last = h.at
    return sizes


@settings(max_examples=300, deadline=None)
@given(HITS, TIMEOUTS)
def test_in_order_hits_match_the_reference_and_replay_identically(spec, timeout):
    hits = as_hits(spec)
    state, touches = run(hits, timeout=timeout)
    event_ids = {h.event_id for h in hits}
    # (a) every touch is named after a hit
    assert {t.touch_id for t in touches} <= event_ids
    # (b) one touch per session start of the reference
    sizes = reference_sessions(hits, timeout)
    final = latest(touches)
    assert len(final) == len(sizes)
    # (c) running twice, or through the stored bytes between hits, gives identical results
    again_state, again = run(hits, timeout=timeout)
    stored_state, stored = run(hits, timeout=timeout, via_bytes=True)
    assert again_state == state == stored_state
    assert [t.to_bytes() for t in touches] == [t.to_bytes() for t in again] == [t.to_bytes() for t in stored]
    # (d) closed sessions end with their exact count; the open one is a lower bound, exact in the state
    if sizes:
        counts = [t.events for t in final.values()]
        assert counts[:-1] == sizes[:-1]
        assert counts[-1] <= sizes[-1] == state.events
        assert sum(sizes) == len(hits)
