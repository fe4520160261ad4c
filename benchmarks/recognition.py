"""Recognition benchmark: how many real command lines get the right tool or package, and identify()'s cost.

Corpus: benchmarks/data/nfcore_commands.jsonl (every 4th module) and nfcore_commands_heldout.jsonl
(every 4th from the third: modules not looked at while tuning), built by benchmarks/recognition_corpus.py from the
nf-core/modules repository (commit in the file's first line): the first tool command of each sampled
module's script block, its container image, and the module's top-level directory as the expected answer.

Prints the share of processes with a tool, the share named by rule / program / package, the share
right (tool or package matches the module, case- and separator-insensitively, a trailing version
digit ignored: gatk4 ~ gatk), the same on the lines no shipped rule matched, renames (a rule naming a
program after another program), and the median identify() time.

    .venv/bin/python benchmarks/recognition.py [--repeat 20000] [--show-wrong]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from execsight.correlator.owning_package import packages_from_image
from execsight.correlator.program_name import name_key
from execsight.correlator.tool_rules import METHOD_PACKAGE, METHOD_PROGRAM, METHOD_RULE, Recognition, load_rules

DATA = Path(__file__).resolve().parent / "data" / "nfcore_commands.jsonl"
# modules at other offsets, never looked at while the heuristics were tuned on DATA
HELDOUT = Path(__file__).resolve().parent / "data" / "nfcore_commands_heldout.jsonl"


def _key(name: str | None) -> str:
    return re.sub(r"\d+$", "", name_key(name)) if name else ""


def _pkg_key(name: str | None) -> str:
    return re.sub(r"\d+$", "", re.sub(r"[-_.]", "", name.lower())) if name else ""


def _same_package(a: str, b: str) -> bool:
    """nf-core files ucsc-bedclip under ucsc, fastx_toolkit under fastx, ngs-disambiguate under disambiguate."""
    return bool(a and b) and (a == b or (min(len(a), len(b)) >= 4 and (a in b or b in a)))


def is_right(rec: Recognition, row: dict[str, Any]) -> bool:
    """Tool or package names the module; or the module runs a helper that is a package of its image (samtools)."""
    want = _pkg_key(row["expected"])
    head = _key(rec.tool.split()[0]) if rec.tool else ""
    if (head and (head == want or _same_package(head, want))) or _same_package(_pkg_key(rec.package), want):
        return True
    image_pkgs = {_pkg_key(p) for p in packages_from_image(row["image"] or "")}
    return bool(head) and head in image_pkgs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, nargs="*", default=[DATA, HELDOUT])
    ap.add_argument("--repeat", type=int, default=20000, help="identify() calls timed")
    ap.add_argument("--show-wrong", action="store_true")
    a = ap.parse_args()
    for path in a.data:
        report(path, a.repeat, a.show_wrong)
    return 0


def report(path: Path, repeat: int, show_wrong: bool) -> None:
    lines = path.read_text().splitlines()
    meta, rows = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    rules = load_rules([])
    n = len(rows)
    named = right = with_pkg = 0
    by_method = {METHOD_RULE: 0, METHOD_PROGRAM: 0, METHOD_PACKAGE: 0}
    norule_n = norule_right = renamed = 0
    wrong: list[tuple[dict[str, Any], Recognition]] = []
    for r in rows:
        rec = rules.identify(r["exe"], r["argv"], r["image"])
        named += rec.tool is not None
        with_pkg += rec.package is not None
        if rec.method:
            by_method[rec.method] += 1
        ok = is_right(rec, r)
        right += ok
        if rec.method != METHOD_RULE:
            norule_n += 1
            norule_right += ok
        elif rec.tool and _key(rec.tool.split()[0]) != _key(r["argv"][0].rsplit("/", 1)[-1]) and not ok:
            renamed += 1
        if not ok:
            wrong.append((r, rec))
    print(f"corpus {path.name}: {n} command lines from {meta['source']} @ {meta['commit'][:12]}")
    print(f"with a tool: {named / n:.1%}")
    for m, c in by_method.items():
        print(f"  by {m}: {c / n:.1%}")
    print(f"with an owning package: {with_pkg / n:.1%}")
    print(f"right tool or package: {right / n:.1%}")
    print(f"right on lines no shipped rule matched: {norule_right}/{norule_n} = {norule_right / max(norule_n, 1):.1%}")
    print(f"renamed by a rule into another tool (and wrong): {renamed}")
    if show_wrong:
        for r, rec in wrong:
            print(f"  WRONG {r['module']}: {' '.join(r['argv'][:4])} [{r['image']}] -> {rec.tool} / {rec.package}")
    # timing: the whole corpus round-robin, per call
    samples = []
    reps = max(1, repeat // n)
    for _ in range(reps):
        for r in rows:
            t0 = time.perf_counter_ns()
            rules.identify(r["exe"], r["argv"], r["image"])
            samples.append(time.perf_counter_ns() - t0)
    print(f"identify(): median {statistics.median(samples) / 1000:.1f} us, "
          f"p95 {sorted(samples)[int(len(samples) * 0.95)] / 1000:.1f} us over {len(samples)} calls")


if __name__ == "__main__":
    raise SystemExit(main())
