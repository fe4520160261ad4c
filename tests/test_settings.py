from __future__ import annotations

import pytest

from execsight.settings import SettingsError, load_settings


def test_defaults_point_at_the_local_stack() -> None:
    s = load_settings({"EXECSIGHT_HOST_ID": "h1"})
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.database_url.endswith("@127.0.0.1:5432/execsight")
    assert s.host_id == "h1"
    assert s.topic("execsight.raw.process") == "execsight.raw.process"


def test_prefix_and_lists_are_parsed() -> None:
    s = load_settings({"EXECSIGHT_TOPIC_PREFIX": "t1.", "EXECSIGHT_AWS_REGIONS": "us-east-1, eu-west-1,"})
    assert s.topic("execsight.raw.host") == "t1.execsight.raw.host"
    assert s.aws_regions == ("us-east-1", "eu-west-1")


@pytest.mark.parametrize(
    ("var", "value"),
    [("EXECSIGHT_UI_PORT", "eighty"), ("EXECSIGHT_SAMPLE_INTERVAL_S", "1s"), ("EXECSIGHT_LOG_LEVEL", "loud")],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=var):
        load_settings({var: value})
