"""The security settings: TLS and mutual TLS files, the bearer-token file, the socket's mode, the stream
limit, and librdkafka secrets read from files (``KAFKA_<PROPERTY>_FILE``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import config, error

from sidecar.config import render


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name, text in {"cert": "CERT", "key": "KEY", "ca": "CA", "token": "s3cr3t-token\n"}.items():
        path = tmp_path / name
        path.write_text(text)
        paths[name] = str(path)
    return paths


def test_defaults_are_plain_and_restrictive() -> None:
    c = config()
    assert (c.tls_cert_file, c.tls_key_file, c.tls_client_ca_file, c.grpc_token_file) == (None,) * 4
    assert c.grpc_socket_mode == 0o660
    assert c.max_streams == 1024


def test_tls_and_mutual_tls_files(files: dict[str, str]) -> None:
    c = config(
        SIDECAR_TLS_CERT_FILE=files["cert"],
        SIDECAR_TLS_KEY_FILE=files["key"],
        SIDECAR_TLS_CLIENT_CA_FILE=files["ca"],
    )
    assert (c.tls_cert_file, c.tls_key_file, c.tls_client_ca_file) == (
        files["cert"],
        files["key"],
        files["ca"],
    )


def test_a_certificate_needs_its_key_and_mutual_tls_needs_tls(files: dict[str, str]) -> None:
    assert str(error(SIDECAR_TLS_CERT_FILE=files["cert"])).startswith("SIDECAR_TLS_KEY_FILE is not set")
    assert str(error(SIDECAR_TLS_KEY_FILE=files["key"])).startswith("SIDECAR_TLS_CERT_FILE is not set")
    message = str(error(SIDECAR_TLS_CLIENT_CA_FILE=files["ca"]))
    assert message.startswith("SIDECAR_TLS_CLIENT_CA_FILE=")
    assert "mutual TLS needs TLS" in message


def test_unreadable_files_and_an_empty_token_are_named(files: dict[str, str], tmp_path: Path) -> None:
    message = str(error(SIDECAR_TLS_CERT_FILE=str(tmp_path / "nope.pem"), SIDECAR_TLS_KEY_FILE=files["key"]))
    assert message.startswith("SIDECAR_TLS_CERT_FILE=")
    assert "No such file or directory" in message
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "is empty" in str(error(SIDECAR_GRPC_TOKEN_FILE=str(empty)))
    assert config(SIDECAR_GRPC_TOKEN_FILE=files["token"]).grpc_token_file == files["token"]


@pytest.mark.parametrize(("text", "mode"), [("0600", 0o600), ("660", 0o660), ("0o644", 0o644), ("0", 0)])
def test_socket_mode_is_octal(text: str, mode: int) -> None:
    assert config(SIDECAR_GRPC_SOCKET_MODE=text).grpc_socket_mode == mode


@pytest.mark.parametrize("text", ["rw-rw----", "0800", "07777", "-1", ""])
def test_a_bad_socket_mode_is_refused(text: str) -> None:
    assert str(error(SIDECAR_GRPC_SOCKET_MODE=text)).startswith("SIDECAR_GRPC_SOCKET_MODE=")


def test_the_stream_limit_is_a_count() -> None:
    assert config(SIDECAR_MAX_STREAMS="16").max_streams == 16
    assert str(error(SIDECAR_MAX_STREAMS="0")).startswith("SIDECAR_MAX_STREAMS=")


def test_a_kafka_secret_comes_from_its_file_and_stays_masked(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2-from-a-file\n")
    c = config(KAFKA_SASL_PASSWORD_FILE=str(secret))
    assert c.kafka["sasl.password"] == "hunter2-from-a-file"  # the trailing newline is not the password's
    assert c.sources["sasl.password"] == "KAFKA_SASL_PASSWORD_FILE"
    text = render(c)
    assert "hunter2" not in text
    assert any(
        line.split() == ["sasl.password", "****", "KAFKA_SASL_PASSWORD_FILE"] for line in text.splitlines()
    )


def test_kafka_secret_files_are_for_secrets_only_and_once(tmp_path: Path) -> None:
    path = tmp_path / "value"
    path.write_text("x")
    message = str(error(KAFKA_CLIENT_ID_FILE=str(path)))
    assert message.startswith("KAFKA_CLIENT_ID_FILE=")
    assert "set KAFKA_CLIENT_ID instead" in message
    both = str(error(KAFKA_SASL_PASSWORD="a", KAFKA_SASL_PASSWORD_FILE=str(path)))
    assert "one variable per property" in both
    assert "already sets sasl.password" in both
    missing = str(error(KAFKA_SASL_PASSWORD_FILE=str(tmp_path / "absent")))
    assert missing.startswith("KAFKA_SASL_PASSWORD_FILE=")
    assert "cannot read the secret's file: No such file or directory" in missing
