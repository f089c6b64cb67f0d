"""Prometheus metrics of the sidecar, served on SIDECAR_HTTP_ADDRESS at /metrics.

Every metric is a module-level prometheus-client object in the default registry, so any module adds
to one with ``from sidecar import metrics`` and ``metrics.RECORDS_DEAD_LETTERED.inc(n)``.
To add a metric, declare it here (the ``kafka_consumer_*`` names follow the usual consumer-metric names,
the ``kafka_sidecar_*`` names are the sidecar's own), and update it per batch or per event, never per
record, so metrics stay off the hot path.

Labels are kept small: per-partition series (``topic``, ``partition``) only for lag, where the
partition is the point; everything else is per process. Counters are exposed with the ``_total``
suffix, as Prometheus clients name them (``kafka_consumer_rebalance_count`` is scraped as
``kafka_consumer_rebalance_count_total``).
"""

from __future__ import annotations

import urllib.request

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.parser import text_string_to_metric_families

# The *_created series double the exposition and say nothing a restart counter would not.
disable_created_metrics()  # type: ignore[no-untyped-call]

# -- the consumer group ----------------------------------------------------------------------------

REBALANCE_COUNT = Counter(
    "kafka_consumer_rebalance_count",
    "Rebalances this member took part in (one per new assignment, including the first join)",
)
REBALANCE_DURATION_MS = Histogram(
    "kafka_consumer_rebalance_duration_ms",
    "From this member's first sign of a rebalance (revoke, loss, or subscribe for the first join) "
    "to its new assignment being in place, in milliseconds",
    buckets=(5, 25, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 60000, 120000),
)
REBALANCE_EVENTS = Counter(
    "kafka_sidecar_rebalance_events", "Rebalance callbacks seen by the member", ["kind"]
)
LAG = Gauge(
    "kafka_consumer_lag",
    "Per assigned partition: high watermark minus committed offset (librdkafka statistics; "
    "refreshed from the broker while fetching is paused). Absent until the partition has a commit.",
    ["topic", "partition"],
)
ASSIGNED_PARTITIONS = Gauge("kafka_consumer_assigned_partitions", "Partitions assigned to this member")

# -- the share group (SIDECAR_GROUP_TYPE=share) -------------------------------------------------

SHARE_ACQUIRED = Counter(
    "kafka_sidecar_share_records_acquired", "Records the share consumers acquired (each counts a delivery)"
)
SHARE_ACCEPTED = Counter("kafka_sidecar_share_records_accepted", "Records acknowledged ACCEPT (acked)")
SHARE_RELEASED = Counter(
    "kafka_sidecar_share_records_released",
    "Records acknowledged RELEASE, back to the group for another delivery, by why: nacked, "
    "stream_ended, hold_ended (the lock was about to end), unclaimed (its hold ended before any app "
    "stream took it) or drain (shutdown)",
    ["why"],
)
SHARE_REJECTED = Counter(
    "kafka_sidecar_share_records_rejected", "Records acknowledged REJECT (archived: rejected or given up)"
)
SHARE_ACKS_CONFIRMED = Counter(
    "kafka_sidecar_share_acks_confirmed",
    'Acknowledgements (accept, release, reject) the broker confirmed: a share group\'s "committed"',
)
SHARE_ACK_FAILURES = Counter(
    "kafka_sidecar_share_ack_failures",
    "Acknowledgements the broker refused, their records' locks having ended (delivered again)",
)

# -- records --------------------------------------------------------------------------------------

RECORDS_RECEIVED = Counter("kafka_sidecar_records_received", "Records fetched from Kafka")
RECORDS_DELIVERED = Counter(
    "kafka_sidecar_records_delivered", "Records sent to app streams (incl. redeliveries)"
)
RECORDS_REDELIVERED = Counter(
    "kafka_sidecar_records_redelivered", "Records put back for redelivery (stream ended or nack)"
)
RECORDS_ACKED = Counter("kafka_sidecar_records_acked", "Records acked by the app")
RECORDS_NACKED = Counter("kafka_sidecar_records_nacked", "Records nacked by the app")
RECORDS_REJECTED = Counter("kafka_sidecar_records_rejected", "Records the app rejected (not to be retried)")
RECORDS_DEAD_LETTERED = Counter(
    "kafka_sidecar_records_dead_lettered", "Records written to the dead-letter topic"
)
DEAD_LETTER_FAILURES = Counter(
    "kafka_sidecar_dead_letter_failures",
    "Failed writes to the dead-letter topic (tried again; never dropped)",
)
RECORDS_SKIPPED = Counter(
    "kafka_sidecar_records_skipped",
    "Records that ran out of attempts and were skipped (SIDECAR_ON_EXHAUSTED=skip)",
)
RECORDS_PARKED = Gauge(
    "kafka_sidecar_records_parked", "Records out of attempts and parked, holding their partition's commit"
)
LEASES_EXTENDED = Counter("kafka_sidecar_leases_extended", "Record leases the app extended")
LEASES_EXPIRED = Counter("kafka_sidecar_leases_expired", "Records whose lease expired unacked (redelivered)")
ACKS_REJECTED = Counter("kafka_sidecar_acks_rejected", "Ack/nack requests rejected", ["reason"])
STREAMS_REJECTED = Counter("kafka_sidecar_streams_aborted", "App streams ended for a malformed request")
STREAMS_REFUSED = Counter(
    "kafka_sidecar_streams_refused", "App streams refused because SIDECAR_MAX_STREAMS were open"
)

# -- what the sidecar holds -----------------------------------------------------------------------

BUFFERED_RECORDS = Gauge("kafka_sidecar_buffered_records", "Records fetched and not yet delivered")
IN_FLIGHT_RECORDS = Gauge("kafka_sidecar_in_flight_records", "Records delivered and not yet acked")
BACKLOG_RECORDS = Gauge(
    "kafka_sidecar_backlog_records",
    "Records fetched and not yet acked (buffered + in flight): what backpressure limits",
)
BACKLOG_BYTES = Gauge("kafka_sidecar_backlog_bytes", "Bytes of the records fetched and not yet acked")
PAUSED = Gauge("kafka_sidecar_fetch_paused", "1 while fetching is paused for backpressure")
PAUSED_PARTITIONS = Gauge(
    "kafka_sidecar_paused_partitions", "Assigned partitions not fetched now (backpressure or held)"
)
HELD_PARTITIONS = Gauge(
    "kafka_sidecar_held_partitions",
    "Partitions not fetched ahead because their gaps fill the commit metadata",
)
APP_STREAMS = Gauge("kafka_sidecar_app_streams", "Connected app streams")

# -- commits --------------------------------------------------------------------------------------

COMMITS = Counter("kafka_sidecar_commits", "Offset commits", ["mode", "result"])
COMMIT_SECONDS = Histogram(
    "kafka_sidecar_commit_seconds", "Commit latency, from sending a commit to the broker's answer", ["mode"]
)


def total(*counters: Counter) -> int:
    """The summed totals of unlabelled counters in this process (read through the public collect())."""
    return int(
        sum(s.value for c in counters for m in c.collect() for s in m.samples if s.name.endswith("_total"))
    )


def scrape(http_address: str, timeout: float = 5.0) -> dict[str, float]:
    """Read a running sidecar's /metrics as {"name{label=value,...}": value} (demo, tests, harness)."""
    with urllib.request.urlopen(f"http://{http_address}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    return parse(text)


def parse(text: str) -> dict[str, float]:
    """Prometheus text exposition as {"name{label=value,...}": value}, labels sorted by name."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
