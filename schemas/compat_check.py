"""Every changed .avsc still reads old data and is read by old readers (`python -m execsight.schemas.compat_check`).

The base is `git merge-base HEAD origin/main` (or local main) when that is not HEAD itself, else
HEAD~1, else (a first commit) nothing to compare. For each .avsc under schemas/avro/ that differs from the
base's version, the examples of both versions go through Avro schema resolution both ways: old
writer -> new reader (an upgraded consumer reads the topic's backlog) and new writer -> old reader
(a consumer not yet upgraded reads the new producer's records). A field added without a default
is named even when no example shows the failure. Exit status 1 on any problem, with its file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro

from execsight.schemas.codec import AVRO_DIR, Codec, CodecError, Schema, schema_fingerprint

REPO = AVRO_DIR.parent.parent


@dataclass(frozen=True)
class Version:
    """One version of a record type's schema with the example records written for it."""

    schema: Mapping[str, Any]
    examples: Mapping[str, Mapping[str, Any]]  # example file name -> record


def _schema(raw: Mapping[str, Any]) -> Schema:
    parsed = fastavro.parse_schema(dict(raw))
    return Schema(str(raw["name"]), parsed, schema_fingerprint(parsed))


def fields_without_default(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Top-level fields of `new` that `old` lacks and that have no default (old data cannot fill them)."""
    known = {f["name"] for f in old.get("fields", [])}
    return [f["name"] for f in new.get("fields", []) if f["name"] not in known and "default" not in f]


def problems(old: Version, new: Version) -> list[str]:
    """What breaks between two versions of one record type (empty: compatible both ways)."""
    out = [f"field {name!r} added without a default: records written before it cannot be read"
           for name in fields_without_default(old.schema, new.schema)]
    try:
        old_s, new_s = _schema(old.schema), _schema(new.schema)
    except Exception as exc:  # fastavro raises several types for a bad schema
        return [*out, f"invalid schema: {exc}"]
    if old_s.name != new_s.name:
        return [*out, f"record renamed {old_s.name} -> {new_s.name}: readers look it up by name"]
    directions = (("old writer -> new reader", old_s, new_s, old.examples),
                  ("new writer -> old reader", new_s, old_s, new.examples))
    for label, writer, reader, examples in directions:
        if not examples:
            out.append(f"{label}: no example to check with")
        for example, record in sorted(examples.items()):
            try:
                data = Codec([writer]).encode(writer.name, record)
                Codec([reader], extra_writers=[writer]).decode(data)
            except CodecError as exc:
                out.append(f"{label}: {example}: {exc}")
    return out


# --- git adapter ---------------------------------------------------------------------------------

def _git(repo: Path, *args: str) -> str | None:
    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    return res.stdout if res.returncode == 0 else None


def base_commit(explicit: str | None = None, repo: Path = REPO) -> str | None:
    """The commit to compare with: the given one, the merge base with origin/main, or HEAD~1."""
    if explicit:
        return (_git(repo, "rev-parse", "--verify", f"{explicit}^{{commit}}") or "").strip() or None
    head = (_git(repo, "rev-parse", "HEAD") or "").strip()
    for ref in ("origin/main", "main"):  # on main itself the merge base is HEAD: compare with HEAD~1 then
        base = (_git(repo, "merge-base", "HEAD", ref) or "").strip()
        if base and base != head:
            return base
    return (_git(repo, "rev-parse", "--verify", "HEAD~1^{commit}") or "").strip() or None


def changed_schemas(base: str, repo: Path = REPO) -> list[str]:
    """Repository paths of the .avsc files that differ between `base` and the working tree."""
    out = _git(repo, "diff", "--name-only", base, "--", "schemas/avro/*.avsc")
    return sorted(p for p in (out or "").splitlines() if p.endswith(".avsc"))


def _examples_at(repo: Path, base: str, name: str) -> dict[str, dict[str, Any]]:
    listing = _git(repo, "ls-tree", "--name-only", f"{base}:schemas/examples/{name}") or ""
    out: dict[str, dict[str, Any]] = {}
    for file in listing.split():
        text = _git(repo, "show", f"{base}:schemas/examples/{name}/{file}")
        if file.endswith(".json") and text is not None:
            out[file] = json.loads(text)
    return out


def _examples_now(repo: Path, name: str) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((repo / "schemas" / "examples" / name).glob("*.json"))}


def check(base: str, repo: Path = REPO) -> list[str]:
    """'path: problem' lines for every changed schema (a new file has nothing to be compatible with)."""
    out: list[str] = []
    for path in changed_schemas(base, repo):
        old_text, new_file = _git(repo, "show", f"{base}:{path}"), repo / path
        if old_text is None:
            continue
        if not new_file.is_file():
            out.append(f"{path}: removed, but {base[:12]} has it: its topic's old records have no reader")
            continue
        old_raw, new_raw = json.loads(old_text), json.loads(new_file.read_text())
        old = Version(old_raw, _examples_at(repo, base, str(old_raw["name"])))
        new = Version(new_raw, _examples_now(repo, str(new_raw["name"])))
        out.extend(f"{path}: {p}" for p in problems(old, new))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m execsight.schemas.compat_check", description=__doc__.splitlines()[0])
    p.add_argument("--base", help="commit to compare with (default: merge base with origin/main or main, else HEAD~1)")
    args = p.parse_args(argv)
    base = base_commit(args.base)
    if base is None:
        if args.base:
            print(f"compat_check: {args.base!r} is not a commit", file=sys.stderr)
            return 2
        print("compat_check: no previous commit to compare with: nothing to check")
        return 0
    changed = changed_schemas(base)
    found = check(base)
    for line in found:
        print(line, file=sys.stderr)
    print(f"compat_check: {len(changed)} schema(s) changed since {base[:12]}, "
          f"{'incompatible' if found else 'all compatible both ways'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
