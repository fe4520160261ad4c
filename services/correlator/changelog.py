"""Which state values of one host changed in a batch, as changelog writes (the JSON boundary).

A value removed in a batch is written once more as a *gone* entry (or not at all when it was
created in that batch too, so short-lived processes never reach the changelog); its tombstone
follows one batch later. A gone entry holds the value as it was stored before that batch
(``stored``) and the offsets the batch applied to the host; the batch's partition marks are
written after it. A worker killed between the two leaves the entry without its marks, the batch
is read again, and the loader (``restore``) brings the value back as it was before the batch, so
the replay derives the same records again: taking the removal as done would replay the exit of a
process that is not there (an "unknown" process with no parent, command or run, #19.8), lose the
parent of a child forked in that batch, and leave its task open.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from execsight.correlator.tree_state import Json

PROCESS_KEY = "p|"  # tree_state.Proc.key: p|pid|start


class Logged(Protocol):
    """A state value the changelog can hold (tree_state's types, containers.ContainerState)."""

    @property
    def key(self) -> str: ...
    def to_json(self) -> Json: ...


class ChangeLog:
    def __init__(self) -> None:
        self._dirty: dict[str, Logged] = {}
        self._created: set[str] = set()
        self._removed: dict[str, Logged] = {}
        self._tombstones: list[str] = []

    def tombstoned(self, key: str) -> None:
        """A loaded entry marked gone: its tombstone is written with the next changes."""
        self._tombstones.append(key)

    def touch(self, value: Logged) -> None:
        self._dirty[value.key] = value

    def new(self, value: Logged) -> None:
        key = value.key
        self._dirty[key] = value
        self._created.add(key)
        self._removed.pop(key, None)

    def remove(self, value: Logged) -> None:
        key = value.key
        self._removed[key] = value
        self._dirty.pop(key, None)

    def changes(self, applied: Mapping[str, int] | None = None) -> list[tuple[str, Json | None]]:
        """Changelog writes since the last call: values to set, then removals (None). ``applied``: the
        last offset per source of the host's events in this batch, kept in its gone entries."""
        out: list[tuple[str, Json | None]] = [(k, None) for k in self._tombstones]
        self._tombstones = []
        removed = self._removed
        procs: list[tuple[int, str, Logged]] = []
        for key, value in self._dirty.items():
            if key in removed:
                continue
            if key.startswith(PROCESS_KEY):
                procs.append((int(key.rsplit("|", 1)[1]), key, value))
            else:
                out.append((key, value.to_json()))
        # processes last, parents before children: an event is a process's, and what it changes besides (its
        # task, run, parent, the host's activity) is written before it, so a process that reached the
        # changelog from a lost batch means those did too, and the replay skipping its event skips nothing
        procs.sort(key=lambda item: item[0])
        out += [(key, value.to_json()) for _, key, value in procs]
        for key, value in removed.items():
            if key in self._created:
                continue
            d = value.to_json()
            d["gone"] = dict(applied) if applied else True
            out.append((key, d))
            self._tombstones.append(key)
        self._dirty = {}
        self._created = set()
        self._removed = {}
        return out


def stored(previous: Json | None, value: Json | None) -> Json | None:
    """What the changelog keeps for a write: a gone entry carries the value as stored before (its state
    before the batch that removed it); without a stored version it is a plain removal (gone=True)."""
    if value is None or not isinstance(value.get("gone"), dict):
        return value
    if previous is None:
        return {**value, "gone": True}
    return {**{k: v for k, v in previous.items() if k != "gone"}, "gone": value["gone"]}


def restore(value: Json, mark: Callable[[str], int] | None) -> Json | None:
    """A loaded gone entry: the value to load again, as it was before the batch that removed it, when
    that batch is read again (the partition mark of a source the value takes events from is below the
    batch's offset: a crash before its marks were written); None when the removal stands."""
    gone: Any = value.get("gone")
    if mark is None or not isinstance(gone, dict):
        return None
    # only the sources of the value's own events: marks are written one source after the other, and a
    # process (raw.process events only) whose exit will not be read again must not come back
    own = [src for src in gone if f"o{src}" in value] or list(gone)
    if all(mark(src) >= int(gone[src]) for src in own):
        return None
    return {k: v for k, v in value.items() if k != "gone"}
