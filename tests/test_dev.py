"""``kafka-sidecar dev``: a broker, a trickling topic and the sidecar, with the commands to try a client.

The test runs the command as a user would, runs the Python example exactly as it prints it, then
stops it with Ctrl-C (SIGINT) and reads its summary.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_support import wait_for

from sidecar.devtools.local_broker import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def test_dev_serves_until_ctrl_c_and_its_printed_python_command_receives_records(tmp_path: Path) -> None:
    grpc_address, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    out = tmp_path / "dev.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIDECAR_"))}
    with out.open("wb") as sink:
        dev = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "dev", "--grpc-address", grpc_address, "--http-address", http],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    try:
        wait_for("the ready line", lambda: "[dev] ready:" in out.read_text(), timeout=60)
        line = next(x for x in out.read_text().splitlines() if x.strip().startswith("Python:"))
        command = line.split(":", 1)[1].strip()
        assert command == f"SIDECAR_GRPC_ADDRESS={grpc_address} python clients/python/examples/ack_all.py"
        assignment, script = shlex.split(command)[0], shlex.split(command)[2]
        example_env = {**env, assignment.split("=")[0]: assignment.split("=", 1)[1]}
        example = subprocess.Popen(
            [sys.executable, script], stdout=subprocess.PIPE, env=example_env, cwd=REPO, text=True
        )
        try:
            assert example.stdout is not None
            got = [example.stdout.readline() for _ in range(3)]  # the trickle: 2 a second
        finally:
            example.kill()
            example.wait(10)
        assert all(re.match(r"dev-\w+\[\d+\]@\d+ key=b'key-\d' value=b'\{\"n\": \d+", g) for g in got), got
        time.sleep(1.5)  # a commit interval: the acks reach the broker
        dev.send_signal(signal.SIGINT)
        assert dev.wait(60) == 0, out.read_text()
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait(10)
    summary = re.search(r"stopped: produced (\d+), acked (\d+), committed (\d+)", out.read_text())
    assert summary, out.read_text()
    produced, acked, committed = map(int, summary.groups())
    assert produced >= 3
    assert acked >= 1  # the example is SIGKILLed: its last acks may not have left
    assert committed == acked
    assert "Traceback" not in out.read_text()


def test_dev_says_in_one_line_why_the_sidecar_could_not_start(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIDECAR_"))}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "sidecar",
                "dev",
                "--grpc-address",
                f"127.0.0.1:{port}",
                "--http-address",
                f"127.0.0.1:{free_port()}",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=90,
        )
    assert done.returncode == 1
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in done.stdout, done.stdout
