"""Observe real tool invocations without changing them: PATH shims that record, then exec the real tool.

A shim is a bash script named after the tool. Using bash builtins only (no extra processes: no
command substitution, no external command), it writes one record file per invocation, with the
allow-listed labels of its environment (EXECSIGHT_*, SNAKEMAKE*, NXF_*) and its ancestor chain read
from /proc (pid, cwd, argv per ancestor), then `exec`s the real tool, so the tool keeps the shim's
pid, parent and environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_SHIM = r"""#!/bin/bash
rec="__DIR__/$$.${RANDOM}${RANDOM}.rec"
{
  printf 'tool\t%s\n' "${0##*/}"
  for name in ${!EXECSIGHT_*} ${!SNAKEMAKE*} ${!NXF_*}; do
    printf 'env\t%s\t%s\n' "$name" "${!name}"
  done
  printf 'args'; for a in "$@"; do printf '\t%s' "$a"; done; printf '\n'
  orig="$PWD"
  p=$$
  depth=0
  while [[ "$p" -gt 1 && $depth -lt 30 ]]; do
    IFS= read -r stat < "/proc/$p/stat" || break
    rest="${stat##*) }"
    read -r _state ppid _ <<< "$rest"
    mapfile -d '' -t argv < "/proc/$p/cmdline"
    cwd=""
    if cd -P "/proc/$p/cwd" 2>/dev/null; then cwd="$PWD"; fi
    printf 'proc\t%s\t%s\t%s' "$depth" "$p" "$cwd"
    for a in "${argv[@]}"; do printf '\t%s' "$a"; done
    printf '\n'
    p=$ppid
    depth=$((depth + 1))
  done
  cd "$orig"
} > "$rec" 2>/dev/null
exec __REAL__ "$@"
"""


@dataclass(frozen=True)
class Ancestor:
    pid: int
    cwd: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Invocation:
    tool: str
    args: tuple[str, ...]
    env: dict[str, str]
    chain: tuple[Ancestor, ...]  # chain[0] is the shim itself (the tool's pid), then its parent, ...

    @property
    def pid(self) -> int:
        return self.chain[0].pid


def install(bin_dir: Path, record_dir: Path, tools: dict[str, str]) -> None:
    """Write a shim per tool name into bin_dir (tools maps name -> real executable path)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    record_dir.mkdir(parents=True, exist_ok=True)
    for name, real in tools.items():
        shim = bin_dir / name
        shim.write_text(_SHIM.replace("__DIR__", str(record_dir)).replace("__REAL__", real))
        shim.chmod(0o755)


def read_records(record_dir: Path) -> list[Invocation]:
    out: list[Invocation] = []
    for path in sorted(record_dir.glob("*.rec")):
        tool, args, env, chain = "", tuple[str, ...](), dict[str, str](), list[Ancestor]()
        for line in path.read_text().splitlines():
            kind, _, rest = line.partition("\t")
            fields = rest.split("\t") if rest else []
            if kind == "tool":
                tool = rest
            elif kind == "env" and len(fields) >= 2:
                env[fields[0]] = fields[1]
            elif kind == "args":
                args = tuple(fields)
            elif kind == "proc":
                chain.append(Ancestor(int(fields[1]), fields[2], tuple(fields[3:])))
        out.append(Invocation(tool, args, env, tuple(chain)))
    return out
