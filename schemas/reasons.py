"""The closed set of reasons an input is refused or dead-lettered.

Every refusal is counted under one of these names (Prometheus label, dead-letter column), so the
set is closed: a new reason is a contract change.
"""

from enum import StrEnum


class RejectReason(StrEnum):
    invalid_json = "invalid_json"
    invalid_utf8 = "invalid_utf8"
    too_large = "too_large"
    too_deep = "too_deep"
    unknown_type = "unknown_type"
    schema_violation = "schema_violation"
    bad_signature = "bad_signature"
    stale_signature = "stale_signature"
    unknown_key = "unknown_key"
    rate_limited = "rate_limited"
    origin_not_allowed = "origin_not_allowed"
    unsupported_media_type = "unsupported_media_type"
    bad_encoding = "bad_encoding"  # Content-Encoding unknown, or a corrupt gzip/deflate body
    # a value the warehouse could not hold (schemas/values.py): refused at the edge with a 400
    invalid_amount = "invalid_amount"  # money not finite, too many digits, or a sign its kind forbids
    time_out_of_range = "time_out_of_range"  # a time outside what the warehouse's DateTime64 holds
    value_too_long = "value_too_long"  # an id, UTM value, URL or text longer than its limit
    # found invalid after acceptance, in the processors (goes to the dead-letter topic)
    undecodable = "undecodable"
    processing_error = "processing_error"
    # the warehouse refused the row (its reason is the dead letter's detail); the sink went on
    warehouse_refused = "warehouse_refused"
