"""The engine command lines of the demo (pure) and the one function that runs them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from execsight.deploy.demo.scales import SNAKEFILE


def snakemake_command(
    workdir: Path, scale: str, seed: int, cores: int, python: str = sys.executable, snakefile: Path = SNAKEFILE
) -> list[str]:
    """`python -m snakemake` on the demo Snakefile, keeping going past the deliberate failure."""
    return [
        python, "-m", "snakemake",
        "--snakefile", str(snakefile),
        "--directory", str(workdir),
        "--cores", str(cores),
        "--keep-going",
        "--nocolor",
        "--config", f"scale={scale}", f"seed={seed}", f"python={python}",
    ]


def nextflow_shaped_command(
    workdir: Path, scale: str, seed: int, cores: int, python: str = sys.executable
) -> list[str]:
    """The Nextflow-shaped launcher (deploy/demo/nextflow_shaped.py) on the same scale."""
    return [
        python, "-m", "execsight.deploy.demo.nextflow_shaped",
        "--out", str(workdir), "--scale", scale, "--seed", str(seed), "--cpus", str(cores),
    ]


def run_engine(cmd: list[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None) -> int:
    """Run the engine to completion with stdout and stderr in `log_path`; returns its exit status."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.run(
            cmd, env=dict(env), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, check=False
        ).returncode
