"""Recognition benchmark: how many real command lines get the right tool or package, and identify()'s cost.

Corpora (built by benchmarks/recognition_corpus.py; source repository and commit in each file's first line):
  * nfcore_commands.jsonl (every 4th nf-core module) and nfcore_commands_heldout.jsonl (every 4th from
    the third: modules not looked at while tuning): first tool command of each module's script block,
    its container image, the module's top-level directory as the expected answer;
  * snakemake_wrappers.jsonl: first tool command of each Snakemake wrapper's shell() strings, run from
    a hash-named Snakemake conda env (no image); expected: the wrapper's tool directory;
  * galaxy_tools.jsonl (even lines) and galaxy_tools_heldout.jsonl (odd lines, not looked at while
    tuning): first tool command of each Galaxy tool XML's <command> (bgruening/galaxytools), run from the
    env Galaxy's conda resolver names, its own scripts from the Tool Shed repository it is installed from;
    expected: its package requirement (the others and the tool directory accepted as the tool, the Tool
    Shed repository as the package); ``exe_package`` where a bioconda recipe's tests name the executable
    of a several-package env (what conda-meta would say, see bioconda_executables.json).

ProcessExec.env_packages (the packages a conda env was created for, from conda-meta/history) is simulated
for the lines that run from a conda env the corpus builds, from what that env is built of: a Galaxy
env (``__<pkg>@<ver>`` or ``mulled-v1-<hash>``) is created from exactly the tool XML's ``<requirement>``s,
so its history's ``# update specs`` are those names; a Snakemake env (``.snakemake/conda/<hash>_``) from
the wrapper's environment.yaml dependencies. Nothing else is added (no versions, no dependencies of
dependencies: those are not "requested"). nf-core lines run from images (/usr/local, /opt/conda) and get none.

Prints the share of processes with a tool, the share named by rule / program / package, the share
right (tool or package matches the module, case- and separator-insensitively, a trailing version
digit ignored: gatk4 ~ gatk), the same on the lines no shipped rule matched, renames (a rule naming a
program after another program), and the median identify() time.

    .venv/bin/python benchmarks/recognition.py [--repeat 20000] [--show-wrong] [--no-env-packages]
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
from execsight.correlator.tool_rules import (
    INTERPRETERS,
    METHOD_PACKAGE,
    METHOD_PROGRAM,
    METHOD_RULE,
    Recognition,
    load_rules,
    parse_invocation,
)

DATA = Path(__file__).resolve().parent / "data" / "nfcore_commands.jsonl"
# modules at other offsets, never looked at while the heuristics were tuned on DATA
HELDOUT = Path(__file__).resolve().parent / "data" / "nfcore_commands_heldout.jsonl"
SNAKEMAKE = Path(__file__).resolve().parent / "data" / "snakemake_wrappers.jsonl"
GALAXY = Path(__file__).resolve().parent / "data" / "galaxy_tools.jsonl"
# the other half of the Galaxy tool XMLs (odd lines), not looked at while tuning on GALAXY
GALAXY_HELDOUT = Path(__file__).resolve().parent / "data" / "galaxy_tools_heldout.jsonl"


def _key(name: str | None) -> str:
    return re.sub(r"\d+$", "", name_key(name)) if name else ""


def _pkg_key(name: str | None) -> str:
    return re.sub(r"\d+$", "", re.sub(r"[-_.]", "", name.lower().replace("+", "plus"))) if name else ""


def _same_package(a: str, b: str) -> bool:
    """nf-core files ucsc-bedclip under ucsc, fastx_toolkit under fastx, ngs-disambiguate under disambiguate."""
    return bool(a and b) and (a == b or (min(len(a), len(b)) >= 4 and (a in b or b in a)))


def is_right(rec: Recognition, row: dict[str, Any]) -> bool:
    """Tool or package names the module (or its last path part: bedtools/bamtobed is bamToBed); or the module
    runs a helper that is a package of its image (samtools) or, in Galaxy, another of its requirements."""
    want = _pkg_key(row["expected"])
    head = _key(rec.tool.split()[0]) if rec.tool else ""
    if (head and (head == want or _same_package(head, want))) or _same_package(_pkg_key(rec.package), want):
        return True
    if rec.package and row.get("repository") and _pkg_key(rec.package) == _pkg_key(row["repository"]):
        return True  # a Galaxy wrapper script's package: the Tool Shed repository it is installed from
    image_pkgs = {_pkg_key(p) for p in packages_from_image(row["image"] or "")}
    image_pkgs |= {_pkg_key(p) for p in row.get("also") or ()}  # the env's packages: Galaxy requirements, Snakemake env
    # the module's, wrapper's or tool XML's own name for what it runs: bedtools/bamtobed runs bamToBed
    image_pkgs.add(_pkg_key(row["module"].rsplit("/", 1)[-1]))
    return bool(head) and head in image_pkgs


def simulated_env_packages(row: dict[str, Any]) -> list[str]:
    """What conda-meta/history of the line's env would request (see the module docstring); [] outside one."""
    if "/_conda/envs/" in row["exe"] and row["module"].startswith("tools/"):
        # galaxy_rows: also = the other requirements + the tool directory (last, not a package)
        return [row["expected"], *(row.get("also") or [])[:-1]]  # a _conda env has at least one requirement
    if "/.snakemake/conda/" in row["exe"]:
        return list(row.get("also") or [])  # snakemake_rows: the environment.yaml dependencies
    return []


def needs_conda_meta(row: dict[str, Any]) -> bool:
    """The line runs from an env of several packages whose name is a hash (Galaxy's mulled-v1, Snakemake's):
    only conda-meta (ProcessExec.exe_package) says which package owns the executable. A line whose owner the
    corpus simulated from public recipes (its ``exe_package``) is not counted here."""
    env = re.search(r"/envs/(mulled-v\d+-[0-9a-f]+)/bin/|/\.snakemake/conda/[0-9a-f]+_/bin/", row["exe"])
    own = row["module"].split("/")[1] if "/" in row["module"] else row["module"]
    several = len([p for p in row.get("also") or () if p != own]) >= 1
    # conda-meta names the owner of an executable, not of a script an interpreter runs
    program = parse_invocation(row["exe"], row["argv"])
    simulated = bool(row.get("exe_package"))
    executable = program.kind == "plain" and not INTERPRETERS.match(program.exe_name)
    return env is not None and several and not simulated and executable


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, nargs="*", default=[DATA, HELDOUT, SNAKEMAKE, GALAXY, GALAXY_HELDOUT])
    ap.add_argument("--repeat", type=int, default=20000, help="identify() calls timed per corpus")
    ap.add_argument("--show-wrong", action="store_true")
    ap.add_argument("--no-env-packages", action="store_true", help="without the simulated ProcessExec.env_packages")
    a = ap.parse_args()
    results = [report(path, a.repeat, a.show_wrong, not a.no_env_packages) for path in a.data]
    print_side_by_side(results)
    return 0


ROWS = (
    ("command lines", "n", "{:d}"),
    ("with a tool", "named", "{:.1%}"),
    ("  by rule", "by_rule", "{:.1%}"),
    ("  by program", "by_program", "{:.1%}"),
    ("  by package", "by_package", "{:.1%}"),
    ("with an owning package", "with_pkg", "{:.1%}"),
    ("right tool or package", "right", "{:.1%}"),
    ("lines no shipped rule matched", "norule_n", "{:d}"),
    ("  right among them", "norule_right", "{:.1%}"),
    ("  wrong, only conda-meta could tell", "norule_meta", "{:d}"),
    ("  right, those left out", "norule_right_evidence", "{:.1%}"),
    ("renamed by a rule into another", "renamed", "{:d}"),
    ("identify() median us", "median_us", "{:.1f}"),
    ("identify() p95 us", "p95_us", "{:.1f}"),
)


def print_side_by_side(results: list[dict[str, Any]]) -> None:
    names = [r["name"] for r in results]
    width = max(12, *(len(n) for n in names))
    print(f"{'':32}" + "".join(f"{n:>{width + 2}}" for n in names))
    for label, key, fmt in ROWS:
        print(f"{label:32}" + "".join(f"{fmt.format(r[key]):>{width + 2}}" for r in results))
    for r in results:
        print(f"{r['name']}: {r['source']} @ {r['commit'][:12]}")


def report(path: Path, repeat: int, show_wrong: bool, use_env_packages: bool = True) -> dict[str, Any]:
    lines = path.read_text().splitlines()
    meta, rows = json.loads(lines[0]), [json.loads(x) for x in lines[1:]]
    for r in rows:
        r["env_packages"] = simulated_env_packages(r) if use_env_packages else []
    rules = load_rules([])
    n = len(rows)
    named = right = with_pkg = 0
    by_method = {METHOD_RULE: 0, METHOD_PROGRAM: 0, METHOD_PACKAGE: 0}
    norule_n = norule_right = renamed = norule_meta = 0
    wrong: list[tuple[dict[str, Any], Recognition]] = []
    for r in rows:
        rec = rules.identify(r["exe"], r["argv"], r["image"], r.get("exe_package"), r["env_packages"])
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
            if rec.method != METHOD_RULE and needs_conda_meta(r):
                norule_meta += 1
    if show_wrong:
        for r, rec in wrong:
            print(f"  WRONG {path.stem} {r['module']}: {' '.join(r['argv'][:4])} [{r['image']}] "
                  f"want {r['expected']} -> {rec.tool} / {rec.package}")
    # timing: the whole corpus round-robin, per call
    samples = []
    for _ in range(max(1, repeat // n)):
        for r in rows:
            t0 = time.perf_counter_ns()
            rules.identify(r["exe"], r["argv"], r["image"], r.get("exe_package"), r["env_packages"])
            samples.append(time.perf_counter_ns() - t0)
    return {
        "name": path.stem.replace("_commands", "").removesuffix("_tools"), "source": meta["source"],
        "commit": meta["commit"], "n": n, "named": named / n, "by_rule": by_method[METHOD_RULE] / n,
        "by_program": by_method[METHOD_PROGRAM] / n, "by_package": by_method[METHOD_PACKAGE] / n,
        "with_pkg": with_pkg / n, "right": right / n, "norule_n": norule_n,
        "norule_right": norule_right / max(norule_n, 1), "renamed": renamed, "norule_meta": norule_meta,
        "norule_right_evidence": norule_right / max(norule_n - norule_meta, 1),
        "median_us": statistics.median(samples) / 1000, "p95_us": sorted(samples)[int(len(samples) * 0.95)] / 1000,
    }


if __name__ == "__main__":
    raise SystemExit(main())
