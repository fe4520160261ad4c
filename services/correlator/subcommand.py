"""A program's subcommand, found generically from its arguments (pure).

The subcommand is the first word-like positional argument that is not the value of the option
before it: ``seqkit -j 4 stats`` -> ``stats``, ``diamond --threads 8 blastp`` -> ``blastp``,
``gatk --java-options "-Xmx8g" HaplotypeCaller`` -> ``HaplotypeCaller``. Files, numbers and sample
ids (``x.bam``, ``4``, ``SRR123``) are not word-like. SubcommandCap bounds how many distinct
subcommands one program may show, so argument values never explode the tool list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_][A-Za-z0-9]+)*$")
# looks like a sample or accession id, not a command: SRR123, S1, sample12, run_01
_ID_LIKE = re.compile(r"^[A-Z]{1,6}\d+$|\d{2,}$")
# an option that may take the next argument as its value: -t, --threads, -threads (single-dash words)
_VALUE_OPTION = re.compile(r"^-[A-Za-z]$|^--[A-Za-z][\w-]*$|^-[A-Za-z][A-Za-z_-]+$")
_NOT_COMMANDS = frozenset({"true", "false", "none", "null", "yes", "no", "auto", "stdin", "stdout", "stderr"})
MAX_LENGTH = 40


def generic_subcommand(args: Sequence[str]) -> str | None:
    """The first word-like positional of args that is not an option's value; None when the first isn't one."""
    value_expected = False
    for arg in args:
        if arg == "--":
            return None
        if arg.startswith("-") and len(arg) > 1:
            value_expected = bool(_VALUE_OPTION.match(arg))
            continue
        if value_expected:
            value_expected = False
            continue
        if (2 <= len(arg) <= MAX_LENGTH and _WORD.match(arg) and not _ID_LIKE.search(arg)
                and arg.lower() not in _NOT_COMMANDS):
            return arg
        return None
    return None


class SubcommandCap:
    """Remembers the distinct subcommands seen per program; past ``limit`` new ones are not shown."""

    def __init__(self, limit: int = 24) -> None:
        self.limit = limit
        self._seen: dict[str, set[str]] = {}

    def allow(self, program_key: str, subcommand: str) -> bool:
        seen = self._seen.setdefault(program_key, set())
        if subcommand in seen:
            return True
        if len(seen) >= self.limit:
            return False
        seen.add(subcommand)
        return True
