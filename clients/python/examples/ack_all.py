"""Print and ack every record the sidecar delivers: python examples/ack_all.py"""

import os

from kafka_sidecar_client import Consumer

address = os.environ.get("SIDECAR_GRPC_ADDRESS", "127.0.0.1:50051")

with Consumer(address) as consumer:
    for record in consumer:
        print(f"{record.topic}[{record.partition}]@{record.offset} key={record.key!r} value={record.value!r}")
        consumer.ack(record)
