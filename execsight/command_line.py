"""Reading a process's command line the same way on both sides of the stream: the collector (which
context files a process calls for) and the correlator (which engine and task it is)."""

from __future__ import annotations

from collections.abc import Sequence


def base_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def option_value(argv: Sequence[str], *names: str) -> str | None:
    """The value of the first of ``names`` given as `-x V`, `--name V` or `--name=V`."""
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def is_snakemake(exe: str, argv: Sequence[str]) -> bool:
    """Snakemake itself: `snakemake ...`, `python -m snakemake ...` or a launcher script named so."""
    if not argv:
        return False
    if base_name(argv[0]) == "snakemake" or base_name(exe) == "snakemake":
        return True
    for i, arg in enumerate(argv[1:4], start=1):
        if (arg == "-m" and i + 1 < len(argv) and argv[i + 1] == "snakemake") or base_name(arg) == "snakemake":
            return True
    return False
