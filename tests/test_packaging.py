"""The distribution installs one namespace, ``duet``, and everything in it imports from the installed copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {
    ".git",
    ".venv",
    ".duet",
    "build",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the source tree (the build leaves the checkout untouched)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copytree(
        REPO,
        src,
        dirs_exist_ok=True,
        ignore=lambda d, names: [n for n in names if n in SKIP_DIRS or n.endswith(".egg-info")],
    )
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("duet-*.whl")
    return built


def test_only_the_duet_namespace_is_installed(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"duet"}
    for generic in ("routing", "edge", "services", "tests"):
        assert not any(n.startswith(generic + "/") for n in names)
    # Package data travels with it.
    assert "duet/routing/data/regions.json" in names
    assert any(n.startswith("duet/services/store/migrations/") and n.endswith(".sql") for n in names)
    for page in ("index.html", "app.js", "style.css"):
        assert f"duet/services/web/static/{page}" in names


def test_every_module_imports_from_the_installed_copy(wheel: Path, tmp_path: Path) -> None:
    """Run from outside the checkout, so nothing resolves through the repository's folders."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    modules = sorted(
        str(p.relative_to(site).with_suffix("")).replace(os.sep, ".").removesuffix(".__init__")
        for p in (site / "duet").rglob("*.py")
        if p.name != "__main__.py"
    )
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    mod = importlib.import_module(name)\n"
        f"    assert mod.__file__.startswith({str(site)!r}), (name, mod.__file__)\n"
        "for generic in ('routing', 'edge', 'services'):\n"
        "    try:\n"
        "        importlib.import_module(generic)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    sys.exit(f'a top-level module named {generic!r} is importable')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(modules) > 40
