"""Brokers for development and tests, never on the daemon's data path.

- ``apache_kafka``: Apache Kafka 4.x assembled from Maven Central and run as a single KRaft node: the
  reference every group guarantee is tested against.
- ``sasl_ssl``: a SASL_SSL listener with SCRAM users and ACLs for ``apache_kafka``.
- ``sidecar.devtools.embedded``: Tansu, the demo's embedded broker (40 ms start, no JVM);
  ``sidecar.devtools.local_broker`` their shared process handling; ``sidecar.devtools.kafka_tools`` the
  small client helpers (create, produce, read commits) that work on any broker.
"""
