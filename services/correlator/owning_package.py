"""The package a program belongs to, from evidence every process carries (pure; no file is read).

Sources, most specific first:
  * install layouts in the script's, jar's or executable's path: ``share/<pkg>-<ver>/`` and
    ``opt/<pkg>-<ver>/`` (bioconda wrappers), ``site-packages/<pkg>/`` (Python), R
    ``site-library/<pkg>/`` and ``R/library/<pkg>/``, ``/nix/store/<hash>-<pkg>-<ver>``, Homebrew
    ``Cellar/<pkg>/``;
  * the container image the process runs in: ``quay.io/biocontainers/<pkg>:<ver>``,
    ``biocontainers/<pkg>``, ``community.wave.seqera.io/library/<pkg>_<pkg2>:...``, Galaxy's
    ``depot.galaxyproject.org/singularity/<pkg>:<ver>`` (also as a cached ``.img``/``.sif`` file
    name), any ``<org>/<name>:<tag>`` that is not a base image;
  * a conda/mamba environment's name in ``.../envs/<env>/bin`` (unless it is a content hash such as
    Snakemake's ``.snakemake/conda/<hash>_`` or Galaxy's ``mulled-v1-<hash>``; Galaxy's one-package
    ``__<pkg>@<version>`` is ``<pkg>``).

A conda environment's ``conda-meta/*.json`` says exactly which package owns a file. The correlator
never reads files: the collector looks it up (services/collector/conda_ownership.py) and ships it as
ProcessExec.exe_package; ``installed`` here is that package, preferred over every guess. It also ships
the packages the environment was created for (ProcessExec.env_packages): ``sole_requested_package`` is
the one of them that is not a runtime or helper, the last evidence for a bare interpreter.
"""

from __future__ import annotations

import re
from functools import lru_cache

from execsight.correlator.program_name import name_key

_SHARE = re.compile(r"/(?:share|opt)/([A-Za-z][\w.+-]*?)-v?\d[\w.]*(?:-\w+)?/")
_SITE_PACKAGES = re.compile(r"/(?:site|dist)-packages/([A-Za-z_][\w]*)(?:/|\.py$)")
_R_LIBRARY = re.compile(r"/(?:site-library|R/library|lib/R/library)/([A-Za-z][\w.]*)/")
_NIX = re.compile(r"/(?:nix|gnu)/store/[0-9a-z]{32}-([A-Za-z][\w+-]*?)-\d")
_CELLAR = re.compile(r"/Cellar/([A-Za-z][\w+-]*)/")
# a Galaxy Tool Shed install: shed_tools/<shed>/repos/<owner>/<repository>/<changeset>/...
_TOOL_SHED = re.compile(r"/repos/[\w.-]+/([A-Za-z0-9][\w.+-]*)/[0-9a-f]{12}/")
_CONDA_ENV = re.compile(r"/envs/([^/]+)/(?:bin|lib|share|libexec|opt)/")
_HASHY = re.compile(r"^(?:env-)?[0-9a-f]{8,}(?:[-_].*)?$|^[0-9a-f]{16,}|^mulled-v\d+-[0-9a-f]{8,}")
# Galaxy's conda resolver names a one-package env __<pkg>@<version>
_GALAXY_ENV = re.compile(r"^__([A-Za-z0-9][\w.+-]*?)@")
_SYSTEM_DIRS = ("/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/", "/usr/lib/", "/lib/", "/usr/libexec/")
_PY_INTERNAL = frozenset({"pip", "setuptools", "pkg_resources", "_distutils_hack", "runpy", "encodings"})

_GALAXY_FILE = re.compile(r"depot\.galaxyproject\.org-singularity-([a-z0-9][\w.+-]*?)-v?\d[\w.]*--")
_TAG = re.compile(r"[:@].*$")
# images that are a base system or a language runtime: they say nothing about the tool
_BASE_IMAGES = frozenset(
    [
        "ubuntu", "debian", "alpine", "centos", "rockylinux", "almalinux", "fedora", "busybox", "amazonlinux",
        "archlinux", "opensuse", "oraclelinux", "python", "r-base", "r-ver", "rstudio", "tidyverse", "miniconda",
        "miniconda3", "anaconda3", "micromamba", "mambaforge", "miniforge", "miniforge3", "openjdk",
        "eclipse-temurin", "amazoncorretto", "node", "golang", "rust", "perl", "ruby", "julia", "cuda", "nvidia",
        "base-notebook", "scipy-notebook", "bash", "buildpack-deps", "distroless", "static", "base"
    ]
)
_MULLED = re.compile(r"^mulled-v2-[0-9a-f]+$")
# packages Seqera's wave images add beside the tool (compression, htslib, runtimes): never the owner by default
_HELPER_PACKAGES = frozenset(
    [
        "pigz", "gzip", "xz", "bzip2", "zstd", "htslib", "samtools", "python", "r-base", "perl", "openjdk",
        "coreutils", "gawk", "sed", "grep", "findutils", "pip", "procps-ng", "bash", "tar", "unzip", "curl", "wget",
        "pruned"
    ]
)


@lru_cache(maxsize=8192)
def package_from_layout(path: str) -> str | None:
    """The package an install layout in path names (share/, opt/, site-packages/, R library, nix, Cellar)."""
    if not path or "/" not in path:
        return None
    for pattern in (_SHARE, _SITE_PACKAGES, _R_LIBRARY, _NIX, _CELLAR, _TOOL_SHED):
        m = pattern.search(path)
        if m and m.group(1) not in _PY_INTERNAL:
            return m.group(1)
    return None


@lru_cache(maxsize=8192)
def package_from_env(path: str) -> str | None:
    """The conda/mamba environment a path lies in (.../envs/<env>/bin), unless its name is a hash."""
    m = _CONDA_ENV.search(path) if path else None
    if m is None:
        return None
    env = m.group(1)
    galaxy = _GALAXY_ENV.match(env)
    if galaxy:
        return galaxy.group(1)
    return env if not _HASHY.match(env) else None


def is_system_path(path: str) -> bool:
    """True for the base system's directories: a program there is not the image's package."""
    return path.startswith(_SYSTEM_DIRS)


@lru_cache(maxsize=4096)
def packages_from_image(image: str) -> tuple[str, ...]:
    """The packages a container image is built for, in its own order; () for base images and hashes."""
    if not image:
        return ()
    ref = image.strip()
    ref = re.sub(r"^(?:docker|oras|library|shub|https?)://", "", ref)
    name = ref.rsplit("/", 1)[-1]
    m = _GALAXY_FILE.search(name)
    if m:
        return (m.group(1),)
    if name.endswith((".img", ".sif", ".simg")):
        # a cached image file: <registry>-<org>-<pkg>-<ver>.img; take the part before the version
        stem = re.sub(r"\.(?:img|sif|simg)$", "", name)
        m = re.search(r"([a-z][\w+]*(?:-[a-z][\w+]*)*?)[-_]v?\d[\w.]*(?:--\w+)?$", stem)
        return _keep((m.group(1).rsplit("-", 1)[-1],)) if m else ()
    repo = _TAG.sub("", ref)
    parts = repo.split("/")
    last = parts[-1]
    if "community.wave.seqera.io" in repo or "wave.seqera.io" in repo:
        # library/<pkg>_<pkg2>_<pkg3>; pip_<pkg> for PyPI packages
        # runtimes stay in the list (as helpers) so that htslib_python is ambiguous, not htslib
        return tuple(p for p in last.split("_") if p and p not in ("pip", "pruned") and not _HASHY.match(p))
    if _MULLED.match(last):
        return ()
    return _keep((last,))


def _keep(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in names if n.lower() not in _BASE_IMAGES and not _HASHY.match(n))


# runtimes and their packaging tools an env is asked for beside the tool (a mulled env's "python", "r-base")
_RUNTIME_PACKAGES = frozenset(
    [
        "python", "python_abi", "r-base", "r", "perl", "pip", "setuptools", "wheel", "openjdk", "ruby", "nodejs",
        "julia", "conda", "mamba", "conda-libmamba-solver", "libmambapy", "menuinst", "conda-build", "tzdata",
        "ca-certificates", "libgcc-ng", "libstdcxx-ng"
    ]
)


MAX_REQUESTED = 32  # as the collector ships them (conda_ownership.MAX_REQUESTED)
_MAX_PACKAGE_NAME = 128


def sole_requested_package(requested: tuple[str, ...] | list[str]) -> str | None:
    """The only package an env was asked for that is not a runtime or helper; None when none or several.

    A Galaxy mulled env is built from exactly its tool's requirements, so ``python`` + ``galaxy-ml`` names
    galaxy-ml; with two candidates (``lightgbm`` + ``galaxy-ml``) nothing says which one runs.
    """
    if len(requested) > MAX_REQUESTED:
        return None  # not what the collector ships: bounded work for a record from elsewhere
    main = [p for p in dict.fromkeys(requested) if p.lower() not in _RUNTIME_PACKAGES and not is_helper_package(p)]
    return main[0] if len(main) == 1 and 0 < len(main[0]) <= _MAX_PACKAGE_NAME else None


def is_helper_package(name: str) -> bool:
    """Compression, htslib, runtimes, base images: packages that say nothing about the tool on their own."""
    low = name.lower()
    return low in _HELPER_PACKAGES or low in _BASE_IMAGES


def owning_package(program: str, paths: tuple[str, ...], image: str | None,
                   installed: str | None = None) -> str | None:
    """The package of ``program`` (its display name): conda-meta's owner when the collector found one
    (``installed``), else the install layout of its paths, then the image, then the env.

    paths: the program's own path first (script, jar, executable), then the executable; a program
    in the base system's directories (/usr/bin, /bin) is not the image's package.
    With several packages in one image the one named like the program wins, else the only one that is
    not a helper (compression, htslib, runtimes), else none: ``bbduk`` in ``bbmap_pigz`` is bbmap,
    ``samtools`` in ``bwa_samtools`` is samtools.
    """
    if installed:
        return installed  # conda-meta lists the program's file: exact
    paths = tuple(p for p in paths if p)
    for path in paths:
        pkg = package_from_layout(path)
        if pkg is not None:
            return pkg
    if image and not (paths and is_system_path(paths[0])):
        pkgs = packages_from_image(image)
        if pkgs:
            key = name_key(program)
            for pkg in pkgs:
                if name_key(pkg) == key:
                    return pkg
            if len(pkgs) == 1:
                return pkgs[0] if pkgs[0].lower() not in _BASE_IMAGES else None
            main = [p for p in pkgs if p.lower() not in _HELPER_PACKAGES]
            if len(main) == 1:
                return main[0]  # bbduk in bbmap_pigz is bbmap
            # several candidate owners and none named like the program: say nothing rather than guess
    for path in paths:
        pkg = package_from_env(path)
        if pkg is not None:
            return pkg
    return None
