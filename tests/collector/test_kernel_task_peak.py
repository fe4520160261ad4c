"""Real kernel, root: task peak memory of sequential, concurrent and mixed children (marker: ebpf).

The collector's real event stream (exits published after later forks, tick-floored identities)
goes through the correlator's process tree; the task peak must match the truth computed from the
kernel's own per-process peaks and times, and the combination the script builds."""

from __future__ import annotations

import pytest

from . import peak_shapes
from .feed import JsonlFeed

pytestmark = pytest.mark.ebpf

MiB = 1 << 20


@pytest.mark.parametrize("shape", peak_shapes.SHAPES)
def test_task_peak_matches_truth(ebpf_collector: JsonlFeed, shape: str) -> None:
    run_id = peak_shapes.run(shape, n_sequential=150)
    recs = ebpf_collector.wait_for(lambda rs: peak_shapes.subtree(rs, run_id), 60)
    procs = peak_shapes.processes(recs)
    sweep = peak_shapes.sweep_truth(procs)
    built = peak_shapes.built_truth(shape, procs)
    got = peak_shapes.reported(recs, recs[0]["host_id"])
    assert abs(sweep - built) <= 0.05 * built, (sweep, built)  # the script ran as built
    assert abs(got - sweep) <= 0.05 * sweep, (shape, got / MiB, sweep / MiB, built / MiB)
    if shape == peak_shapes.SEQUENTIAL:
        assert got < 2 * 8 * MiB + max(p.peak for p in procs.values() if p.argv[:1] == ("bash",))
    elif shape == peak_shapes.CONCURRENT:
        assert got >= 4 * 16 * MiB
