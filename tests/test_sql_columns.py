"""The sink's staging columns come from the Avro records (schemas/sql_columns.py)."""

from __future__ import annotations

import pytest

from execsight.correlator import sink
from execsight.schemas.sql_columns import record_columns, sql_type


def test_avro_types_map_to_postgres_types() -> None:
    assert sql_type(["null", "long"]) == "bigint"
    assert sql_type({"type": "array", "items": "string"}) == "text[]"
    assert sql_type({"type": "enum", "name": "S", "symbols": ["A"]}) == "text"
    assert sql_type("double") == "double precision"
    with pytest.raises(ValueError, match="union"):
        sql_type(["null", "int", "string"])
    with pytest.raises(ValueError, match="map"):
        sql_type("map")


def test_an_exclusion_that_names_no_field_is_refused() -> None:
    with pytest.raises(ValueError, match="no field"):
        record_columns("EnrichedRun", exclude=("evnt",))


def test_every_enriched_field_but_the_container_details_is_a_process_column() -> None:
    cols = dict(sink.PROCESS_COLS)
    assert cols["argv"] == "text[]" and cols["exit_code"] == "integer" and cols["tool_method"] == "text"
    assert not set(sink.CONTAINER_FIELDS) & set(cols)
    # every column is either identity, exit accounting or context, and written by the merge
    for name in cols:
        assert name in sink.PROCESSES.merge
