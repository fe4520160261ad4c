"""Another checkout of the correlator, for side-by-side benchmarks: a commit extracted from this repository,
the import names its code uses, and the environment that runs Python in it with this checkout's venv.

Commits before the one-namespace change (#17.5) import ``services.correlator`` and ``schemas``; later ones
``execsight.correlator`` and ``execsight.schemas``. Either way the checkout goes first on PYTHONPATH, ahead
of this venv's editable ``execsight`` (setuptools' editable finder comes after the path finder), so its
own ``execsight`` package (settings, kafka_io) is the one it imports.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Tree:
    root: Path
    label: str

    @property
    def namespaced(self) -> bool:
        """execsight.correlator / execsight.schemas (True), or services.correlator / schemas (False)."""
        return (self.root / "execsight" / "correlator").exists()

    @property
    def correlator(self) -> str:
        return "execsight.correlator" if self.namespaced else "services.correlator"

    @property
    def schemas(self) -> str:
        return "execsight.schemas" if self.namespaced else "schemas"

    @property
    def avro_dir(self) -> Path:
        return self.root / "schemas" / "avro"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = os.pathsep.join([str(self.root), *filter(None, [env.get("PYTHONPATH")])])
        return env


def this_tree() -> Tree:
    return Tree(REPO, "new (" + _describe(REPO, "HEAD") + ")")


def _describe(repo: Path, rev: str) -> str:
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", rev], capture_output=True, text=True)
    label = out.stdout.strip() or rev
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return label + ("+changes" if dirty and rev == "HEAD" else "")


def checkout(commit: str, into: Path | None = None) -> Tree:
    """The files of ``commit`` (git archive: no worktree registered, nothing shared touched)."""
    root = into or Path(tempfile.mkdtemp(prefix=f"execsight-{commit[:10]}-"))
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "services" / "correlator").exists():
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return Tree(root, "old (" + _describe(REPO, commit) + ")")
