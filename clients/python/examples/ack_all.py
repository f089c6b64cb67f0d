"""Print and ack every record the sidecar delivers: python examples/ack_all.py

Ctrl-C or SIGTERM (docker stop, the end of a pod) ends it cleanly: the consumer closes, sending the
acks still pending, and the process exits 0.
"""

import os
import signal

from kafka_sidecar_client import Consumer


def _stop(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the loop the way Ctrl-C does


signal.signal(signal.SIGTERM, _stop)
address = os.environ.get("SIDECAR_GRPC_ADDRESS", "127.0.0.1:50051")

try:
    with Consumer(address) as consumer:
        for record in consumer:
            where = f"{record.topic}[{record.partition}]@{record.offset}"
            print(f"{where} key={record.key!r} value={record.value!r}")
            consumer.ack(record)
except KeyboardInterrupt:
    pass  # leaving the with-block closed the consumer: its pending acks went out
