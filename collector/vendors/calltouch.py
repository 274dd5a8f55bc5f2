"""Calltouch call webhooks ("Вебхуки по лидам", calls), to /webhooks/calltouch/<project webhook secret>.

Calltouch sends a GET query string or a form POST (application/x-www-form-urlencoded; a JSON body is
read too) with the parameters the user ticks in the cabinet (Интеграции / Отправка данных во
внешние системы / Вебхуки), at lead registration, call start or call end. Send it at CALL END (the
duration is known then): the event id is calltouch:<call id>, so the first notification of a call
is the one kept. If the `callphase` parameter is sent, only the phases in config `final_phases`
(default ["calldisconnected"]) are counted; other phases are acknowledged and ignored.

The parameter names are the user's choice, so the mapping is configurable (calls.FlatFormat): config
`fields` overrides our field -> parameter name(s), e.g. {"caller": "client_phone"}. Defaults (names
seen in Calltouch webhooks and in its calls API record, which is also accepted as a JSON body):

  call_id         callid, callId                      (required)
  caller          callerphone, callerNumber           the client (kept only as a keyed hash)
  tracking_number phonenumber, phoneNumber            our tracking number (required)
  started_at      calltime, date, call_time           dd/mm/yyyy hh:mm:ss, ISO, or unix seconds
  duration        duration                            seconds
  talk / wait     (none by default)                   talk = duration - wait when both are mapped
  status          status, successful                  successful/unsuccessful, true/false
  unique          unique, uniqueCall
  direction       direction                           in/out; default in
  recording_url   record_url, recording_url
  page_url        url, callUrl                        the landing page (its utm tags count)
  anonymous_id    anonymous_id                        our tracker's id, if the site passes it on
  utm_source      utm_source, utmSource, source       likewise utm_medium (.., medium),
                                                      utm_campaign, utm_content, utm_term (.., keyword)
  session_id      sessionid, sessionId                Calltouch session  -> Call.vendor_ids
  ct_client_id    ctClientId   ct_caller_id ctCallerId   ct_global_id ctGlobalId
  ga_client_id    clientId     ya_client_id yaClientId
  phase           callphase

Authentication: the project's secret URL path (checked by the route), plus the source address:
config `allowed_ips` (a list of addresses/CIDRs, or one comma-separated string) replaces the default
["92.118.66.0/23"] (Calltouch's webhook subnet); ["0.0.0.0/0", "::/0"] switches the check off.
Optional config `token`: then the header X-Moneytrail-Token or the query parameter `token` must
carry it. Other config keys: timezone (default Asia/Almaty), region (default KZ), final_phases.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping

from schemas.reasons import RejectReason

from .base import Refused, VendorRequest, VendorResult
from .calls import CONFIG_ERROR, FlatFormat, flat_request, lookup, token_refused

VENDOR = "calltouch"
DEFAULT_ALLOWED_IPS = ("92.118.66.0/23",)
DEFAULT_FINAL_PHASES = ("calldisconnected",)

FORMAT = FlatFormat(
    vendor=VENDOR,
    defaults={
        "call_id": ("callid", "call_id"),
        "caller": ("callerphone", "callernumber"),
        "tracking_number": ("phonenumber",),
        "started_at": ("calltime", "date", "call_time"),
        "duration": ("duration",),
        "talk": (),
        "wait": (),
        "status": ("status", "successful"),
        "unique": ("unique", "uniquecall"),
        "repeated": (),
        "direction": ("direction",),
        "recording_url": ("record_url", "recording_url"),
        "page_url": ("url", "callurl"),
        "anonymous_id": ("anonymous_id",),
        "utm_source": ("utm_source", "utmsource", "source"),
        "utm_medium": ("utm_medium", "utmmedium", "medium"),
        "utm_campaign": ("utm_campaign", "utmcampaign"),
        "utm_content": ("utm_content", "utmcontent"),
        "utm_term": ("utm_term", "utmterm", "keyword"),
        "session_id": ("sessionid", "session_id"),
        "ct_client_id": ("ctclientid",),
        "ct_caller_id": ("ctcallerid",),
        "ct_global_id": ("ctglobalid",),
        "ga_client_id": ("clientid",),
        "ya_client_id": ("yaclientid",),
        "phase": ("callphase",),
    },
    vendor_ids=("session_id", "ct_client_id", "ct_caller_id", "ct_global_id", "ga_client_id", "ya_client_id"),
)


def map_request(req: VendorRequest) -> VendorResult:
    refused = address_refused(req) or token_refused(VENDOR, req)
    if refused:
        return refused
    phases = _names(req.config.get("final_phases", DEFAULT_FINAL_PHASES))
    if phases is None:
        return Refused(RejectReason.schema_violation, f"{VENDOR}: config final_phases must be a list of call "
                       'phases, e.g. ["calldisconnected"]', CONFIG_ERROR)

    def not_final(record: Mapping[str, Any], fields: Mapping[str, tuple[str, ...]]) -> str | None:
        name, phase = lookup(record, fields.get("phase", ()))
        if phase is None or str(phase).strip().lower() in phases:
            return None
        return f"{VENDOR}: call phase {str(phase)[:40]!r} is not in final_phases ({', '.join(sorted(phases))})"

    return flat_request(FORMAT, req, skip=not_final)


def address_refused(req: VendorRequest) -> Refused | None:
    networks = _networks(req.config.get("allowed_ips", DEFAULT_ALLOWED_IPS))
    if isinstance(networks, Refused):
        return networks
    if not req.client_ip:
        return Refused(RejectReason.origin_not_allowed, f"{VENDOR}: the sender's address is unknown, so it cannot be "
                       "checked against allowed_ips", 403)
    try:
        address = ipaddress.ip_address(req.client_ip.strip())
    except ValueError:
        return Refused(RejectReason.origin_not_allowed, f"{VENDOR}: the sender's address is not an IP address", 403)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address.version == net.version and address in net for net in networks):
        return None
    shown = ", ".join(str(n) for n in networks[:5]) + (", ..." if len(networks) > 5 else "")
    return Refused(RejectReason.origin_not_allowed, f"{VENDOR}: {address} is not in allowed_ips ({shown}); "
                   "Calltouch sends webhooks from 92.118.66.0/23", 403)


def _networks(value: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network] | Refused:
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    bad = Refused(RejectReason.schema_violation, f"{VENDOR}: config allowed_ips must be a non-empty list of IP "
                  'addresses or networks, e.g. ["92.118.66.0/23"]', CONFIG_ERROR)
    if not isinstance(items, (list, tuple)) or not items:
        return bad
    try:
        return [ipaddress.ip_network(str(item).strip(), strict=False) for item in items]
    except ValueError:
        return bad


def _names(value: Any) -> frozenset[str] | None:
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        return None
    return frozenset(i.strip().lower() for i in items if i.strip())
