"""The pure core both group kinds share: records and their wire form, delivery vocabulary, offset
tracking and gap metadata, and applying an app's requests. No librdkafka, no gRPC, no I/O.
"""
