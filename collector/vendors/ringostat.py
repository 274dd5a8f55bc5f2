"""Ringostat call webhooks, to /webhooks/ringostat/<project webhook secret>.

The webhook body is templated by the user in the Ringostat cabinet (JSON, JSON-RPC or parameters;
GET or POST), so the mapping is configurable (calls.FlatFormat): config `fields` overrides our
field -> parameter name(s), e.g. {"caller": "client_phone"}. Accepted bodies: a JSON object, a JSON
array of them, JSON-RPC ({"jsonrpc": "2.0", "method": ..., "params": {...}}), a form, or a query
string. Send it when the call ends. Defaults (the field names of Ringostat's calls API export):

  call_id         uniqueid, unique_id, call_id        (required) event id ringostat:<call id>
  caller          caller, caller_number               who called (the client, or our line when out)
  tracking_number dst                                 the number called (ours, or the client when out)
  started_at      calldate, call_date, date           "yyyy-mm-dd hh:mm:ss" (config timezone), ISO, unix
  duration        duration                            seconds, total
  talk            billsec                             seconds talking
  wait            waittime, wait_time                 talk = duration - wait when billsec is missing
  status          disposition, status                 ANSWERED / NO ANSWER / BUSY / FAILED
  unique          (none)
  repeated        repeated_flag                       unique = not repeated
  direction       call_type, direction                in / out / callback (read as in)
  recording_url   recording, recording_url
  page_url        landing                             the landing page (its utm tags count)
  anonymous_id    anonymous_id                        our tracker's id, if the site passes it on
  utm_source ...  utm_source, utm_medium, utm_campaign, utm_content, utm_term
  ga_client_id    client_id                           Google Analytics client id -> Call.vendor_ids

For an outgoing call (direction out) `caller` is our line and `dst` the client.

Authentication: the project's secret URL path (checked by the route) and config `token` (required:
Ringostat signs nothing and has no published address list, so until a token is configured the
webhook answers 401): the header X-Moneytrail-Token (add it in the webhook's headers) or the query
parameter `token` (append ?token=... to the URL) must carry it. Other config keys: timezone
(default Asia/Almaty), region (default KZ).
"""

from __future__ import annotations

from .base import VendorRequest, VendorResult
from .calls import FlatFormat, flat_request, token_refused

VENDOR = "ringostat"

FORMAT = FlatFormat(
    vendor=VENDOR,
    defaults={
        "call_id": ("uniqueid", "unique_id", "call_id"),
        "caller": ("caller", "caller_number"),
        "tracking_number": ("dst",),
        "started_at": ("calldate", "call_date", "date"),
        "duration": ("duration",),
        "talk": ("billsec",),
        "wait": ("waittime", "wait_time"),
        "status": ("disposition", "status"),
        "unique": (),
        "repeated": ("repeated_flag",),
        "direction": ("call_type", "direction"),
        "recording_url": ("recording", "recording_url"),
        "page_url": ("landing",),
        "anonymous_id": ("anonymous_id",),
        "utm_source": ("utm_source",),
        "utm_medium": ("utm_medium",),
        "utm_campaign": ("utm_campaign",),
        "utm_content": ("utm_content",),
        "utm_term": ("utm_term",),
        "ga_client_id": ("client_id",),
    },
    vendor_ids=("ga_client_id",),
)


def map_request(req: VendorRequest) -> VendorResult:
    refused = token_refused(VENDOR, req, required=True)
    if refused:
        return refused
    return flat_request(FORMAT, req)
