"""A SASL_SSL listener for the local Apache Kafka: SCRAM-SHA-512 users, TLS, and ACLs enforced.

What a production cluster asks of a client, on a second listener beside the plaintext one. The
plaintext listener (and the KRaft controller's) stays open to the local admin: its anonymous principal
is a super user, so tests create topics, users' ACLs and read offsets there, while the sidecar under
test connects over SASL_SSL with credentials and only the ACLs it was given. Certificates come from
the caller (PEM files): this module only describes the listener to the broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.devtools.local_broker import free_port

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SaslSsl:
    """The listener: the broker's key and certificate chain in one PEM file (the key unencrypted,
    PKCS#8), and the SCRAM users (name -> password), made when the storage is formatted."""

    keystore_pem: Path
    users: Mapping[str, str]
    port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def server_config(self, plaintext_port: int, controller_port: int) -> dict[str, str]:
        """Settings that add the listener and turn the authorizer on (plaintext stays a super user)."""
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{plaintext_port},SASL_SSL://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{plaintext_port},SASL_SSL://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(self.keystore_pem),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": "User:ANONYMOUS",
        }

    def format_args(self) -> list[str]:
        """``StorageTool format`` arguments that create the SCRAM users in the new cluster's metadata."""
        args = []
        for name, password in self.users.items():
            args += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
        return args

    def client_config(self, user: str, password: str, ca_pem: Path) -> dict[str, str]:
        """librdkafka properties for a client of this listener."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": MECHANISM,
            "sasl.username": user,
            "sasl.password": password,
            "ssl.ca.location": str(ca_pem),
        }
