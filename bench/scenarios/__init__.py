"""The scenario harness: proves, with a broker and real processes, that the group's freeze is gone.

``python -m bench.scenarios [--full] [--only NAME] [--out DIR]`` starts a local Apache Kafka, a group
of members and a producer at a steady rate, plays scripted events (rolling restarts, kill -9, a slow
handler) and measures, from the outside, what each partition went through: per-partition delivery
timelines, lag over time, the longest stall of a partition with a backlog, rebalances, evictions,
records lost (must be 0) and duplicates. A scenario runs with the sidecar (each member a
``kafka-sidecar`` process with an app beside it) and against a baseline of plain confluent-kafka
consumers with the defaults the field warns about (eager assignment, no static membership, 45 s
session timeout). The sidecar also runs as a KIP-848 member and, where a share group (KIP-932) has
something to show (app kill, slow handler, one slow app, and scale-out: 12 app workers on 6
partitions), as a share-group member. It prints two side-by-side tables (the group's troubles; the
work: throughput, records per worker, redelivery after a kill) and writes ``report.json`` and one
PNG per scenario.

``python -m bench.scenarios practical`` runs the guided practical: five short steps, each showing the
plain-consumer version next to the sidecar version.

Module map: ``settings`` (the CI and full parameter sets), ``handler`` (the work both variants do),
``app`` and ``plain`` (the member processes), ``processes``/``members`` (starting and stopping them),
``producer``, ``scenarios`` (the scripts), ``runner`` (one run), ``analysis`` (pure figures),
``plot``, ``report``, ``practical``.
"""
