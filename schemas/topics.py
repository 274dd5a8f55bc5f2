"""Bus topic names. Both run modes use the same names; Kafka prefixes them."""

RAW = "raw"  # every accepted envelope, keyed by project + anonymous id
TOUCHES = "touches"  # enriched touches (one per session once sessions land), keyed by project
CONVERSIONS = "conversions"  # leads, deal stages, sales, payments, refunds
SPEND = "spend"  # ad spend rows with their channel
LEASES = "leases"  # call-tracking numbers shown to visitors
RATES = "rates"  # currency rates per day
DEAD_LETTERS = "dead-letters"  # envelopes found invalid after acceptance, with a reason
LINKS = "links"  # identity links derived from events, keyed by project
IDENTITY = "identity"  # versioned identifier -> person mapping rows, keyed by project
GUARDS = "guards"  # links refused by the shared-device guard, keyed by project
CREDITS = "credits"  # live attribution credits (deltas), keyed by project
MATCHES = "matches"  # links the persons stage makes itself (a call <-> the number lease it matched), for audit

ALL = (RAW, TOUCHES, CONVERSIONS, SPEND, LEASES, RATES, DEAD_LETTERS, LINKS, IDENTITY, GUARDS, CREDITS, MATCHES)


def kafka_topic(prefix: str, name: str) -> str:
    return f"{prefix}.{name}.v1"
