"""Workflow engines and schedulers that give a process its run and task, as ordered detectors.

Order matters in each phase: known daemons (no generic run; an explicit label still wins), labels and
inheritance, then the workflow engines (a Nextflow
task inside a Slurm job is a Nextflow task), the schedulers, and the generic rules last.
Adding an engine: a module with a DETECTOR, listed here.
"""

from __future__ import annotations

from execsight.correlator.engines import cwl, daemons, generic, labels, nextflow, schedulers, snakemake, wdl
from execsight.correlator.engines.base import Detector

DETECTORS: tuple[Detector, ...] = (
    daemons.DETECTOR,
    labels.DETECTOR,
    nextflow.DETECTOR,
    snakemake.DETECTOR,
    cwl.DETECTOR,
    wdl.DETECTOR,
    schedulers.DETECTOR,
    generic.DETECTOR,
)
