"""execsight.reloading: a value loaded from files, loaded again when they change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from execsight.reloading import Reloading


def test_reloads_on_change_and_keeps_the_old_value_when_the_new_file_is_broken(tmp_path: Path) -> None:
    f = tmp_path / "n.txt"
    f.write_text("1")

    def bump_mtime() -> None:
        st = f.stat()
        os.utime(f, (st.st_atime, st.st_mtime + 2))  # a distinct mtime even within one clock tick

    r = Reloading(lambda: int(f.read_text()), lambda: [f], (ValueError,))
    assert (r.current, r.reload_if_changed()) == (1, False)
    f.write_text("2")
    bump_mtime()
    assert r.reload_if_changed() and r.current == 2 and r.reloads == 1
    f.write_text("x")
    bump_mtime()
    with pytest.raises(ValueError):
        r.reload_if_changed()
    assert r.current == 2 and isinstance(r.last_error, ValueError)
    assert not r.reload_if_changed()  # reported once per change, not on every check
    f.unlink()  # a file that goes away is a change too, and fails to load
    with pytest.raises(FileNotFoundError):
        Reloading(lambda: int(f.read_text()), lambda: [f], (ValueError,))
