"""The one compiled module, ``sidecar/core/_fetch.c`` (``records.from_fetch`` in C); everything else
about the package is in pyproject.toml.

The extension is optional: built without a C compiler, the package runs the same loop in Python
(``records.COMPILED`` says which, and the daemon logs it at start).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sidecar.core._fetch", ["sidecar/core/_fetch.c"], optional=True)])
