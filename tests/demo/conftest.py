"""Demo fixtures: PATH shims that record every bwa, samtools and gzip invocation (see process_recorder)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from . import process_recorder

RECORDED_TOOLS = ("bwa", "samtools", "gzip")


def recorded_path(tmp: Path) -> tuple[str, Path]:
    """A PATH with the recording shims first, and the directory the records go to."""
    tools = {}
    for name in RECORDED_TOOLS:
        real = shutil.which(name)
        if real is None:
            pytest.skip(f"{name} is not installed (Debian package {name})")
        tools[name] = real
    records = tmp / "records"
    process_recorder.install(tmp / "shims", records, tools)
    return f"{tmp / 'shims'}{os.pathsep}{os.environ.get('PATH', '')}", records
