"""The compiled hot path: ``sidecar/core/_fetch.c`` (``records.from_fetch``),
``sidecar/core/_bulk.c`` (the dispatcher's per-record loops, ``sidecar.core.bulk``),
``sidecar/api/_batch.c`` (``responses.records_response``) and ``sidecar/kafka/_native.c`` (records
taken from librdkafka directly, ``sidecar.kafka.native``); everything else about the package is in
pyproject.toml.

All are optional: built without a C compiler, the package runs the same code in Python
(``records.COMPILED``, ``bulk.COMPILED``, ``responses.COMPILED`` and ``native.COMPILED`` say which,
and the daemon warns at start).
"""

from setuptools import Extension, setup

# What they share (slot offsets, varints; the record's layout) is in sidecar/core/_wire.h and _record.h.
SHARED = {
    "include_dirs": ["sidecar/core"],
    "depends": ["sidecar/core/_wire.h", "sidecar/core/_record.h"],
    "optional": True,
}

setup(
    ext_modules=[
        Extension("sidecar.core._fetch", ["sidecar/core/_fetch.c"], **SHARED),
        Extension("sidecar.core._bulk", ["sidecar/core/_bulk.c"], **SHARED),
        Extension("sidecar.api._batch", ["sidecar/api/_batch.c"], **SHARED),
        # librdkafka is confluent-kafka's own copy, found and opened at run time (sidecar/kafka/native.py).
        Extension("sidecar.kafka._native", ["sidecar/kafka/_native.c"], libraries=["dl"], **SHARED),
    ]
)
