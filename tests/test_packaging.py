"""One installed namespace: services/<name>/, schemas/ and deploy/ are execsight.<name>, execsight.schemas and
execsight.deploy, in the wheel (pyproject's package-dir) and in the repository (execsight/<name> symlinks)."""

from __future__ import annotations

import ast
import os
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD_TOP = {"services", "schemas", "deploy"}


def _mapped() -> dict[str, str]:
    """Installed package -> repository folder, for every folder outside execsight/."""
    svcs = sorted(d.name for d in (REPO / "services").iterdir() if (d / "__init__.py").is_file())
    return {f"execsight.{s}": f"services/{s}" for s in svcs} | {"execsight.schemas": "schemas",
                                                                 "execsight.deploy": "deploy"}


def test_every_service_folder_is_mapped_and_linked() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"]["include"] == ["execsight*"]
    package_dir = config["package-dir"]
    for package, folder in _mapped().items():
        assert package_dir.get(package) == folder, f"pyproject package-dir: {package} = {folder!r} missing"
        link = REPO / "execsight" / package.split(".", 1)[1]
        assert link.is_symlink() and os.readlink(link) == f"../{folder}", f"{link} must link to ../{folder}"
    assert not (REPO / "services" / "__init__.py").exists(), "services/ is a folder of packages, not a package"


def _python_files() -> list[Path]:
    skip = {".git", ".venv", ".state", "build", "fixtures", "__pycache__", "node_modules"}
    files = []
    for top, dirs, names in os.walk(REPO):  # symlinked folders (execsight/<name>) are not followed: seen once
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        files += [Path(top, n) for n in names if n.endswith(".py")]
    return files


def test_nothing_imports_the_old_top_level_names() -> None:
    old = []
    for path in _python_files():
        rel = path.relative_to(REPO)
        for node in ast.walk(ast.parse(path.read_text(), str(rel))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            old += [f"{rel}:{node.lineno}: {n}" for n in names if n.split(".")[0] in OLD_TOP]
    assert len(_python_files()) > 200
    assert not old, "import the execsight.* names: " + ", ".join(old)
