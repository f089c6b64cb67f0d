"""The share-group kind (KIP-932, ``SIDECAR_GROUP_TYPE=share``): the broker keeps each record's state
(acquired under a lock, accepted, released or rejected, its delivery count), so this kind has no offsets,
assignment or revokes of its own.

- ``terms``, ``dispatch``: pure: acquired records to app streams, and each app request to one
  decision per record within the record's hold;
- ``pipeline``: the event-loop side (the ``Group`` the service and daemon see);
- ``handoff``: where the share consumers' threads and the loop meet;
- ``member``: the share consumers, each on its own thread (the only share code that consumes);
- ``group_config``: what the member asks Kafka before its consumers start (the group's terms, and
  librdkafka's check of the share consumer's properties).
"""
