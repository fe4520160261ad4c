"""Builds benchmarks/data/nfcore_commands.jsonl from a checkout of nf-core/modules (run once, offline).

For every module (modules/nf-core/<tool>[/<sub>]/main.nf) it keeps the container image and the first
command line of the script block that runs the module's tool (shell plumbing is skipped), with the
Groovy interpolations replaced by plausible values. The expected answer is the module's top-level
directory, i.e. the tool or the package the nf-core maintainers file it under.

    python benchmarks/recognition_corpus.py /path/to/nf-core/modules [--every 4]
    python benchmarks/recognition_corpus.py /path/to/nf-core/modules --offset 2 \
        --out benchmarks/data/nfcore_commands_heldout.jsonl   # modules never looked at while tuning
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "nfcore_commands.jsonl"
# first words that are shell plumbing, not the module's tool
NOISE = {
    "mkdir", "cp", "mv", "ln", "rm", "touch", "export", "echo", "printf", "cat", "if", "fi", "then", "else",
    "elif", "for", "do", "done", "while", "cd", "gzip", "gunzip", "zcat", "tar", "bgzip", "pigz", "unzip",
    "sed", "awk", "grep", "head", "tail", "sort", "cut", "tr", "wc", "find", "ls", "set", "local", "def",
    "true", "false", "test", "[", "[[", "]]", "{", "}", "case", "esac", "trap", "return", "exit", "read",
    "shift", "unset", "declare", "source", ".", "xargs", "tee", "basename", "dirname", "realpath", "readlink",
    "which", "mktemp", "chmod", "sleep", "date", "sh", "bash", "eval", "uniq", "paste", "cmp", "diff", "split",
    "zip", "bzip2", "xz"
}
_INTERP = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z_][\w.]*)")
_CONTAINER = re.compile(r"['\"]((?:quay\.io/|biocontainers/|community\.wave\.seqera\.io/|docker\.io/|nf-core/)"
                        r"[^'\"\s]+)['\"]")


_NOT_PROGRAMS = ("in_file.dat", "sample", "This", "The", "Please", "Error", "ERROR", "Warning")
_PROGRAM = re.compile(r"^[A-Za-z0-9_./+][A-Za-z0-9_./+-]*$")


def _prose(words: list[str]) -> bool:
    """An error or log message the extraction caught, not a command (three plain words, or 'x = y')."""
    if len(words) > 1 and words[1] == "=":
        return True
    sentence = len(words) >= 3 and all(re.fullmatch(r"[A-Za-z]{2,}[,.:]?", w) for w in words[:3])
    return sentence or "in_file.dat" in words[0]


def _value(expr: str) -> str:
    e = expr.strip()
    if "args" in e.split(".")[0] or e.startswith("args"):
        return ""
    if "cpus" in e:
        return "4"
    if "memory" in e:
        return "8"
    if "prefix" in e or "meta.id" in e:
        return "sample"
    return "in_file.dat"


def _substitute(line: str) -> str:
    return _INTERP.sub(lambda m: _value(m.group(1) or m.group(2)), line)


def _script_lines(text: str) -> list[str]:
    m = re.search(r"\n\s*script:\s*\n(.*?)\n\s*(?:stub:|\}\s*$)", text, re.S)
    if not m:
        return []
    body = m.group(1)
    blocks = re.findall(r'"""(.*?)"""', body, re.S)
    if not blocks:
        return []
    joined = blocks[0].replace("\\\\\n", " ").replace("\\\n", " ")
    lines, heredoc = [], None
    for raw in joined.splitlines():
        line = raw.strip()
        if heredoc:
            if line == heredoc:
                heredoc = None
            continue
        h = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if h:
            heredoc = h.group(1)
            continue
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def _command(lines: list[str]) -> list[str] | None:
    for line in lines:
        for stage in re.split(r"\s(?:\||&&|\|\||;)\s", _substitute(line)):
            try:
                words = shlex.split(stage, comments=False)
            except ValueError:
                words = stage.split()
            out: list[str] = []
            for w in words:
                if w in (">", ">>", "2>", "&>", "2>&1", "<", "|") or w.startswith((">", "2>", "&>", "<")):
                    break
                out.append(w)
            while out and re.match(r"^[A-Za-z_]\w*=", out[0]):
                out.pop(0)  # VAR=value cmd
            if out and _prose(out):
                continue
            if not out or out[0] in NOISE or not _PROGRAM.match(out[0]) or out[0] in _NOT_PROGRAMS:
                continue
            return out
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("repo", type=Path)
    ap.add_argument("--every", type=int, default=4, help="keep every Nth module (sorted) to stay small")
    ap.add_argument("--offset", type=int, default=0, help="start at this module: another offset is a held-out sample")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    rev = subprocess.run(["git", "-C", str(a.repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    names = subprocess.run(["git", "-C", str(a.repo), "ls-tree", "-r", "--name-only", "HEAD", "modules/nf-core"],
                           capture_output=True, text=True, check=True).stdout.split()
    mains = sorted(n for n in names if n.endswith("/main.nf"))
    rows = []
    for path in mains[a.offset :: a.every]:
        text = subprocess.run(["git", "-C", str(a.repo), "show", f"HEAD:{path}"], capture_output=True, text=True,
                              check=True).stdout
        argv = _command(_script_lines(text))
        if not argv:
            continue
        img = _CONTAINER.search(text)
        image = img.group(1) if img else None
        micromamba = image is not None and "wave.seqera.io" in image
        exe = argv[0] if argv[0].startswith("/") else ("/opt/conda/bin/" if micromamba else "/usr/local/bin/") + argv[0]
        module = path.split("/")[2]
        rows.append({"module": "/".join(path.split("/")[2:-1]), "expected": module, "image": image, "exe": exe,
                     "argv": argv})
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with a.out.open("w") as f:
        f.write(json.dumps({"source": "https://github.com/nf-core/modules", "commit": rev,
                            "note": "first tool command of each sampled module's script block"}) + "\n")
        for r in rows:
            f.write(json.dumps(r) + "\n")
    print(f"{len(rows)} command lines from {len(mains[a.offset :: a.every])} modules -> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
