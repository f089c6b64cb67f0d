"""The client's one compiled loop, ``src/kafka_sidecar_client/_fill.c`` (the records of a batch, made
for ``_records.records_from_batch``); everything else about the package is in pyproject.toml.

It is optional: installed without a C compiler, the client makes the same records in Python
(``kafka_sidecar_client._records.COMPILED`` says which).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("kafka_sidecar_client._fill", ["src/kafka_sidecar_client/_fill.c"], optional=True),
    ]
)
