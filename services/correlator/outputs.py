"""What one batch of events produced, coalesced by natural key: database rows and enriched records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

D = dict[str, Any]


@dataclass
class Outputs:
    processes: dict[tuple[str, int, int], D] = field(default_factory=dict)
    samples: list[D] = field(default_factory=list)
    tasks: dict[tuple[str, str], D] = field(default_factory=dict)
    runs: dict[str, D] = field(default_factory=dict)
    pipelines: dict[str, list[int]] = field(default_factory=dict)
    tools: dict[str, list[int]] = field(default_factory=dict)
    containers: dict[str, D] = field(default_factory=dict)
    hosts: dict[str, D] = field(default_factory=dict)
    host_samples: list[D] = field(default_factory=list)
    collector_status: list[D] = field(default_factory=list)
    collector_gaps: list[D] = field(default_factory=list)  # CollectorGap records (services/collector/live_set.py)
    enriched_process: list[D] = field(default_factory=list)
    enriched_task: list[D] = field(default_factory=list)
    enriched_run: list[D] = field(default_factory=list)
    host_activity: list[D] = field(default_factory=list)
    event_times_ns: list[int] = field(default_factory=list)
    throttled_execs: int = 0

    def seen(self, bucket: dict[str, list[int]], name: str, time_ns: int) -> None:
        cur = bucket.get(name)
        if cur is None:
            bucket[name] = [time_ns, time_ns]
        else:
            cur[0] = min(cur[0], time_ns)
            cur[1] = max(cur[1], time_ns)
