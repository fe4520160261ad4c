"""Run labels for the demo: the run id and the environment that marks a run for execsight.

The engine process gets EXECSIGHT_PIPELINE and EXECSIGHT_RUN_ID in its environment (as `execsight run`
would set them); every process it starts inherits them, which is how the correlator attributes the
whole process tree to the run. Tasks are recognised from the engine's own process shapes.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

SNAKEMAKE_PIPELINE = "demo"
NEXTFLOW_PIPELINE = "demo-nextflow"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def new_run_id(engine: str, now: datetime | None = None, suffix: str | None = None) -> str:
    """`demo-<engine>-<UTC yyyymmddThhmmss>-<6 hex>`: sortable by start, unique across hosts."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"demo-{engine}-{stamp}-{suffix if suffix is not None else secrets.token_hex(3)}"


def check_label(name: str, value: str) -> str:
    """The value when it is a safe label (letters, digits, . _ -; up to 128), else ValueError naming it."""
    if not _RUN_ID.match(value):
        raise ValueError(
            f"{name}={value!r}: use letters, digits, '.', '_' or '-' (at most 128, not starting with . _ -)"
        )
    return value


def run_env(base: Mapping[str, str], pipeline: str, run_id: str) -> dict[str, str]:
    """`base` plus the run labels; an EXECSIGHT_TASK inherited from the caller is dropped so tasks stay the engine's."""
    env = {k: v for k, v in base.items() if k != "EXECSIGHT_TASK"}
    env["EXECSIGHT_PIPELINE"] = check_label("pipeline", pipeline)
    env["EXECSIGHT_RUN_ID"] = check_label("run id", run_id)
    return env
