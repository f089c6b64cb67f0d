"""Which modules of the compiled hot path this install has.

``setup.py`` builds them where a C compiler is found; where one is missing, each module's Python
twin runs instead (``records.COMPILED``, ``bulk.COMPILED``, ``responses.COMPILED``; without
``native.COMPILED`` the member takes records through confluent-kafka's ``consume()``). The daemon warns
about that at start, and the project's own installs (``.ci/install-app``, the image) refuse it.
"""

from __future__ import annotations

from sidecar.api import responses
from sidecar.core import bulk, records
from sidecar.kafka import native


def missing() -> list[str]:
    """The sources of the compiled modules this install lacks (empty: all built)."""
    built = {
        "sidecar/core/_fetch.c": records.COMPILED,
        "sidecar/core/_bulk.c": bulk.COMPILED,
        "sidecar/api/_batch.c": responses.COMPILED,
        "sidecar/kafka/_native.c": native.COMPILED,
    }
    return [source for source, ok in built.items() if not ok]
