import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.vendors.messaging import CROCKFORD, context_campaign, ref_code, text_campaign


@pytest.mark.parametrize(("text", "code"), [
    ("Здравствуйте! Хочу заказать диван MT-7K3QX9AB", "7K3QX9AB"),
    ("/start mt_7K3QX9AB", "7K3QX9AB"),
    ("/start@shop_bot mt-7k3qx9ab", "7K3QX9AB"),
    ("MT_0123ABCD, спасибо", "0123ABCD"),
    ("(MT-ZZZZZZZZ)", "ZZZZZZZZ"),
    ("mt_7K3QX9AB_from_ig", "7K3QX9AB"),  # a start payload may carry more after the code
    ("first MT-AAAAAAAA then MT-BBBBBBBB", "BBBBBBBB"),  # the tracker appends: the last one counts
    ("a forwarded text\nMT-7K3QX9AB\n", "7K3QX9AB"),
])
def test_ref_codes_are_found_upper_cased_without_prefix(text, code):
    assert ref_code(text) == code


@pytest.mark.parametrize("text", [
    None, "", "Хочу диван", "MT-7K3QX9A", "MT-7K3QX9ABC",  # 7 and 9 characters
    "MT-7K3QX9IL", "MT-UUUUUUUU", "MT-OOOOOOOO",  # I, L, O, U are not Crockford base32
    "SMT-7K3QX9AB", "2MT-7K3QX9AB",  # inside a longer word
    "MT 7K3QX9AB", "MT--7K3QX9AB", "MT:7K3QX9AB",
    "MT-7K3QX9A\u212a",  # the Kelvin sign is not a K
    "/start cmVmOjQyfHV0bTpnb29nbGU",  # a base64 payload is not our code
])
def test_what_is_not_a_ref_code(text):
    assert ref_code(text) is None


@pytest.mark.parametrize(("text", "tags"), [
    ("Хочу диван (utm_source=google)", {"source": "google"}),
    ("utm_source=google&utm_medium=cpc", {"source": "google", "medium": "cpc"}),
    ("Здравствуйте! https://shop.kz/divan?utm_source=instagram&utm_campaign=divan+nov&x=1 MT-7K3QX9AB",
     {"source": "instagram", "campaign": "divan nov"}),
    ("(UTM_SOURCE = Yandex, utm_medium=cpc; utm_term=%D0%B4%D0%B8%D0%B2%D0%B0%D0%BD)",
     {"source": "Yandex", "medium": "cpc", "term": "диван"}),
    ("utm_source=google. utm_source=bing", {"source": "google"}),  # first wins, trailing dot dropped
    ("utm_content=ad1\nutm_id=42", {"content": "ad1", "id": "42"}),
    ("«utm_source=vk»", {"source": "vk"}),
])
def test_utm_tags_written_in_a_text(text, tags):
    assert text_campaign(text) == tags


@pytest.mark.parametrize("text", [None, "", "Хочу диван", "utm_source=", "utm_source= ", "xutm_source=google",
                                  "utm-source=google", "utm_=google", "utm_source=..."])
def test_texts_without_utm_tags(text):
    assert text_campaign(text) == {}


def test_context_campaign_follows_the_segment_spec():
    assert context_campaign({"source": "google", "campaign": "sofas", "term": "x"}) == {
        "source": "google", "name": "sofas", "term": "x"}
    assert context_campaign({"name": "odd", "source": "s"}) == {"source": "s"}  # utm_name is not the campaign


_CODES = st.text(alphabet=CROCKFORD + CROCKFORD.lower(), min_size=8, max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), _CODES, st.sampled_from(["MT-", "mt_", "Mt-", "MT_"]), st.text(max_size=40))
def test_an_appended_code_is_always_found(prefix_text, code, prefix, tail):
    tail = "" if re.match(r"[0-9A-Za-z]", tail) else tail  # a letter right after the code would extend it
    text = f"{prefix_text} {prefix}{code}{tail}"
    found = ref_code(text)
    if not re.search(r"[Mm][Tt][-_][0-9A-Za-z]{8}(?![0-9A-Za-z])", tail):  # unless the tail carries another code
        assert found == code.upper()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_well_formed_result(text):
    code = ref_code(text)
    assert code is None or (len(code) == 8 and set(code) <= set(CROCKFORD))
    tags = text_campaign(text)
    assert len(tags) <= 16
    for key, value in tags.items():
        assert re.fullmatch(r"[a-z0-9_]{1,32}", key) and value and len(value) <= 512
