"""Prepare a Debian/Ubuntu host for the local stack: OS packages, kernel headers for bcc, tracefs.

Everything here needs root; as another user each step says what it skipped and why.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from execsight.collector.taskstats import enable_delay_accounting

log = logging.getLogger(__name__)

APT_PACKAGES_FILE = Path(__file__).resolve().parent / "apt-packages.txt"
# One list, shared with the Makefile's `apt` target.
APT_PACKAGES: tuple[str, ...] = tuple(
    line.strip() for line in APT_PACKAGES_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")
)
# Needed to run the broker and resolve its jars; installed only when the command is missing.
TOOL_PACKAGES: dict[str, str] = {"java": "openjdk-17-jre-headless", "mvn": "maven", "runuser": "util-linux"}


def is_root() -> bool:
    return os.geteuid() == 0


def missing_packages(packages: tuple[str, ...] = APT_PACKAGES) -> list[str]:
    if shutil.which("dpkg-query") is None:
        return []
    missing = []
    for pkg in packages:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if res.returncode != 0 or "install ok installed" not in res.stdout:
            missing.append(pkg)
    missing += [pkg for tool, pkg in TOOL_PACKAGES.items() if shutil.which(tool) is None]
    return missing


def install_packages(packages: list[str]) -> list[str]:
    """apt-get install what is missing (root only). Returns what it installed."""
    if not packages:
        return []
    if not is_root():
        log.warning("not root: skipping apt-get install", extra={"missing": packages,
                    "hint": "sudo apt-get install -y " + " ".join(packages)})
        return []
    if shutil.which("apt-get") is None:
        log.warning("no apt-get on this host: install these by hand", extra={"missing": packages})
        return []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdin=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                   check=True, env=env, stdin=subprocess.DEVNULL)
    log.info("installed packages", extra={"packages": packages})
    return packages


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def newest_headers(src: Path = Path("/usr/src")) -> tuple[Path, Path] | None:
    """(build, source) trees of the newest installed Debian linux-headers-<ver>-amd64 package."""
    builds = sorted(
        (p for p in src.glob("linux-headers-*-amd64") if p.is_dir()), key=lambda p: _version_key(p.name)
    )
    if not builds:
        return None
    build = builds[-1]
    common = src / (build.name.removesuffix("-amd64") + "-common")
    return build, (common if common.is_dir() else build)


def install_exact_headers(release: str | None = None, modules: Path = Path("/lib/modules")) -> list[str]:
    """Installs linux-headers-<running release> when the distribution has it (best: exact struct layouts)."""
    release = release or platform.release()
    if (modules / release / "build").exists() or not is_root() or shutil.which("apt-cache") is None:
        return []
    package = f"linux-headers-{release}"
    known = subprocess.run(["apt-cache", "show", package], capture_output=True, stdin=subprocess.DEVNULL)
    if known.returncode != 0:
        log.info("no headers package for the running kernel: the nearest will be linked", extra={"package": package})
        return []
    return install_packages([package])


def link_kernel_headers(release: str | None = None, modules: Path = Path("/lib/modules"),
                        src: Path = Path("/usr/src")) -> list[str]:
    """Give bcc /lib/modules/$(uname -r)/{build,source} when the running kernel has no headers package."""
    release = release or platform.release()
    kdir = modules / release
    build_link, source_link = kdir / "build", kdir / "source"
    if build_link.exists() and source_link.exists():
        return []
    trees = newest_headers(src)
    if trees is None:
        log.warning("no /usr/src/linux-headers-*-amd64: bcc will not compile (install linux-headers-amd64)")
        return []
    if not is_root():
        log.warning("not root: cannot link kernel headers", extra={"dir": str(kdir)})
        return []
    kdir.mkdir(parents=True, exist_ok=True)
    made = []
    for link, target in ((build_link, trees[0]), (source_link, trees[1])):
        if link.exists():
            continue
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target)
        made.append(f"{link} -> {target}")
    log.info("linked kernel headers", extra={"links": made})
    return made


def _mounted(path: str, fstype: str) -> bool:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    for line in mounts:
        f = line.split()
        if len(f) >= 3 and f[1] == path and f[2] == fstype:
            return True
    return False


def mount_tracing() -> list[str]:
    """Mount tracefs and debugfs where they are not mounted (root only; failures are warnings)."""
    done = []
    for path, fstype in (("/sys/kernel/tracing", "tracefs"), ("/sys/kernel/debug", "debugfs")):
        if _mounted(path, fstype):
            continue
        if not is_root():
            log.warning("not root: cannot mount", extra={"path": path, "fstype": fstype})
            continue
        res = subprocess.run(["mount", "-t", fstype, "nodev", path], capture_output=True, text=True)
        if res.returncode == 0:
            done.append(path)
        else:
            log.warning("mount failed", extra={"path": path, "fstype": fstype, "err": res.stderr.strip()})
    return done


def prepare_host() -> list[str]:
    """All of the above; returns a line per change made."""
    changes = [f"apt: installed {p}" for p in install_packages(missing_packages())]
    changes += [f"apt: installed {p}" for p in install_exact_headers()]
    changes += [f"kernel headers: {line}" for line in link_kernel_headers()]
    changes += [f"mounted {p}" for p in mount_tracing()]
    changes += [f"sysctl: {line}" for line in enable_delay_accounting()]
    return changes
