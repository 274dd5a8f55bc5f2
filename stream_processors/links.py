"""Identity links an event carries. Pure: an envelope in, the links it is evidence of out.

Every identifier an event names belongs to one person, so an event links its hub identifier to each
other one (a star: n identifiers give n - 1 links, enough to join them). The hub is the event's own
record (the call, the chat, the deal, the payment: its subject, which the pipeline works out once
with conversions.subject_of and hands in), or the CRM contact of a contact update. The evidence
says how far the link can be trusted (identity.py): the site's login (identify), the CRM's own
record, the phone network (a call), the messenger platform, or only observed together (a phone
typed into a form, a ref code in a first message).

Links between a call and the number lease it is matched to are not here: the match needs the
leases of the number (the second stage, persons.py, makes it).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from schemas.envelope import Envelope

from .identity import KIND_RANK, Evidence

# The envelope's id kinds that are identity kinds (all of them, today); "anon" and "user" come
# from the envelope's own fields.
_ID_KINDS = tuple(k for k in ("user", "crm_contact", "phone", "email", "chat", "deal", "promo", "ref", "lease",
                              "call", "order", "payment") if k in KIND_RANK)


@dataclass(frozen=True, slots=True)
class LinkRecord:
    project: str
    a: str  # "kind:value"
    b: str
    evidence: str
    event_id: str
    at: str  # ISO time

    def to_row(self) -> dict:
        return {"project": self.project, "a": self.a, "b": self.b, "evidence": self.evidence,
                "event_id": self.event_id, "at": self.at}

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_row())


def identifiers_of(env: Envelope, subject: tuple[str, str] | None) -> dict[str, str]:
    """kind -> value of every identifier the event names (one value per kind), its subject first."""
    out: dict[str, str] = {}
    if subject:
        out[subject[0]] = subject[1]
    if env.anonymous_id and "anon" not in out:
        out["anon"] = env.anonymous_id
    elif env.type == "pageview" and env.user_id and "anon" not in out:
        out["anon"] = env.user_id  # a server-side pageview's touch is kept under its user id (sessions.hit_of)
    if env.user_id and "user" not in out:
        out["user"] = env.user_id
    for kind in _ID_KINDS:
        value = env.ids.get(kind)
        if value and kind not in out:
            out[kind] = str(value)
    if env.type == "lease" and env.properties.get("lease_id"):
        out["lease"] = str(env.properties["lease_id"])
    return out


def _evidence(env: Envelope, hub: str, other: str) -> Evidence:
    """How the event vouches that hub and other are one person."""
    kinds = {hub, other}
    if "anon" in kinds:
        return Evidence.OBSERVED  # a cookie: what a browser sent, whoever uses it
    if env.type == "call" and kinds == {"call", "phone"}:
        return Evidence.CALL  # the caller's number comes from the phone network
    if env.type == "message" and kinds == {"chat", "phone"}:
        return Evidence.MESSENGER  # the platform's account phone (WhatsApp wa_id)
    if "crm_contact" in kinds or (env.type == "deal" and "deal" in kinds and kinds & {"phone", "email", "crm_contact"}):
        return Evidence.CRM  # the CRM's own record ties them
    if env.type == "identify" and "user" in kinds:
        return Evidence.LOGIN  # the site's authenticated backend says so
    return Evidence.OBSERVED


def links_of(env: Envelope, subject: tuple[str, str] | None) -> tuple[LinkRecord, ...]:
    """The links of an event whose subject (conversions.subject_of) is `subject`."""
    ids = identifiers_of(env, subject)
    if len(ids) < 2:
        return ()
    if env.type == "identify" and "crm_contact" in ids:
        hub = "crm_contact"
    else:
        hub = next(iter(ids))  # the subject when there is one (identifiers_of puts it first)
    at = env.timestamp.isoformat()
    hub_text = f"{hub}:{ids[hub]}"
    out = []
    for kind, value in ids.items():
        if kind == hub:
            continue
        out.append(LinkRecord(env.project, hub_text, f"{kind}:{value}", _evidence(env, hub, kind).value,
                              env.event_id, at))
    return tuple(out)
