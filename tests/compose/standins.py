"""Local stand-ins for the images deploy/docker-compose.yml pulls, built without a registry.

No image registry is reachable here, so: Debian bookworm from ``debootstrap --variant=minbase``
(once; the tarball is cached), imported with ``docker import``, then one image per name the
compose file and deploy/execsight.Dockerfile use, built from tests/compose/standins/<name>/ and
tagged with that name in the test's own engine (nothing is pushed). Each carries a label with the
hash of its inputs: an image whose inputs did not change is not built again.

Test-only. Users pull the real images (README "With Docker").

    python -m tests.compose.standins      # start the test engine if needed, build what is missing
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from execsight.deploy.local.kafka_broker import DEFAULT_LIB_DIR, ensure_jars
from execsight.settings import REPO_ROOT
from tests.compose.engine import Engine, EngineError, default_paths

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STANDINS_DIR = HERE / "standins"
COMPOSE_FILE = REPO_ROOT / "deploy" / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "deploy" / "execsight.Dockerfile"
LABEL = "org.execsight.standin.inputs"
MINBASE_IMAGE = "execsight-standin/bookworm-minbase:latest"
BASE_IMAGE = "execsight-standin/base:latest"
SUITE = "bookworm"
MIRROR_ENV = "EXECSIGHT_COMPOSE_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")

Timings = dict[str, float]


@dataclass(frozen=True)
class StandIn:
    folder: str            # under tests/compose/standins/
    tag: str               # the name the compose file or the Dockerfile uses
    extras: Callable[[], Mapping[str, Path]]   # more build-context entries: name -> file or folder


def image_names(compose_file: Path = COMPOSE_FILE, dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    """The images to stand in for: kafka's and db's of the compose file, the Dockerfile's base."""
    services = yaml.safe_load(compose_file.read_text())["services"]
    m = re.search(r"^FROM\s+(\S+)", dockerfile.read_text(), re.MULTILINE)
    if not m:
        raise ValueError(f"{dockerfile}: no FROM line")
    return {"python": m.group(1), "kafka": str(services["kafka"]["image"]), "timescaledb": str(services["db"]["image"])}


def timescaledb_dir(env: Mapping[str, str] = os.environ, repo: Path = REPO_ROOT) -> Path:
    """The TimescaleDB build (../shared/timescaledb beside the clone, as the Makefile looks for it)."""
    candidates = [Path(env["TIMESCALEDB_DIR"])] if env.get("TIMESCALEDB_DIR") else []
    candidates += [repo.parent / "shared" / "timescaledb", repo / "shared" / "timescaledb"]
    for c in candidates:
        if (c / "install.sh").is_file():
            return c
    raise FileNotFoundError("no TimescaleDB build (install.sh) in TIMESCALEDB_DIR or ../shared/timescaledb")


def _ca_certificates() -> Mapping[str, Path]:
    return {"ca-certificates": HOST_CA_DIR}


def _kafka_jars() -> Mapping[str, Path]:
    ensure_jars(DEFAULT_LIB_DIR)
    return {"libs": DEFAULT_LIB_DIR}


def _timescaledb() -> Mapping[str, Path]:
    return {"timescaledb": timescaledb_dir()}


def standins(names: Mapping[str, str] | None = None) -> list[StandIn]:
    """In build order: the base first, every other one is built FROM it."""
    names = names or image_names()
    return [
        StandIn("base", BASE_IMAGE, _ca_certificates),
        StandIn("python", names["python"], dict),
        StandIn("kafka", names["kafka"], _kafka_jars),
        StandIn("timescaledb", names["timescaledb"], _timescaledb),
    ]


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    if root.is_file():
        yield "", root
        return
    for p in sorted(root.rglob("*")):
        if p.is_file():
            yield str(p.relative_to(root)), p


def inputs_hash(context: Mapping[str, Path], parent_id: str) -> str:
    """sha256 of every context file's name, mode and content, and of the parent image's id."""
    h = hashlib.sha256(parent_id.encode())
    for name in sorted(context):
        for rel, path in _files(context[name]):
            h.update(f"\0{name}/{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def _debootstrap_mounts(target: Path) -> list[str]:
    """Mount points under target (debootstrap mounts /proc and /sys there; a crash leaves them)."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    prefix = str(target.resolve()) + "/"
    return sorted((m for m in (ln.split()[1] for ln in lines) if m.startswith(prefix)), reverse=True)


def _remove_tree(target: Path) -> None:
    for m in _debootstrap_mounts(target):
        subprocess.run(["umount", "-l", m], check=False, capture_output=True)
    shutil.rmtree(target, ignore_errors=True)


def rootfs_tarball(cache: Path, env: Mapping[str, str] = os.environ) -> tuple[Path, float | None]:
    """Debian bookworm minbase as a tar, made by debootstrap once; (path, seconds it took or None)."""
    tarball = cache / f"{SUITE}-minbase.tar"
    if tarball.is_file():
        return tarball, None
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).exists():
        raise EngineError("debootstrap is missing: apt-get install debootstrap")
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "rootfs.tmp"
    _remove_tree(target)
    started = time.monotonic()
    log.info("debootstrap %s --variant=minbase into %s", SUITE, target)
    try:
        res = subprocess.run([debootstrap, "--variant=minbase", "--include=ca-certificates", SUITE, str(target),
                              env.get(MIRROR_ENV) or DEFAULT_MIRROR], capture_output=True, text=True, timeout=1800)
        if res.returncode != 0:
            raise EngineError(f"debootstrap failed ({res.returncode}):\n{(res.stdout + res.stderr)[-4000:]}")
        tmp = tarball.with_suffix(".tar.tmp")
        subprocess.run(["tar", "-C", str(target), "--numeric-owner", "-cf", str(tmp), "."], check=True, timeout=600)
        tmp.replace(tarball)
    finally:
        _remove_tree(target)
    return tarball, time.monotonic() - started


def import_minbase(engine: Engine, tarball: Path) -> float | None:
    """docker import of the tarball unless the image of this very tarball is there; seconds or None."""
    st = tarball.stat()
    key = f"{st.st_size}-{int(st.st_mtime)}"
    if engine.image_label(MINBASE_IMAGE, LABEL) == key:
        return None
    started = time.monotonic()
    engine.docker("import", "--change", f"LABEL {LABEL}={key}", "--change", 'CMD ["/bin/bash"]',
                  str(tarball), MINBASE_IMAGE, timeout=900)
    return time.monotonic() - started


@contextmanager
def _context(standin: StandIn) -> Iterator[tuple[Path, Mapping[str, Path]]]:
    """A build context: the stand-in's folder and its extras (copied: docker sends no symlinks)."""
    entries: dict[str, Path] = {p.name: p for p in sorted((STANDINS_DIR / standin.folder).iterdir())}
    entries.update(standin.extras())
    with tempfile.TemporaryDirectory(prefix=f"standin-{standin.folder}-") as tmp:
        ctx = Path(tmp)
        for name, src in entries.items():
            if src.is_dir():
                shutil.copytree(src, ctx / name, symlinks=False)
            elif src.exists():
                shutil.copy2(src, ctx / name)
            else:  # e.g. no extra CA certificates on this host: an empty folder
                (ctx / name).mkdir()
        yield ctx, {name: ctx / name for name in entries}


def build_standin(engine: Engine, standin: StandIn) -> float | None:
    """Build one stand-in unless an image with the same inputs is there; seconds it took or None."""
    parent = MINBASE_IMAGE if standin.folder == "base" else BASE_IMAGE
    parent_id = engine.image_id(parent)
    if parent_id is None:
        raise EngineError(f"{parent} is missing: build the stand-ins in order")
    with _context(standin) as (ctx, entries):
        digest = inputs_hash(entries, parent_id)
        if engine.image_label(standin.tag, LABEL) == digest:
            return None
        started = time.monotonic()
        log.info("building stand-in %s", standin.tag)
        # the host's network: this engine has no bridge, and apt and pip reach their registries
        engine.docker("build", "--network=host", "--label", f"{LABEL}={digest}", "-t", standin.tag, str(ctx),
                      timeout=1800)
    return time.monotonic() - started


def ensure_standins(engine: Engine) -> Timings:
    """Everything the compose file's images need, built or reused; the seconds of each step done."""
    timings: Timings = {}
    tarball, took = rootfs_tarball(engine.paths.cache)
    if took is not None:
        timings["debootstrap"] = took
    took = import_minbase(engine, tarball)
    if took is not None:
        timings["docker import"] = took
    for standin in standins():
        started = time.monotonic()
        took = build_standin(engine, standin)
        timings[f"stand-in {standin.folder}" + ("" if took is not None else " (cached)")] = (
            took if took is not None else time.monotonic() - started)
    return timings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep-engine", action="store_true", help="leave the test engine running afterwards")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    engine = Engine(default_paths())
    started_here = not engine.running()
    if started_here:
        engine.start()
    try:
        timings = ensure_standins(engine)
    finally:
        if started_here and not args.keep_engine:
            engine.stop()
    json.dump({k: round(v, 1) for k, v in timings.items()}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
