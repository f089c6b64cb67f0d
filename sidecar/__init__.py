"""kafka-sidecar: the Kafka consumer-group member that lives beside your app.

Data flows one way: Kafka -> member (poll thread) -> handoff -> pipeline/dispatcher (event loop)
-> service (gRPC stream) -> app. Acks flow back: app -> service -> pipeline -> dispatcher/tracker
-> handoff -> member commits.
"""

__version__ = "0.1.0"
