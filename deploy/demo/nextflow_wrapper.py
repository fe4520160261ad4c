"""The files of a Nextflow task work directory, rendered as Nextflow's local executor writes them.

A task lives in `work/<2 hex>/<30 hex>/` (the 128-bit task hash). Nextflow writes `.command.sh` (the
task script) and `.command.run` (the bash wrapper from BashWrapperBuilder's template), then starts
`/bin/bash -ue .command.run` in that directory. The wrapper stages inputs as symlinks, touches
`.command.begin`, runs `/bin/bash -ue <dir>/.command.sh` with stdout and stderr teed to
`.command.out` and `.command.err`, and writes the exit status to `.exitcode` on exit.

Pure functions only: nothing here touches the file system.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

BASH = ("/bin/bash", "-ue")


def task_hash(session_id: str, process: str, tag: str | None, script: str, inputs: Sequence[str]) -> str:
    """32 hex digits identifying a task (Nextflow hashes the session, process, inputs and script the same way)."""
    h = hashlib.md5(usedforsecurity=False)
    for part in (session_id, process, tag or "", script, *sorted(inputs)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def task_dir(work_root: Path, digest: str) -> Path:
    """`<work_root>/<first 2 hex>/<other 30 hex>`, as Nextflow lays out its work directory."""
    if len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"task hash must be 32 lowercase hex digits, got {digest!r}")
    return work_root / digest[:2] / digest[2:]


def task_name(process: str, tag: str | None) -> str:
    """Nextflow's task name: the process name, with the tag in parentheses when there is one."""
    return f"{process} ({tag})" if tag else process


def render_command_sh(script: str) -> str:
    """`.command.sh`: the task script under a bash shebang (Nextflow strips the common indentation)."""
    body = script.strip("\n")
    return f"#!/bin/bash -ue\n{body}\n"


def _stage_lines(stage: Mapping[str, Path]) -> str:
    lines = ["    true", "    # stage input files"]
    for name, source in sorted(stage.items()):
        lines.append(f"    rm -f {shlex.quote(name)}")
        lines.append(f"    ln -s {shlex.quote(str(source))} {shlex.quote(name)}")
    return "\n".join(lines)


def render_command_run(name: str, workdir: Path, stage: Mapping[str, Path], outputs: Sequence[str]) -> str:
    """`.command.run`: the wrapper Nextflow's local executor writes for a task (no container, no scratch)."""
    folder = str(workdir)
    q = shlex.quote
    outputs_block = "\n".join(f"### - '{o}'" for o in outputs) if outputs else "### []"
    return f"""#!/bin/bash
# NEXTFLOW TASK: {name}
### ---
### name: '{name}'
### outputs:
{outputs_block}
### ...
set -e
set -u
NXF_DEBUG=${{NXF_DEBUG:=0}}; [[ $NXF_DEBUG > 1 ]] && set -x
NXF_ENTRY=${{1:-nxf_main}}


nxf_sleep() {{
  sleep $1 2>/dev/null || sleep 1;
}}

nxf_date() {{
    local ts=$(date +%s%3N);
    if [[ ${{#ts}} == 10 ]]; then echo ${{ts}}000
    elif [[ $ts == *%3N ]]; then echo ${{ts/\\%3N/000}}
    elif [[ $ts == *3N ]]; then echo ${{ts/3N/000}}
    elif [[ ${{#ts}} == 13 ]]; then echo $ts
    else echo "Unexpected timestamp value: $ts"; exit 1
    fi
}}

nxf_env() {{
    echo '============= task environment ============='
    env | sort | sed "s/\\(.*\\)AWS\\(.*\\)=\\(.\\{{6\\}}\\).*/\\1AWS\\2=\\3xxxxxxxxxxxxx/"
    echo '============= task output =================='
}}

nxf_kill() {{
    declare -a children
    while read P PP;do
        children[$PP]+=" $P"
    done < <(ps -e -o pid= -o ppid=)

    kill_all() {{
        [[ $1 != $$ ]] && kill $1 2>/dev/null || true
        for i in ${{children[$1]:=}}; do kill_all $i; done
    }}

    kill_all $1
}}

on_exit() {{
    exit_status=${{nxf_main_ret:=$?}}
    printf -- $exit_status > {q(folder + "/.exitcode")}
    set +u
    exit $exit_status
}}

on_term() {{
    set +e
    [[ "$pid" ]] && nxf_kill $pid
}}

nxf_launch() {{
    /bin/bash -ue {q(folder + "/.command.sh")}
}}

nxf_stage() {{
{_stage_lines(stage)}
}}

nxf_unstage() {{
    true
    [[ ${{nxf_main_ret:=0}} != 0 ]] && return
}}

nxf_main() {{
    trap on_exit EXIT
    trap on_term TERM INT USR2
    trap '' USR1

    [[ "${{NXF_CHDIR:-}}" ]] && cd "$NXF_CHDIR"
    export NXF_BOXID="nxf-$(dd bs=18 count=1 if=/dev/urandom 2>/dev/null | base64 | tr +/ 0A | tr -d '\\r\\n')"
    NXF_SCRATCH=''
    [[ $NXF_DEBUG > 0 ]] && nxf_env
    touch {q(folder + "/.command.begin")}
    set +u
    set -u
    [[ $NXF_SCRATCH ]] && cd $NXF_SCRATCH
    export NXF_TASK_WORKDIR="$PWD"
    nxf_stage

    set +e
    (set -o pipefail; (nxf_launch | tee .command.out) 3>&1 1>&2 2>&3 | tee .command.err) &
    pid=$!
    wait $pid || nxf_main_ret=$?
    nxf_unstage
}}

$NXF_ENTRY
"""


def launch_argv() -> list[str]:
    """The command Nextflow's local executor starts, in the task directory: `/bin/bash -ue .command.run`."""
    return [*BASH, ".command.run"]
