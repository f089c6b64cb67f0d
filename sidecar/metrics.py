"""Prometheus metrics of the sidecar, served on SIDECAR_HTTP_ADDRESS at /metrics.

Module-level objects in the default registry, updated per batch (never per record) so they stay off
the hot path. Labels are kept small: no per-partition series here.
"""

from __future__ import annotations

import urllib.request

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

RECORDS_RECEIVED = Counter("kafka_sidecar_records_received", "Records fetched from Kafka")
RECORDS_DELIVERED = Counter(
    "kafka_sidecar_records_delivered", "Records sent to app streams (incl. redeliveries)"
)
RECORDS_REDELIVERED = Counter(
    "kafka_sidecar_records_redelivered", "Records put back for redelivery (stream ended or nack)"
)
RECORDS_ACKED = Counter("kafka_sidecar_records_acked", "Records acked by the app")
RECORDS_NACKED = Counter("kafka_sidecar_records_nacked", "Records nacked by the app")
ACKS_REJECTED = Counter("kafka_sidecar_acks_rejected", "Ack/nack requests rejected", ["reason"])
STREAMS_REJECTED = Counter("kafka_sidecar_streams_aborted", "App streams ended for a malformed request")
COMMITS = Counter("kafka_sidecar_commits", "Offset commits", ["mode", "result"])
COMMIT_SECONDS = Histogram("kafka_sidecar_commit_seconds", "Synchronous commit latency")
REBALANCE_EVENTS = Counter(
    "kafka_sidecar_rebalance_events", "Rebalance callbacks seen by the member", ["kind"]
)
ASSIGNED_PARTITIONS = Gauge("kafka_consumer_assigned_partitions", "Partitions assigned to this member")
APP_STREAMS = Gauge("kafka_sidecar_app_streams", "Connected app streams")
BUFFERED_RECORDS = Gauge("kafka_sidecar_buffered_records", "Records fetched and not yet delivered")
IN_FLIGHT_RECORDS = Gauge("kafka_sidecar_in_flight_records", "Records delivered and not yet acked")
PAUSED = Gauge("kafka_sidecar_fetch_paused", "1 while fetching is paused for backpressure")


def scrape(http_address: str, timeout: float = 5.0) -> dict[str, float]:
    """Read a running sidecar's /metrics as {"name{label=value,...}": value} (demo and tests)."""
    with urllib.request.urlopen(f"http://{http_address}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
