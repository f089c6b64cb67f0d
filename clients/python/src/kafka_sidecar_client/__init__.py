"""Python client of kafka-sidecar: receive Kafka records from the sidecar beside you, and ack them.

The sidecar is the Kafka consumer-group member and commits only what was acked, so delivery is
at-least-once: process records idempotently. ``AsyncConsumer`` is the asyncio API, ``Consumer`` the
blocking one (the same client, run on a background thread).
"""

from kafka_sidecar_client._async import AsyncConsumer
from kafka_sidecar_client._blocking import Consumer
from kafka_sidecar_client._records import AssignmentChange, Record, Rejection, SidecarError
from kafka_sidecar_client._security import TLS

__version__ = "0.1.0"

__all__ = [
    "TLS",
    "AssignmentChange",
    "AsyncConsumer",
    "Consumer",
    "Record",
    "Rejection",
    "SidecarError",
    "__version__",
]
