"""kafka-sidecar: the Kafka group member that lives beside your app.

Data flows one way: Kafka -> member (librdkafka threads) -> handoff -> pipeline/dispatcher (event
loop) -> service (gRPC stream) -> app. Acks flow back: app -> service -> pipeline -> dispatcher (the
tracker, for a consumer group) -> handoff -> member commits (or share acknowledgements).

The layers, one package each:

- ``core``: pure logic both group kinds share (records, wire form, delivery vocabulary, tracker, gaps);
- ``consumer`` and ``share``: the two group kinds, each a pure dispatcher, an event-loop pipeline, a
  hand-off and a member (the only code that talks to librdkafka), behind the seam in ``group``;
- ``kafka``: librdkafka-side helpers both members use (errors, reachability, the dead-letter producer);
- ``api``: the app-facing gRPC service (the only code that talks to gRPC);
- ``ops``: health, metrics, logs, progress; ``config``: the environment's settings;
- ``assembly`` builds a group kind, ``daemon`` runs it, ``cli`` is the command line;
- ``devtools``: the demo, ``kafka-sidecar dev``, local brokers and test helpers (never on the data path).
"""

__version__ = "0.1.0"
