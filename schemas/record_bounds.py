"""The sizes a ProcessExec may have (part of the contract): the collector cuts to them, the correlator
enforces them again at its boundary, so nothing downstream (state, rows, enriched records) can grow
with what one process passes to execve.

Pure functions; each returns the bounded value and whether anything was cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ARGV_MAX_ARGS = 256  # as many as the eBPF exec probe reads (probes.MAX_ARGS)
ARGV_MAX_BYTES = 4096  # UTF-8 bytes over all arguments, as the eBPF probe reads (probes.ARGSIZE)
ENV_MAX_VARS = 64  # allow-listed variables kept per exec
ENV_MAX_VALUE_CHARS = 1024
ENV_MAX_BYTES = 16384  # names and values together
PATH_MAX_CHARS = 4096  # exe, cwd, cgroup path (PATH_MAX)
COMM_MAX_CHARS = 64  # the kernel's is 15 bytes; more room for seeded or hand-made records
NAME_MAX_CHARS = 256  # host ids, container ids and runtimes, hostnames, versions

# Environment variables the correlator derives context from: kept first when the bound cuts.
ENV_KEEP_FIRST = (
    "EXECSIGHT_PIPELINE", "EXECSIGHT_RUN_ID", "EXECSIGHT_TASK", "EXECSIGHT_TASK_ID", "AWS_BATCH_JOB_ID",
    "AWS_BATCH_JQ_NAME", "SLURM_JOB_ID", "SLURM_JOB_NAME", "NXF_TASK_WORKDIR", "NXF_CLI", "SNAKEMAKE_RULE",
    "SNAKEMAKE_JOBID", "SNAKEMAKE_THREADS", "SNAKEMAKE_MEM_MB",
)


def _utf8_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "replace"))


def _cut_utf8(s: str, max_bytes: int) -> str:
    if _utf8_len(s) <= max_bytes:
        return s
    return s.encode("utf-8", "replace")[:max_bytes].decode("utf-8", "ignore")


def bound_argv(argv: Sequence[str]) -> tuple[list[str], bool]:
    """At most ARGV_MAX_ARGS arguments and ARGV_MAX_BYTES bytes (a NUL counted after each); the
    argument that crosses the byte bound is cut, the ones after it dropped."""
    out: list[str] = []
    used = 0
    for i, arg in enumerate(argv):
        if i >= ARGV_MAX_ARGS:
            return out, True
        n = _utf8_len(arg) + 1
        if used + n > ARGV_MAX_BYTES:
            room = ARGV_MAX_BYTES - used - 1
            if room > 0:
                out.append(_cut_utf8(arg, room))
            return out, True
        out.append(arg)
        used += n
    return out, False


def bound_env(env: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """At most ENV_MAX_VARS variables of ENV_MAX_BYTES together, values cut at ENV_MAX_VALUE_CHARS;
    the variables context is derived from are kept first, then the others in name order."""
    if len(env) <= ENV_MAX_VARS and sum(len(k) + len(v) for k, v in env.items()) <= ENV_MAX_BYTES // 4 \
            and all(len(v) <= ENV_MAX_VALUE_CHARS for v in env.values()):
        return dict(env), False  # the usual case, cheap: even 4-byte characters fit
    cut = False
    order = [k for k in ENV_KEEP_FIRST if k in env] + sorted(k for k in env if k not in ENV_KEEP_FIRST)
    out: dict[str, str] = {}
    used = 0
    for name in order:
        value = env[name]
        if len(value) > ENV_MAX_VALUE_CHARS:
            value, cut = value[:ENV_MAX_VALUE_CHARS], True
        n = _utf8_len(name) + _utf8_len(value) + 2
        if len(out) >= ENV_MAX_VARS or used + n > ENV_MAX_BYTES or len(name) > NAME_MAX_CHARS:
            cut = True
            continue
        out[name] = value
        used += n
    return out, cut


# ContainerInfo labels (Docker labels are unbounded; Kubernetes' keys are at most 253 + 63 characters)
LABELS_MAX = 64
LABEL_VALUE_MAX_CHARS = 512
LABELS_MAX_BYTES = 16384
LABELS_KEEP_FIRST = ("io.kubernetes.pod.name", "io.kubernetes.pod.namespace", "io.kubernetes.container.name",
                     "app.kubernetes.io/name", "app", "k8s-app")


def bound_labels(labels: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """At most LABELS_MAX labels of LABELS_MAX_BYTES together, keys of at most NAME_MAX_CHARS, values cut
    at LABEL_VALUE_MAX_CHARS; the labels that name a pod or workload first, then the others by key."""
    order = [k for k in LABELS_KEEP_FIRST if k in labels] + sorted(k for k in labels if k not in LABELS_KEEP_FIRST)
    out: dict[str, str] = {}
    cut = False
    used = 0
    for key in order:
        value = labels[key]
        if len(value) > LABEL_VALUE_MAX_CHARS:
            value, cut = value[:LABEL_VALUE_MAX_CHARS], True
        n = _utf8_len(key) + _utf8_len(value) + 2
        if len(out) >= LABELS_MAX or used + n > LABELS_MAX_BYTES or len(key) > NAME_MAX_CHARS:
            cut = True
            continue
        out[key] = value
        used += n
    return out, cut
