"""The process definition a task instance belongs to (pure).

Workflow engines run one definition many times: Nextflow names each task ``PROCESS (tag)``
(``ALIGN (s1)``, ``ALIGN (s2)``, or ``ALIGN (1)`` without a tag), Snakemake runs one rule once
per set of wildcards. Right-sizing, regressions and the exported config are per definition
(the Nextflow process name, the Snakemake rule), while the task instances keep their names.
Names of other engines (explicit labels, generic runs) are their own definition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# engines whose task names carry a per-instance suffix in parentheses
TAGGED_ENGINES = frozenset({"nextflow", "snakemake"})
_TAGGED = re.compile(r"^(?P<definition>\S.*?)\s+\((?P<tag>[^()]*)\)$")


def definition_of(name: str, engine: str | None) -> str:
    """``ALIGN (s1)`` -> ``ALIGN`` for Nextflow and Snakemake tasks; any other name as it is."""
    if engine not in TAGGED_ENGINES:
        return name
    m = _TAGGED.match(name.strip())
    return m["definition"] if m else name


def process_definition(task: Mapping[str, Any]) -> str:
    """The definition of an EnrichedTask-shaped record (its ``task`` name and ``engine``)."""
    return definition_of(str(task["task"]), task.get("engine"))


def instance_tag(task: Mapping[str, Any]) -> str | None:
    """The instance part of the name (``s1`` for ``ALIGN (s1)``), when the engine gives one."""
    if task.get("engine") not in TAGGED_ENGINES:
        return None
    m = _TAGGED.match(str(task["task"]).strip())
    return m["tag"] if m else None


def untagged(name: str) -> str:
    """The name without a trailing ``(tag)`` whatever the engine (for lookups where the engine is not known)."""
    m = _TAGGED.match(name.strip())
    return m["definition"] if m else name
