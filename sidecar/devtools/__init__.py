"""Developer tools, not the daemon: the demo, `kafka-sidecar dev`, local brokers (Tansu, Apache
Kafka) and client helpers for tests and benchmarks.
"""
