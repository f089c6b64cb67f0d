"""`.ci/install-app`, the install the Docker image's build stage runs, run for real.

The image's build stage runs it (.ci/image, test_image.py); here it runs on its own, quicker to read
when it breaks: the script builds a wheel from this checkout and installs it with its runtime
dependencies (from PyPI, as in the image build) into a fresh venv, and the installed command must work
from there alone.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from kafka_helpers import build_env

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / ".ci" / "install-app"
CONFIG_ENV = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    "KAFKA_GROUP_ID": "orders",
    "SIDECAR_TOPICS": "orders",
    "SIDECAR_GRPC_ADDRESS": "unix:///run/kafka-sidecar/sidecar.sock",
    "POD_NAME": "orders-0",
}


def run(
    argv: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run outside the checkout, with no KAFKA_*/SIDECAR_* from the outer shell and no PYTHONPATH, so
    only the installed venv can answer."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        argv,
        cwd=cwd,
        env=build_env(base, env, strip_owned=True),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("install-app") / "venv"
    result = run(["bash", str(SCRIPT), str(dest)], cwd=dest.parent, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip() == "kafka-sidecar 0.1.0"
    return dest


def test_installed_command_prints_the_configuration(installed: Path) -> None:
    result = run([str(installed / "bin" / "kafka-sidecar"), "config"], cwd=installed, env=CONFIG_ENV)
    assert result.returncode == 0, result.stderr
    assert "SIDECAR_GRPC_ADDRESS" in result.stdout
    assert "unix:///run/kafka-sidecar/sidecar.sock" in result.stdout
    assert "group.instance.id" in result.stdout
    assert "orders-0" in result.stdout


def test_installed_command_refuses_a_bad_configuration(installed: Path) -> None:
    env = {**CONFIG_ENV, "SIDECAR_DRAIN_TIMEOUT": "20000"}
    result = run([str(installed / "bin" / "kafka-sidecar"), "config"], cwd=installed, env=env)
    assert result.returncode == 2
    assert "SIDECAR_DRAIN_TIMEOUT" in result.stderr


def test_venv_holds_the_built_package_and_no_installer(installed: Path) -> None:
    python = str(installed / "bin" / "python")
    where = run([python, "-c", "import sidecar; print(sidecar.__file__)"], cwd=installed)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed), "sidecar must come from the venv"
    no_pip = run([python, "-m", "pip", "--version"], cwd=installed)
    assert no_pip.returncode != 0
    assert "No module named pip" in no_pip.stderr


def test_refuses_to_install_over_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("keep me")
    result = run(["bash", str(SCRIPT), str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 2
    assert "not empty" in result.stderr
    assert (tmp_path / "something").read_text() == "keep me"
