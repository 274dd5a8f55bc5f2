"""Bot detection by the maintained crawler-user-agents list: crawlers and link-preview fetchers are
bots, real phones and server-side senders are not."""

import time

import pytest

from stream_processors.steps import is_bot

BOTS = [
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "facebookexternalhit/1.1",
    "WhatsApp/2.23.20.0",
    "TelegramBot (like TwitterBot)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)",
    "Viber/13.3.0.5 CFNetwork/1220.1 Darwin/20.3.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
]

PEOPLE = [
    # CUBOT phones: "bot" inside the model name flagged real visitors as bots
    "Mozilla/5.0 (Linux; Android 10; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.5735.196 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 11; KINGKONG 5 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/96.0.4664.104 "
    "Mobile Safari/537.36 CUBOT",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/118.0.5993.69 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (Linux; arm_64; Android 12; SM-G991B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.5993.163 "
    "YaBrowser/23.11.2.95.00 SA/3 Mobile Safari/537.36",
    # in-app browsers are people reading, not the app's link-preview fetcher
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "[FBAN/FBIOS;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/16.6;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "Telegram-iOS",
    # server-side senders (SDKs, scripts): their events are real
    "curl/8.5.0", "python-requests/2.31.0", "python-httpx/0.28.1", "okhttp/4.12.0", "Go-http-client/1.1",
    "analytics-python/2.4.0",
    "Mozilla/5.0", "", None,
]


@pytest.mark.parametrize("ua", BOTS)
def test_crawlers_and_link_preview_fetchers_are_bots(ua):
    assert is_bot(ua) is True


@pytest.mark.parametrize("ua", PEOPLE)
def test_phones_browsers_and_server_side_senders_are_not(ua):
    assert is_bot(ua) is False


def test_an_unseen_user_agent_costs_microseconds_not_milliseconds():
    # the memo holds 4096 agents; past it (or with a flood of made-up ones) every event matches anew
    uas = [f"Mozilla/5.0 (Linux; Android 13; SM-A{n}B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.{n}.0 "
           f"Mobile Safari/537.36" for n in range(3000)]
    started = time.process_time()
    assert not any(is_bot.__wrapped__(ua) for ua in uas)
    per_ua = (time.process_time() - started) / len(uas)
    assert per_ua < 100e-6, f"{per_ua * 1e6:.0f} us per user agent"
