"""A realistic demo business, "Mebel Almaty" (an online furniture shop in Almaty, tenge), loaded
ONLY through the public HTTP interfaces, reproducible by a seed.

    plan = generate(seed=42, days=90)                # pure: everything built in memory, no I/O
    settings = vendor_settings(plan)                 # apply with `moneytrail projects configure` first
    result = load(plan, "http://127.0.0.1:8080", creds, progress=lambda done, total: ...)
    result.ground_truth_path                         # JSON: who is who, true channels, totals

What is in it (seed 42, scale=1.0, 90 days; `scale` multiplies the daily traffic):
- ~4 600 people (~4 800 anonymous ids: ~200 people switch device), ~7 300 visits, ~23 000
  pageviews, arriving through Google Ads, Yandex Direct, Instagram and TikTok ads, Telegram Ads
  (all tagged with utm + gclid / yclid / fbclid / ttclid), organic search (google.kz, yandex.kz
  referrers), Kaspi (kaspi.kz referrer), 2GIS, Instagram bio links and direct returns; an email
  newsletter every Tuesday to the people who left a contact. Journeys span days; some switch
  device (phone <-> desktop); three in four of those sign in to their shop account on both
  devices (an identify with the account id), the evidence the identity graph joins them by.
- ~400 enquiries: site forms ("Form Submitted" with a phone), phone calls, WhatsApp chats
  (the tracker's "Messenger Link Clicked" with a ref code, then a message carrying MT-XXXXXXXX).
- each enquiry becomes an amoCRM deal (leads[add] + contacts[add], then leads[status] through
  open stages to won 142 / lost 143) with prices; won deals are paid through the generic signed
  `payment` webhook (in full, or 50 % prepayment + the rest at delivery), a few are partly
  refunded, some customers buy again weeks later online; Kaspi buyers order in the Kaspi app or pay
  with Kaspi QR on the site (payments that name no deal: each is a sale). ~120 sales, ~47 M KZT
  revenue, ~7.5 M KZT spend.
- ad spend per day and campaign through POST /api/spend: Google + Yandex as a plain CSV, the
  social networks as a Russian spreadsheet (`;`, `1 500,50`, Russian headers), the SEO
  contractor's monthly invoice split by day and the newsletter's cost as JSON rows.

Every message has a `timestamp` (past times: the server keeps them) and an id derived from the
seed and the parameters (messageId, call_id, wamid, deal ids, payment ids), so loading the same
plan twice adds no lead, sale, payment or spend (spend re-imports replace the same days). Visits
are not yet idempotent server-side: re-sent old pageviews are sessionized again as late hits
(an xfail in tests/integration/test_demo_load.py). The ids include `today`: a run on another
day is another dataset.

How enquiries are joined to visits (what the server does today, and what the demo sends):
- forms: the Form Submitted event carries the visitor's anonymous id: joined directly.
- calls: a call-tracking number is leased to a visitor by POST /api/calltracking/lease, and the
  server credits a call to whoever held the dialled number at that moment. Leases are taken at
  the server's current time, so history cannot be leased: the historical calls are sent through
  the generic `calls` webhook with the caller's phone, the dialled pool number and, when the
  caller was on the site, the tracker's `anonymous_id` (a field calls.py reads; a PBX
  integration that knows the visitor does the same). Calls to the static number on the 2GIS card
  and calls shown the default number (pool exhausted) carry no visitor. A few "live" calls (when
  `today` is the current date) go the real way: load() leases a number for the visitor, then
  sends the call to that number WITHOUT any visitor id, and the server's lease join finds them.
- WhatsApp: the message carries the ref code that the visitor's "Messenger Link Clicked" event
  also carries, and the sender's phone; the server stores both as identifiers but does not yet
  stitch identities, so WhatsApp leads (and the deals and payments that follow) are unattributed
  in reports.
- amoCRM deals carry the visitor's anonymous id in a custom field (id 1119325, mapped by the
  amoCRM `fields` setting) when the enquiry came from a site form or a call with a known visitor:
  the site's form integration / the call tracker writes it, as real integrations do. The shop's
  backend copies it into `customer.anonymous_id` of the deal's payments. Kaspi app orders know
  only the buyer's phone; Kaspi QR and online repeat orders on the site know the visitor.

The ground truth (ground_truth(plan) / the JSON written by load) gives, for every identifier
(anonymous ids, phones in E.164, ref codes, deal ids, payment ids, call ids, chats) the TRUE person;
for every lead, sale, payment and refund its TRUE first-touch and last-non-direct channel over
all of the person's visits on every device (channel rules: the default channels.toml, computed
by stream_processors.channels.classify exactly as the server does) and the channel the server
is expected to report (by the visitor id it can see); totals as the server counts them (leads =
forms + unique inbound calls + chats + CRM deals created; sales = won deals + payments naming no
deal; revenue = payments + refunds) and spend per source and channel.

The package, read in this order:
- business.py   what the business is: the shop, catalogue, vendor accounts, campaigns, budgets, traffic
- plan.py       what a plan is made of: the requests to send and the truth behind them
- world.py      the generator's state: one random sequence, ids, phones, times of day, people
- site.py       what the site's tracker sends: landings by channel, pageviews, track events, sign-ins
- backoffice.py what the back office sends: PBX calls, WhatsApp, amoCRM deals, payments and refunds
- people.py     the journeys: random visitors, enquiries, Kaspi buyers, repeat purchases, the
                newsletter, the live calls and the scripted cross-device buyer (the showcase)
- spend.py      what the ads cost and the three spend imports
- generator.py  generate(): the simulation in a fixed order, packed into requests; vendor settings
- truth.py      ground_truth(): who is who, true and expected channels, totals
- loader.py     load(): the plan through the public HTTP interfaces, then the ground truth written
helpers.py holds the small pure helpers (time and money formats, signatures, weighted draws).
Only the `demo` command (moneytrail/cli.py, imported inside the command) and the tests import it.
"""

from .business import BUSINESS, CURRENCY, POOL, SITE
from .generator import BATCH, configure_args, generate, vendor_settings
from .loader import DemoLoadError, DemoResult, load
from .plan import WEBHOOK_SLOT, Conversion, DemoPlan, LiveCall, PlannedRequest, Visit
from .truth import LEAD_REPEAT_DAYS, LOOKBACK_DAYS, MODELS, UNATTRIBUTED, ground_truth, repeat_leads, write_ground_truth

__all__ = [
    "BATCH", "BUSINESS", "CURRENCY", "LEAD_REPEAT_DAYS", "LOOKBACK_DAYS", "MODELS", "POOL", "SITE", "UNATTRIBUTED",
    "WEBHOOK_SLOT", "Conversion", "DemoLoadError", "DemoPlan", "DemoResult", "LiveCall", "PlannedRequest", "Visit",
    "configure_args", "generate", "ground_truth", "load", "repeat_leads", "vendor_settings", "write_ground_truth",
]
