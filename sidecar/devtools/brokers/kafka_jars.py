"""Apache Kafka's jars: fetched from Maven Central by the project's own build description, and cached.

Why Maven: the broker's jars are published on Maven Central, so ``apache-kafka/pom.xml`` beside this
module can name them and ``mvn dependency:copy-dependencies`` can copy them, with their runtime
dependencies, into one directory: the ``libs/`` that Kafka's own start scripts put on the classpath.
The result is cached under ``$XDG_CACHE_HOME/kafka-sidecar``, keyed by the pom's content, so a version
change re-assembles and everything else starts from the cache. Java (17+, as Kafka 4.x needs) and
Maven are checked with errors that say what to install.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["BrokerSetupError", "assemble", "find_java", "kafka_version"]

#: The build description: its content keys the cache, so an edit re-assembles.
BUILD_DIR = Path(__file__).resolve().parent / "apache-kafka"
POM = BUILD_DIR / "pom.xml"

#: Kafka 4.x brokers run on Java 17 or newer.
MIN_JAVA = 17


class BrokerSetupError(RuntimeError):
    """Java or Maven missing or too old, or the jars could not be fetched: the message says what to do."""


# -- assembly -------------------------------------------------------------------------------------------


def kafka_version() -> str:
    """The Apache Kafka version the build description names."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise BrokerSetupError(f"{POM} names no <kafka.version>")
    return match.group(1).strip()


def cache_root() -> Path:
    """Where assembled brokers are kept: ``$XDG_CACHE_HOME/kafka-sidecar`` (``~/.cache`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-sidecar"


def libs_dir() -> Path:
    """The cached ``libs/`` for the current build description (it may not be assembled yet)."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    return cache_root() / f"apache-kafka-{kafka_version()}-{digest}" / "libs"


def find_java() -> str:
    """The ``java`` to run the broker with (``$JAVA_HOME/bin/java``, else PATH), checked to be >= 17."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    hint = "install Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    if not java or not Path(java).exists():
        raise BrokerSetupError(f"Apache Kafka needs Java, and none was found: {hint}")
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerSetupError(f"cannot run {java} -version ({exc}): {hint}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerSetupError(f"Apache Kafka 4.x needs Java {MIN_JAVA}+, {java} is {major or out!r}: {hint}")
    return java


def assemble(*, quiet: bool = False) -> Path:
    """The broker's ``libs/``: from the cache, or fetched by Maven (minutes the first time), then cached.

    Safe to call from several processes at once: one assembles under a file lock, the others wait and
    reuse its result. The directory is built beside its final place and renamed, so a half-copied
    ``libs/`` is never taken for a complete one.
    """
    libs = libs_dir()
    if (libs / ".complete").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerSetupError(
            "assembling Apache Kafka needs Maven, and `mvn` is not on PATH: install it "
            "(Debian: apt-get install maven); it fetches the broker's jars from Maven Central"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    with (libs.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (libs / ".complete").exists():
            return libs
        if not quiet:
            print(
                f"assembling Apache Kafka {kafka_version()} from Maven Central into {libs} "
                "(once; about 45 MB)...",
                file=sys.stderr,
                flush=True,
            )
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
        cmd = [
            mvn,
            "--batch-mode",
            "--no-transfer-progress",
            "--file",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, check=False)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise BrokerSetupError("Maven did not finish assembling Apache Kafka within 20 minutes") from exc
        if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            errors = [line for line in done.stdout.splitlines() if "ERROR" in line][:8]
            raise BrokerSetupError(
                f"Maven could not assemble Apache Kafka {kafka_version()} (exit {done.returncode}): "
                + ("\n".join(errors) or done.stdout[-2000:] + done.stderr[-2000:])
            )
        (staging / ".complete").write_text(f"{kafka_version()}\n")
        if libs.exists():
            shutil.rmtree(libs)
        staging.rename(libs)
        if not quiet:
            jars = len(list(libs.glob("*.jar")))
            print(f"assembled {jars} jars in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    return libs
