"""The demo's sizes, read from deploy/demo/config.yaml (shared by the Snakemake and Nextflow-shaped variants)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEMO_DIR = Path(__file__).resolve().parent
CONFIG_PATH = DEMO_DIR / "config.yaml"
SNAKEFILE = DEMO_DIR / "Snakefile"
SYNTHETIC = DEMO_DIR / "synthetic.py"


@dataclass(frozen=True)
class Scale:
    name: str
    seed: int
    ref_length: int
    contigs: int
    samples: tuple[str, ...]
    reads: int
    read_length: int
    align_threads: int
    io_files: int
    io_mb: int
    churn: int


def load_scale(name: str | None = None, path: Path = CONFIG_PATH, seed: int | None = None) -> Scale:
    """The named scale block of the config (its `scale` key when name is None); ValueError names what is wrong."""
    doc: Any = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("scales"), dict):
        raise ValueError(f"{path}: expected a mapping with a 'scales' mapping")
    chosen = str(name if name is not None else doc.get("scale", "default"))
    block = doc["scales"].get(chosen)
    if not isinstance(block, dict):
        raise ValueError(f"{path}: no scale {chosen!r} (have: {', '.join(sorted(doc['scales']))})")
    try:
        return Scale(
            name=chosen,
            seed=int(seed if seed is not None else doc.get("seed", 42)),
            ref_length=int(block["ref_length"]),
            contigs=int(block["contigs"]),
            samples=tuple(str(s) for s in block["samples"]),
            reads=int(block["reads"]),
            read_length=int(block["read_length"]),
            align_threads=int(block["align_threads"]),
            io_files=int(block["io_files"]),
            io_mb=int(block["io_mb"]),
            churn=int(block["churn"]),
        )
    except KeyError as exc:
        raise ValueError(f"{path}: scale {chosen!r} lacks {exc.args[0]!r}") from None
