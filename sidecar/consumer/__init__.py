"""The consumer-group kind (classic or KIP-848): the dispatcher and its parts (pure), the event-loop
pipeline, the hand-off, and the member, the only code of this kind that talks to librdkafka.
"""
