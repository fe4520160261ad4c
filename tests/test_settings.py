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


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("EXECSIGHT_SAMPLE_INTERVAL_S", "0"),  # 0 made the collector sample ~900 times a second
        ("EXECSIGHT_SAMPLE_INTERVAL_S", "-1"),
        ("EXECSIGHT_SAMPLE_INTERVAL_S", "nan"),
        ("EXECSIGHT_SAMPLE_INTERVAL_S", "inf"),
        ("EXECSIGHT_HOST_INTERVAL_S", "0"),
        ("EXECSIGHT_UI_PORT", "0"),
        ("EXECSIGHT_UI_PORT", "70000"),
        ("EXECSIGHT_CORRELATOR_METRICS_PORT", "-1"),
        ("EXECSIGHT_SPOOL_MAX_BYTES", "0"),
        ("EXECSIGHT_RUN_TIMEOUT_S", "0"),
        ("EXECSIGHT_SHORT_LIVED_S", "0"),
        ("EXECSIGHT_ONPREM_HOURLY_USD", "-0.1"),
        ("EXECSIGHT_SWEEP_INTERVAL_S", "0"),
        ("EXECSIGHT_IDLE_AFTER_S", "-5"),
        ("EXECSIGHT_IDLE_CPU_RATIO", "1.5"),
        ("EXECSIGHT_IDLE_CPU_RATIO", "0"),
    ],
)
def test_numbers_out_of_range_are_refused_naming_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"{var}='{value}': expected a number"):
        load_settings({var: value})


def test_every_numeric_setting_has_a_range_and_its_bounds_are_accepted() -> None:
    from execsight import settings as mod

    numeric = {v.env for v in mod.SETTINGS_DOC if v.default.replace(".", "", 1).isdigit()}
    assert numeric == set(mod.RANGES)
    for var, (lo, hi, lo_ok) in mod.RANGES.items():
        ints = var in {"EXECSIGHT_UI_PORT", "EXECSIGHT_COLLECTOR_METRICS_PORT", "EXECSIGHT_CORRELATOR_METRICS_PORT",
                       "EXECSIGHT_SPOOL_MAX_BYTES"}
        fmt = (lambda x: str(int(x))) if ints else repr
        load_settings({var: fmt(hi)})
        if lo_ok:
            load_settings({var: fmt(lo)})
        else:
            with pytest.raises(SettingsError, match=var):
                load_settings({var: fmt(lo)})
    assert load_settings({"EXECSIGHT_SAMPLE_INTERVAL_S": "0.25"}).sample_interval_s == 0.25
