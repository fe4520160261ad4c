"""Struct member offsets from the kernel's own BTF (/sys/kernel/btf/vmlinux).

The kernel headers on a build host may not match the running kernel, so the BPF
program never trusts them for struct layouts: it reads ``task_struct`` fields at
the offsets found here, passed in as -D macros, and the loader verifies them
against known values at start-up.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_DECL_TAG, KIND_ENUM64 = 13, 14, 15, 17, 19


class BtfError(RuntimeError):
    """BTF is missing or does not describe what the collector needs."""


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    bit_offset: int


@dataclass(frozen=True)
class BtfType:
    kind: int
    name: str
    size_or_type: int
    members: tuple[Member, ...] = ()


def _extra_len(kind: int, vlen: int) -> int:
    if kind in (KIND_INT, KIND_VAR, KIND_DECL_TAG):
        return 4
    if kind == KIND_ARRAY:
        return 12
    if kind in (KIND_STRUCT, KIND_UNION, KIND_DATASEC, KIND_ENUM64):
        return 12 * vlen
    if kind in (KIND_ENUM, KIND_FUNC_PROTO):
        return 8 * vlen
    return 0


def parse_btf(data: bytes, wanted: frozenset[str] | None = None) -> dict[int, BtfType]:
    """Type id -> type. With ``wanted``, members are decoded only for structs of those names
    (and for anonymous structs/unions, which named structs embed)."""
    if len(data) < 24:
        raise BtfError("BTF blob too short")
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
    if magic != BTF_MAGIC:
        raise BtfError(f"bad BTF magic {magic:#x}")
    type_off, type_len, str_off, _str_len = struct.unpack_from("<IIII", data, 8)
    types_start = hdr_len + type_off
    strings_start = hdr_len + str_off

    def string(off: int) -> str:
        end = data.index(b"\0", strings_start + off)
        return data[strings_start + off : end].decode()

    out: dict[int, BtfType] = {}
    pos, end, type_id = types_start, types_start + type_len, 1
    while pos < end:
        name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
        pos += 12
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        members: tuple[Member, ...] = ()
        if kind in (KIND_STRUCT, KIND_UNION):
            name = string(name_off) if name_off else ""
            if wanted is None or not name or name in wanted:
                mlist = []
                for i in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", data, pos + 12 * i)
                    bit_off = m_off & 0xFFFFFF if kflag else m_off
                    mlist.append(Member(string(m_name) if m_name else "", m_type, bit_off))
                members = tuple(mlist)
            out[type_id] = BtfType(kind, name, size_or_type, members)
        elif kind == KIND_PTR or name_off == 0:
            out[type_id] = BtfType(kind, "", size_or_type)
        pos += _extra_len(kind, vlen)
        type_id += 1
    return out


def member_offset(types: dict[int, BtfType], struct_name: str, member: str) -> int:
    """Byte offset of ``member`` in ``struct struct_name``, looking into anonymous members."""
    for t in types.values():
        if t.kind == KIND_STRUCT and t.name == struct_name:
            found = _find(types, t, member, 0)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {member}")
            return found // 8
    raise BtfError(f"no struct {struct_name} in BTF")


def _find(types: dict[int, BtfType], t: BtfType, member: str, base: int) -> int | None:
    for m in t.members:
        if m.name == member:
            return base + m.bit_offset
        if not m.name:
            inner = types.get(m.type_id)
            if inner is not None and inner.kind in (KIND_STRUCT, KIND_UNION):
                hit = _find(types, inner, member, base + m.bit_offset)
                if hit is not None:
                    return hit
    return None


# (macro, struct, member) for walking the working directory (task->fs->pwd) up to its root in BPF
CWD_MEMBERS = (
    ("OFF_TASK_FS", "task_struct", "fs"),
    ("OFF_FS_PWD", "fs_struct", "pwd"),
    ("OFF_PATH_MNT", "path", "mnt"),
    ("OFF_PATH_DENTRY", "path", "dentry"),
    ("OFF_DENTRY_PARENT", "dentry", "d_parent"),
    ("OFF_DENTRY_NAME", "dentry", "d_name"),
    ("OFF_QSTR_NAME", "qstr", "name"),
    ("OFF_VFSMOUNT_ROOT", "vfsmount", "mnt_root"),
    ("OFF_MOUNT_MNT", "mount", "mnt"),
    ("OFF_MOUNT_PARENT", "mount", "mnt_parent"),
    ("OFF_MOUNT_MOUNTPOINT", "mount", "mnt_mountpoint"),
)


@dataclass(frozen=True)
class TaskOffsets:
    pid: int
    tgid: int
    start_boottime: int
    real_parent: int
    exit_code: int
    mm: int
    mm_arg_start: int
    mm_arg_end: int
    mm_env_start: int
    mm_env_end: int
    group_leader: int
    comm: int
    signal: int
    signal_live: int  # signal_struct.live: threads of the group not yet in do_exit
    cwd: tuple[tuple[str, int], ...] = ()  # (macro, offset) for CWD_MEMBERS; empty: cwd is read from /proc

    def cflags(self) -> list[str]:
        cwd = [f"-D{macro}={off}" for macro, off in self.cwd] + (["-DHAVE_CWD"] if self.cwd else [])
        return [*cwd,
            f"-DOFF_PID={self.pid}",
            f"-DOFF_TGID={self.tgid}",
            f"-DOFF_START_BOOTTIME={self.start_boottime}",
            f"-DOFF_REAL_PARENT={self.real_parent}",
            f"-DOFF_EXIT_CODE={self.exit_code}",
            f"-DOFF_MM={self.mm}",
            f"-DOFF_MM_ARG_START={self.mm_arg_start}",
            f"-DOFF_MM_ARG_END={self.mm_arg_end}",
            f"-DOFF_MM_ENV_START={self.mm_env_start}",
            f"-DOFF_MM_ENV_END={self.mm_env_end}",
            f"-DOFF_GROUP_LEADER={self.group_leader}",
            f"-DOFF_COMM={self.comm}",
            f"-DOFF_SIGNAL={self.signal}",
            f"-DOFF_SIGNAL_LIVE={self.signal_live}",
        ]


def task_offsets(path: Path = VMLINUX_BTF) -> TaskOffsets:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BtfError(f"{path}: {exc.strerror}") from exc
    types = parse_btf(data, frozenset({"task_struct", "mm_struct", "signal_struct", *(s for _, s, _ in CWD_MEMBERS)}))
    try:
        cwd = tuple((macro, member_offset(types, s, m)) for macro, s, m in CWD_MEMBERS)
    except BtfError:
        cwd = ()
    return TaskOffsets(
        pid=member_offset(types, "task_struct", "pid"),
        tgid=member_offset(types, "task_struct", "tgid"),
        start_boottime=member_offset(types, "task_struct", "start_boottime"),
        real_parent=member_offset(types, "task_struct", "real_parent"),
        exit_code=member_offset(types, "task_struct", "exit_code"),
        mm=member_offset(types, "task_struct", "mm"),
        mm_arg_start=member_offset(types, "mm_struct", "arg_start"),
        mm_arg_end=member_offset(types, "mm_struct", "arg_end"),
        mm_env_start=member_offset(types, "mm_struct", "env_start"),
        mm_env_end=member_offset(types, "mm_struct", "env_end"),
        group_leader=member_offset(types, "task_struct", "group_leader"),
        comm=member_offset(types, "task_struct", "comm"),
        signal=member_offset(types, "task_struct", "signal"),
        signal_live=member_offset(types, "signal_struct", "live"),
        cwd=cwd,
    )
