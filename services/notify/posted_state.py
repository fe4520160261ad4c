"""What each route last posted of each finding, kept in a JSON file across restarts (the
de-duplication state). Written atomically after a batch's posts and before its offsets are committed,
so a crash in between re-reads the batch and finds it posted."""

from __future__ import annotations

import json
import os
from pathlib import Path

from execsight.notify.routes import Posted

State = dict[tuple[str, str], Posted]


def load_state(path: Path) -> State:
    """The saved state; an absent file is an empty state. A corrupt file raises ValueError."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not a notify state file: {exc.msg}") from exc
    out: State = {}
    for key, value in raw.get("posted", {}).items():
        route, _, fid = key.partition("\t")
        out[(route, fid)] = Posted(str(value["status"]), str(value["severity"]))
    return out


def save_state(path: Path, state: State) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"posted": {f"{r}\t{f}": {"status": p.status, "severity": p.severity}
                      for (r, f), p in sorted(state.items())}}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=0))
    os.replace(tmp, path)
