import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processors.channels import ChannelRules, classify

RULES = ChannelRules.load()


@pytest.mark.parametrize(
    "url, referrer, campaign, source, medium, channel",
    [
        ("https://shop.kz/?utm_source=Google&utm_medium=CPC&utm_campaign=Sofas", None, None, "google", "cpc", "Paid Search"),
        ("https://shop.kz/?utm_source=гугл&utm_medium=ppc", None, None, "google", "cpc", "Paid Search"),
        ("https://shop.kz/?utm_source=ya.ru&utm_medium=cpc", None, None, "yandex", "cpc", "Paid Search"),
        ("https://shop.kz/?utm_source=ig&utm_medium=paid_social", None, None, "instagram", "cpc", "Paid Social"),
        ("https://shop.kz/?utm_source=Instagram&utm_medium=social", None, None, "instagram", "social", "Organic Social"),
        ("https://shop.kz/?gclid=abc", None, None, "google", "cpc", "Paid Search"),
        ("https://shop.kz/?yclid=123", None, None, "yandex", "cpc", "Paid Search"),
        ("https://shop.kz/?ttclid=1", None, None, "tiktok", "cpc", "Paid Social"),
        ("https://shop.kz/?fbclid=1", None, None, "facebook", "social", "Organic Social"),
        ("https://shop.kz/", "https://www.google.kz/", None, "google", "organic", "Organic Search"),
        ("https://shop.kz/", "https://yandex.ru/search/?text=диван", None, "yandex", "organic", "Organic Search"),
        ("https://shop.kz/", "https://kaspi.kz/shop/p/1", None, "kaspi", "marketplace", "Marketplace"),
        ("https://shop.kz/", "https://2gis.kz/almaty", None, "2gis", "marketplace", "Marketplace"),
        ("https://shop.kz/", "https://l.instagram.com/", None, "instagram", "social", "Organic Social"),
        ("https://shop.kz/", "https://web.telegram.org/", None, "telegram", "messenger", "Messenger"),
        ("https://shop.kz/", "https://blog.example.com/post", None, "blog.example.com", "referral", "Referral"),
        ("https://shop.kz/cart", "https://shop.kz/", None, "(direct)", "(none)", "Direct"),
        ("https://shop.kz/", None, None, "(direct)", "(none)", "Direct"),
        ("https://shop.kz/", None, {"source": "Newsletter", "medium": "email"}, "email", "email", "Email"),
        ("https://shop.kz/?utm_source=flyer&utm_medium=print", None, None, "flyer", "offline", "Offline"),
    ],
)
def test_source_medium_and_channel(url, referrer, campaign, source, medium, channel):
    got = classify(RULES, url, referrer, campaign)
    assert (got.source, got.medium, got.channel) == (source, medium, channel)


def test_utm_tags_win_over_click_ids_and_referrer():
    got = classify(RULES, "https://shop.kz/?utm_source=tiktok&utm_medium=cpc&gclid=x", "https://www.google.com/")
    assert (got.source, got.channel, got.click_id_type) == ("tiktok", "Paid Social", "gclid")


def test_context_campaign_wins_over_url_and_values_are_cleaned():
    got = classify(RULES, "https://shop.kz/?utm_source=yandex", None, {"source": "  GOOGLE ", "name": " Sofas "})
    assert (got.source, got.campaign) == ("google", "sofas")


def test_unknown_values_are_kept_and_reported_not_guessed():
    got = classify(RULES, "https://shop.kz/?utm_source=Partner-X&utm_medium=weird", None)
    assert (got.source, got.medium, got.channel) == ("partner-x", "weird", "Other")
    assert got.unknown == ("source:partner-x", "medium:weird")


def test_rules_are_data(tmp_path):
    rules = tmp_path / "r.toml"
    rules.write_text('[sources]\nacme = ["acme-ads"]\n[source_kinds]\nsearch = ["acme"]\n'
                     '[mediums]\ncpc = ["cpc"]\n[[channels]]\nname = "Paid Search"\nmedium = ["cpc"]\n')
    got = classify(ChannelRules.load(rules), "https://x.kz/?utm_source=ACME-ads&utm_medium=cpc", None)
    assert (got.source, got.channel) == ("acme", "Paid Search")


def test_broken_urls_do_not_raise():
    got = classify(RULES, "http://[::1/?utm_source=x", "http://[bad")
    assert got.source == "(direct)"


def _host_by_the_parser(url: str | None) -> str:
    from urllib.parse import urlsplit

    if not url:
        return ""
    try:
        return (urlsplit(url.strip()).hostname or "").lower().removeprefix("www.")
    except ValueError:
        return ""


_URL_PARTS = st.sampled_from(["http://", "https://", "HTTPS://", "ftp://", "//", "", " https://", "https://\t"])
_HOST_TEXT = st.text(alphabet="abcXYZ019.-_@:[]% \t\\/?#www", max_size=14)


@given(scheme=_URL_PARTS, host=_HOST_TEXT, tail=st.sampled_from(["", "/", "/p?x=1", "?q", "#f", ":8080/x", "\t/x"]))
@settings(max_examples=600, deadline=None)
def test_the_quick_host_cut_agrees_with_the_url_parser(scheme, host, tail):
    from stream_processors.channels import _host

    url = scheme + host + tail
    assert _host(url) == _host_by_the_parser(url)
