"""The command line's own answers: help that names the configuration, and demo options checked up front."""

from __future__ import annotations

import pytest

from sidecar.cli import main


def test_run_help_names_the_required_variables_and_where_the_rest_are(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["run", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "required: KAFKA_BOOTSTRAP_SERVERS (host:port,...), KAFKA_GROUP_ID, SIDECAR_TOPICS" in text
    assert "kafka-sidecar config" in text


@pytest.mark.parametrize(("option", "value"), [("--records", "0"), ("--partitions", "0"), ("--records", "x")])
def test_demo_refuses_counts_below_one_before_starting_anything(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["demo", option, value])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: expected a whole number >= 1" in err
    assert "Traceback" not in err
