"""Builds the recognition corpora under benchmarks/data/ from checkouts of public repositories (run once, offline).

``--kind nfcore`` (default): nf-core/modules -> nfcore_commands.jsonl (and a held-out sample);
``--kind snakemake``: snakemake/snakemake-wrappers -> snakemake_wrappers.jsonl, the first tool command
of each wrapper.py's ``shell(...)`` strings, run from a Snakemake conda env (``.snakemake/conda/<hash>_``,
a name that says nothing); the expected answer is the wrapper's tool directory (``bio/<tool>/...``), the
packages of its environment.yaml accepted for a helper it runs (curl, bcftools), as an image's packages are;
``--kind galaxy``: a Galaxy tool repository (bgruening/galaxytools) -> galaxy_tools.jsonl, the first tool
command of each tool XML's ``<command>`` block with the Cheetah directives stripped and its variables
replaced, run from the environment Galaxy's conda resolver builds (``_conda/envs/__<pkg>@<ver>`` for one
requirement, ``mulled-v1-<hash>`` for several; ``/usr/local/bin`` for none) or the ``<container>`` it names;
the expected answer is its first package requirement (the others are accepted too), else its tool
directory. Scripts of the tool's own directory (``$__tool_directory__``) lie where the Tool Shed installs it
(``shed_tools/<shed>/repos/<owner>/<repo>/<changeset>/<repo>``, the repository named by .shed.yml);
that repository is recorded per line and accepted as the package of such a script. A ``<command
interpreter="python">x.py ...`` runs ``python <tool dir>/x.py ...``, as Galaxy builds it.

For every module (modules/nf-core/<tool>[/<sub>]/main.nf) it keeps the container image and the first
command line of the script block that runs the module's tool (shell plumbing is skipped), with the
Groovy interpolations replaced by plausible values. The expected answer is the module's top-level
directory, i.e. the tool or the package the nf-core maintainers file it under.

    python benchmarks/recognition_corpus.py /path/to/nf-core/modules [--every 4]
    python benchmarks/recognition_corpus.py /path/to/snakemake-wrappers --kind snakemake
    python benchmarks/recognition_corpus.py /path/to/galaxytools --kind galaxy --every 2   # tuned half
    python benchmarks/recognition_corpus.py /path/to/galaxytools --kind galaxy --every 2 --offset 1 \
        --out benchmarks/data/galaxy_tools_heldout.jsonl
    python benchmarks/recognition_corpus.py /path/to/nf-core/modules --offset 2 \
        --out benchmarks/data/nfcore_commands_heldout.jsonl   # modules never looked at while tuning
"""

from __future__ import annotations

import argparse
import ast
import hashlib
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


MAX_ARGS = 24  # enough for any subcommand and option; keeps the corpus files small
_NOT_PROGRAMS = ("in_file.dat", "sample", "This", "The", "Please", "Error", "ERROR", "Warning")
_PROGRAM = re.compile(r"^(?!\d+$)[A-Za-z0-9_./+][A-Za-z0-9_./+-]*$")


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
            except ValueError:  # an unbalanced quote elsewhere in the stage: split on blanks, drop the quotes
                words = [w.strip("'\"") for w in stage.split()]
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
            return out[:MAX_ARGS]
    return None


def _git_show(repo: Path, path: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], capture_output=True, text=True,
                          check=True).stdout


def _hash(text: str, n: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


# --- Snakemake wrappers ---------------------------------------------------------------------------

def _pystr(node: ast.expr) -> str | None:
    """The text of a string expression: literals, f-strings and + of them; other values become {x}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "{x}"
                       for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _pystr(node.left), _pystr(node.right)
        return (left if left is not None else "{x}") + (right if right is not None else "{x}")
    if isinstance(node, ast.Name | ast.Attribute | ast.Call | ast.Subscript):
        return "{x}"
    return None


def _snakemake_value(expr: str) -> str:
    e = expr.strip().lower()
    if "thread" in e:
        return "4"
    if any(w in e for w in ("extra", "log", "opts", "param", "x")) and "input" not in e and "output" not in e:
        return ""
    if "mem" in e:
        return "8"
    return "in_file.dat"


def snakemake_commands(text: str) -> list[str]:
    """The command strings of a wrapper.py's shell(...) calls, placeholders filled, in source order."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "shell"
                and node.args):
            cmd = _pystr(node.args[0])
            if cmd:
                cmd = re.sub(r"(?<!\{)\{([^{}]*)\}(?!\})", lambda m: _snakemake_value(m.group(1)), cmd)
                out.append((node.lineno, cmd.replace("{{", "{").replace("}}", "}")))
    return [c for _, c in sorted(out)]


def snakemake_rows(repo: Path) -> list[dict[str, object]]:
    names = _ls(repo, "bio")
    rows: list[dict[str, object]] = []
    for path in sorted(n for n in names if n.endswith("/wrapper.py")):
        lines = [re.sub(r"[()]", " ", c).replace("\n", " ") for c in snakemake_commands(_git_show(repo, path))]
        argv = _command([" ".join(line.split()) for line in lines])
        if not argv:
            continue
        env = f"/work/.snakemake/conda/{_hash(path, 16)}_"
        env_file = path.rsplit("/", 1)[0] + "/environment.yaml"
        deps = (re.findall(r"^\s*-\s*([A-Za-z0-9][\w.+-]*)", _git_show(repo, env_file), re.M)
                if env_file in names else [])
        rows.append({"module": "/".join(path.split("/")[1:-1]), "expected": path.split("/")[1],
                     "also": [d for d in deps if d not in ("conda-forge", "bioconda", "nodefaults", "defaults")],
                     "image": None,
                     "exe": argv[0] if argv[0].startswith("/") else f"{env}/bin/{argv[0]}", "argv": argv})
    return rows


# --- Galaxy tool wrappers --------------------------------------------------------------------------

_REQUIREMENT = re.compile(r"<requirement\s+type=[\"']package[\"'][^>]*?(?:version=[\"']([^\"']*)[\"'])?[^>]*>"
                          r"\s*([^<\s]+)\s*</requirement>")
_CONTAINER_REQ = re.compile(r"<container\s+type=[\"'](?:docker|singularity)[\"'][^>]*>\s*([^<\s]+)\s*</container>")
_COMMAND = re.compile(r"<command([^>]*)>(.*?)</command>", re.S)
_TOKEN = re.compile(r"<token\s+name=[\"'](@[\w]+@)[\"']>(.*?)</token>", re.S)
_CHEETAH = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z_][\w.]*)")


def _galaxy_value(expr: str) -> str:
    e = expr.lower()
    if "galaxy_slots" in e:
        return "4"
    if "galaxy_memory" in e:
        return "8000"
    return "in_file.dat"


def galaxy_command(xml: str, macros: str, tool_dir: str = "/galaxy/tools/x") -> list[str]:
    """The <command> block as shell text: macros' tokens expanded, Cheetah directives dropped, variables filled."""
    tokens = dict(_TOKEN.findall(macros + xml))
    m = _COMMAND.search(xml)
    if not m:
        return []
    attrs, body = m.group(1), m.group(2)
    body = re.sub(r"<!\[CDATA\[|\]\]>", "", body)
    body = re.sub(r"<expand[^>]*/>", " ", body)
    for _ in range(3):
        body = re.sub(r"@\w+@", lambda t: tokens.get(t.group(0), "x"), body)
    body = re.sub(r"\$\{?__tool_directory__\}?", tool_dir, body)
    # <configfile name="x"> is written into the job's directory under a temporary name
    for name in re.findall(r"<configfile\s+name=[\"'](\w+)[\"']", xml):
        body = re.sub(r"\$\{?" + name + r"\b\}?", f"/galaxy/jobs/000/1/configs/tmp{_hash(name, 8)}", body)
    body = body.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    kept = []
    for raw in body.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Cheetah directives (#if, #for, #set, #end ...) and ## comments
        line = line.replace("\\$", "$")
        kept.append(_CHEETAH.sub(lambda v: _galaxy_value(v.group(1) or v.group(2)), line))
    interp = re.search(r"interpreter=[\"'](\w+)[\"']", attrs)
    text = " ".join(kept)
    if interp and text.split():
        # Galaxy resolves the first word of an interpreter= command in the tool's directory
        # (lib/galaxy/tools/evaluation.py: os.path.join(tool_dir, executable)) and prepends the interpreter
        first = text.split()[0]
        text = text.replace(first, first if first.startswith("/") else f"{tool_dir}/{first}", 1)
    return [f"{interp.group(1)} {text}" if interp else text]


# runtimes and helpers a Galaxy tool lists beside its real requirement
_GALAXY_HELPERS = frozenset({"python", "r-base", "perl", "openjdk", "bash", "coreutils", "gawk", "sed", "grep", "pigz",
                             "gzip", "zip", "unzip", "tar", "samtools", "htslib", "biopython", "numpy", "pandas",
                             "r-getopt", "r-optparse", "pyyaml", "jq", "xz", "bzip2"})


# the executables bioconda recipes test (recipes/<pkg>/meta.yaml, commit per package in the file)
_RECIPE_EXECUTABLES: dict[str, tuple[str, ...]] = {
    name: tuple(p["executables"]) for name, p in json.loads(
        (Path(__file__).resolve().parent / "data" / "bioconda_executables.json").read_text())["packages"].items()}


def _expand(text: str, tokens: dict[str, str]) -> str:
    return re.sub(r"@\w+@", lambda t: tokens.get(t.group(0), "1.0"), text)


def galaxy_rows(repo: Path) -> list[dict[str, object]]:
    files = _ls(repo, "tools")
    xmls = sorted(n for n in files if n.endswith(".xml") and "/test-data/" not in n and not re.search(
        r"(?:macros?[\w-]*|tool_dependencies|repository_dependencies|data_manager_conf|tool_data_table_conf[\w.]*|"
        r"datatypes_conf|job_conf)\.xml$", n))
    macro_files = [n for n in files if re.search(r"macros?[\w-]*\.xml$", n)]
    rows: list[dict[str, object]] = []
    for path in xmls:
        xml = _git_show(repo, path)
        if "<tool" not in xml:
            continue
        d = path.rsplit("/", 1)[0]
        macros = "".join(_git_show(repo, n) for n in macro_files if n.rsplit("/", 1)[0] in (d, d.rsplit("/", 1)[0]))
        tokens = dict(_TOKEN.findall(macros + xml))
        reqs = [(name, _expand(ver or "1.0", tokens))
                for ver, name in _REQUIREMENT.findall(xml + macros)]
        reqs = [(n, v) for n, v in dict.fromkeys(reqs) if not n.startswith("@")]
        shed = _shed_dir(repo, files, d)
        argv = _command(galaxy_command(xml, macros, shed))
        if not argv:
            continue
        container = _CONTAINER_REQ.search(xml + macros)
        image = _expand(container.group(1), tokens) if container else None
        if not reqs:
            env = "/usr/local"  # no requirement: no conda env, the tool runs what the PATH (or its container) has
        elif len(reqs) == 1:
            env = f"/galaxy/database/dependencies/_conda/envs/__{reqs[0][0]}@{reqs[0][1]}"
        else:
            env = f"/galaxy/database/dependencies/_conda/envs/mulled-v1-{_hash(repr(reqs), 40)}"
        # the requirement named like the tool's directory, else the first that is not a runtime or helper
        names = [n for n, _ in reqs]
        top = path.split("/")[1]
        named = [n for n in names if re.sub(r"[-_.]", "", n.lower()) in re.sub(r"[-_.]", "", path.lower())]
        main = [n for n in names if n.lower() not in _GALAXY_HELPERS]
        expected = (named or main or names or [top])[0]
        row: dict[str, object] = {}
        if env.rsplit("/", 1)[-1].startswith("mulled-") and not argv[0].startswith("/"):
            # conda-meta would name the executable's owner; public recipes say it where they test the executable
            owners = [n for n in names if argv[0] in _RECIPE_EXECUTABLES.get(n, ())]
            if len(owners) == 1:
                row["exe_package"] = owners[0]
        rows.append({**row, "module": path.rsplit(".", 1)[0], "expected": expected,
                     "also": [n for n in names if n != expected] + [top],
                     "repository": shed.rsplit("/", 1)[-1], "image": None if reqs else image,
                     "exe": argv[0] if argv[0].startswith("/") else f"{env}/bin/{argv[0]}", "argv": argv})
    return rows


def _shed_dir(repo: Path, names: list[str], d: str) -> str:
    """Where the Tool Shed installs the tool's directory: shed_tools/<shed>/repos/<owner>/<repo>/<changeset>/<repo>,
    the repository named by the nearest .shed.yml (else the directory's name)."""
    name = d.rsplit("/", 1)[-1]
    for parent in (d, d.rsplit("/", 1)[0]):
        if f"{parent}/.shed.yml" in names:
            m = re.search(r"^name:\s*['\"]?([\w.+-]+)", _git_show(repo, f"{parent}/.shed.yml"), re.M)
            if m:
                name = m.group(1)
                break
    return f"/galaxy/shed_tools/toolshed.g2.bx.psu.edu/repos/bgruening/{name}/{_hash(d)}/{name}"


def _ls(repo: Path, under: str) -> list[str]:
    return subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD", under],
                          capture_output=True, text=True, check=True).stdout.split()


KINDS = {
    "snakemake": ("https://github.com/snakemake/snakemake-wrappers", "snakemake_wrappers.jsonl", snakemake_rows,
                  "first tool command of each bio/**/wrapper.py's shell() strings, from a hash-named Snakemake "
                  "conda env"),
    "galaxy": ("https://github.com/bgruening/galaxytools", "galaxy_tools.jsonl", galaxy_rows,
               "first tool command of each tool XML's <command> block, Cheetah stripped; env as Galaxy's conda "
               "resolver names it"),
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("repo", type=Path)
    ap.add_argument("--kind", choices=["nfcore", *KINDS], default="nfcore")
    ap.add_argument("--every", type=int, default=None,
                    help="keep every Nth module (sorted) to stay small; nf-core 4, else 1 (2: a tuned/held-out split)")
    ap.add_argument("--offset", type=int, default=0, help="start at this module: another offset is a held-out sample")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    rev = subprocess.run(["git", "-C", str(a.repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    if a.kind != "nfcore":
        source, file_name, build, note = KINDS[a.kind]
        out = a.out if a.out != OUT else OUT.parent / file_name
        built = build(a.repo)[a.offset :: a.every or 1]
        with out.open("w") as f:
            sample = f"; lines {a.offset}::{a.every} (a tuned/held-out split)" if a.every else ""
            f.write(json.dumps({"source": source, "commit": rev, "note": note + sample}) + "\n")
            for r in built:
                f.write(json.dumps(r) + "\n")
        print(f"{len(built)} command lines -> {out}", file=sys.stderr)
        return 0
    names = subprocess.run(["git", "-C", str(a.repo), "ls-tree", "-r", "--name-only", "HEAD", "modules/nf-core"],
                           capture_output=True, text=True, check=True).stdout.split()
    mains = sorted(n for n in names if n.endswith("/main.nf"))
    rows = []
    every = a.every or 4
    for path in mains[a.offset :: every]:
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
    print(f"{len(rows)} command lines from {len(mains[a.offset :: every])} modules -> {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
