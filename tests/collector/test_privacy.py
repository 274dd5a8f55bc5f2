import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.privacy import (Hasher, anonymise_ip, extract_identity, mask_email, mask_phone, normalise_email,
                               normalise_phone, without_pii)


@pytest.mark.parametrize("raw, e164", [
    ("+7 701 123-45-67", "+77011234567"),
    ("8 (701) 123 45 67", "+77011234567"),
    ("77011234567", "+77011234567"),       # Calltouch/Ringostat drop the '+'
    ("7011234567", "+77011234567"),        # national, default region KZ
    ("+7 916 123-45-67", "+79161234567"),  # Moscow mobile
    ("89161234567", "+79161234567"),
    ("+1 650 253 0000", "+16502530000"),
    ("12345", None), ("", None), ("phone", None),
])
def test_phones_become_e164(raw, e164):
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize("raw, norm", [
    (" Buyer@Example.COM ", "buyer@example.com"),
    ("first.last+promo@gmail.com", "firstlast@gmail.com"),
    ("x@googlemail.com", "x@gmail.com"),
    ("not-an-email", None), ("a@b", None),
])
def test_emails_are_normalised(raw, norm):
    assert normalise_email(raw) == norm


def test_masks_hide_the_middle():
    assert mask_phone("+77011234567") == "+7701***4567"
    assert mask_email("buyer@example.com") == "b***r@example.com"


def test_ip_anonymisation():
    assert anonymise_ip("91.185.7.123") == "91.185.7.0"
    assert anonymise_ip("2a00:1450:4001:82b::200e") == "2a00:1450:4001::"
    assert anonymise_ip("garbage") is None


def test_identity_is_hashed_per_project_and_never_raw():
    h = Hasher(b"k" * 32)
    a = extract_identity(h, "shop", "KZ", {"Phone": "8 701 123 45 67", "email": "Buyer@example.com"})
    b = extract_identity(h, "other", "KZ", {"phone": "+77011234567"})
    assert a.ids["phone"].startswith("h_") and a.ids["phone"] != b.ids["phone"]
    assert "77011234567" not in str(a.ids) and "buyer" not in str(a.ids)
    assert a.masked == {"phone": "+7701***4567", "email": "b***r@example.com"}
    # the same person typed differently is the same identifier
    c = extract_identity(h, "shop", "KZ", {"tel": "+7 (701) 123-4567"})
    assert c.ids["phone"] == a.ids["phone"]


def test_pii_keys_are_removed_recursively():
    assert without_pii({"email": "x", "plan": "pro", "shipping": {"address": "Abay 1", "city": "Almaty"}}) == \
        {"plan": "pro", "shipping": {"city": "Almaty"}}


@given(st.text(max_size=60))
def test_any_text_never_raises(text):
    normalise_phone(text)
    normalise_email(text)


def test_phones_and_emails_typed_into_free_text_are_masked_and_ids_are_not():
    from collector.privacy import scrub_text, without_pii

    text = "Перезвоните на +7 701 123 45 67 или 8(727)2500000, почта aigerim.k@mail.kz, заказ 1001"
    assert scrub_text(text) == "Перезвоните на [phone] или [phone], почта [email], заказ 1001"
    cleaned = without_pii({"comment": "call 87011234567", "order_id": "870112345678", "form_id": "callback",
                           "nested": {"note": "write to a@b.kz"}, "phone": "+77011234567"})
    assert cleaned == {"comment": "call [phone]", "order_id": "870112345678", "form_id": "callback",
                       "nested": {"note": "write to [email]"}}
