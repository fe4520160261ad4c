"""Which state values of one host changed in a batch, as changelog writes (the JSON boundary).

A value removed in a batch is written once more with gone=True (or not at all when it was
created in that batch too, so short-lived processes never reach the changelog); its tombstone
follows one batch later, so a replay never meets a key whose removal it has not also replayed.
"""

from __future__ import annotations

from execsight.correlator.tree_state import Json, State


class ChangeLog:
    def __init__(self) -> None:
        self._dirty: dict[str, State] = {}
        self._created: set[str] = set()
        self._removed: dict[str, State] = {}
        self._tombstones: list[str] = []

    def tombstoned(self, key: str) -> None:
        """A loaded entry marked gone: its tombstone is written with the next changes."""
        self._tombstones.append(key)

    def touch(self, value: State) -> None:
        self._dirty[value.key] = value

    def new(self, value: State) -> None:
        key = value.key
        self._dirty[key] = value
        self._created.add(key)
        self._removed.pop(key, None)

    def remove(self, value: State) -> None:
        key = value.key
        self._removed[key] = value
        self._dirty.pop(key, None)

    def changes(self) -> list[tuple[str, Json | None]]:
        """Changelog writes since the last call: values to set, then removals (None)."""
        out: list[tuple[str, Json | None]] = [(k, None) for k in self._tombstones]
        self._tombstones = []
        removed = self._removed
        for key, value in self._dirty.items():
            if key not in removed:
                out.append((key, value.to_json()))
        for key, value in removed.items():
            if key in self._created:
                continue
            d = value.to_json()
            d["gone"] = True
            out.append((key, d))
            self._tombstones.append(key)
        self._dirty = {}
        self._created = set()
        self._removed = {}
        return out
