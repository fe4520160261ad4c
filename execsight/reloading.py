"""A value loaded from files, loaded again when one of them changes (rules files of the collector and
the correlator). A file that fails to load leaves the previous value in force; the error is kept and
raised to the caller, which logs it with the file, line and reason."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
Stamp = tuple[tuple[str, float, int], ...]


def file_stamps(paths: Iterable[Path]) -> Stamp:
    """(path, mtime, size) per file; a missing file is (path, -1, -1), so it appearing is a change too."""
    out: list[tuple[str, float, int]] = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((str(p), st.st_mtime, st.st_size))
        except OSError:
            out.append((str(p), -1.0, -1))
    return tuple(out)


class Reloading(Generic[T]):
    """Holds ``current``; ``reload_if_changed()`` loads again when the files' stamps moved."""

    def __init__(self, load: Callable[[], T], paths: Callable[[], Iterable[Path]],
                 errors: tuple[type[Exception], ...]) -> None:
        self._load = load
        self._paths = paths
        self._errors = errors
        self.current: T = load()  # a broken file at start-up raises: the service does not start
        self._stamp = file_stamps(paths())
        self.last_error: Exception | None = None
        self.reloads = 0

    def reload_if_changed(self) -> bool:
        """True when a new value is in force. On a file that fails to load: keeps the old value, sets
        last_error and raises it (once per change of the files)."""
        stamp = file_stamps(self._paths())
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            value = self._load()
        except self._errors as exc:
            self.last_error = exc
            raise
        self.current = value
        self.last_error = None
        self.reloads += 1
        return True
