"""librdkafka-side helpers both members use: client errors and statistics, broker reachability, the
dead-letter producer.
"""
