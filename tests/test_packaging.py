"""The wheel installs the library only, and the apps run from a clone (slow tier: builds a wheel).

Decision (see pyproject.toml and dlnjax/cli.py): ``pip install .`` installs ``dlnjax`` with its
package data (the embedded digits and their README, the native kernels' C++ source) and a
``dlnjax`` console script, and nothing else: no top-level ``experiments`` or ``benchmarks``
package, whose generic names would collide with other projects' in site-packages. The apps
(``experiments``), their Hydra configs (``configs/``) and the benchmarks run from a clone:
``python -m experiments.<app>`` in its root, as the README runs them. Outside a clone,
``python -m experiments.depth_sweep`` fails with Python's own "No module named 'experiments'"
(doing better would need a package of that very name installed); the ``dlnjax`` console script
says where the apps are and how to run them.

The wheel is built from a copy of the sources (nothing is written into the clone), without build
isolation where the running interpreter has a recent enough setuptools and ``bdist_wheel``, else
with pip's isolated build (which fetches setuptools from the package index). It is installed with
``--no-deps`` into a fresh virtual environment that sees the running interpreter's packages (JAX
and the rest are not fetched again): ``--system-site-packages`` covers an interpreter that is not
itself a virtual environment, and a ``.pth`` file adds the running environment's site-packages
(plain directories: the editable install's import hook there is not run).
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# what the wheel is built from: everything else in the clone is not packaged
SOURCES = ["pyproject.toml", "README.md", "dlnjax"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "HYDRA_FULL_ERROR")}
    env["JAX_PLATFORMS"] = "cpu"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd, cwd, timeout=600):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _can_build_without_isolation() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    version = tuple(int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])
    if version < (68, 0):  # pyproject.toml's build requirement
        return False
    try:
        import wheel  # noqa: F401 - bdist_wheel before setuptools 70.1
    except ImportError:
        return version >= (70, 1)
    return True


def _build_wheel(src: Path, dist: Path) -> Path:
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist]
    if _can_build_without_isolation():
        r = _run([*base, "--no-build-isolation", src], cwd=src)
    else:
        r = _run([*base, src], cwd=src)
        if r.returncode != 0 and re.search(r"No matching distribution found for (setuptools|wheel)|NewConnectionError|"
                                           r"Network is unreachable|Temporary failure in name resolution", r.stdout + r.stderr):
            pytest.skip("no build backend: setuptools>=68 with bdist_wheel is not installed here and the package index "
                        "cannot be reached for an isolated build")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    wheels = list(dist.glob("dlnjax-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv holding the installed wheel, its site-packages, its bin directory)."""
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / name)
    wheel = _build_wheel(src, tmp / "dist")

    venv = tmp / "venv"
    r = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], cwd=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp).stdout.strip())
    assert purelib.is_dir() and str(purelib).startswith(str(venv)), purelib
    # the running environment's packages (JAX, Hydra, pip, ...), after the venv's own
    parents = [p for p in [*site.getsitepackages(), sysconfig.get_path("purelib")] if Path(p).is_dir()]
    (purelib / "_dlnjax_test_parent_env.pth").write_text("".join(f"{p}\n" for p in dict.fromkeys(parents)))
    # --ignore-installed: never touch (uninstall) the running environment's own dlnjax
    r = _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", wheel], cwd=tmp)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return python, purelib, bindir


def test_site_packages_holds_the_library_only(installed):
    _, purelib, _ = installed
    for name in ("experiments", "benchmarks", "configs"):
        assert not (purelib / name).exists() and not (purelib / f"{name}.py").exists(), name
    (info,) = purelib.glob("dlnjax-*.dist-info")
    record = (info / "RECORD").read_text()
    tops = {line.split("/", 1)[0].split(",", 1)[0] for line in record.splitlines() if line}
    assert {t for t in tops if not t.endswith(".dist-info") and t != ".."} == {"dlnjax"}, tops
    # the package data ships
    embedded = purelib / "dlnjax" / "data" / "embedded"
    assert sorted(p.name for p in embedded.glob("*.gz")) == sorted(
        p.name for p in (ROOT / "dlnjax" / "data" / "embedded").glob("*.gz"))
    assert len(list(embedded.glob("*.gz"))) == 4
    assert (embedded / "README.md").is_file()
    native = purelib / "dlnjax" / "networks" / "kernels" / "native"
    assert (native / "linear_step.cc").is_file() and (native / "compressed_run.cc").is_file()


def test_installed_library_finds_its_embedded_digits_outside_the_clone(installed, tmp_path):
    python, purelib, _ = installed
    script = (
        "import dlnjax\n"
        "from dlnjax.data.digits import load_digits\n"
        "print(dlnjax.__file__)\n"
        "d = load_digits('embedded')\n"
        "assert d.x.shape == (8000, 784) and d.x_test.shape == (2000, 784), (d.x.shape, d.x_test.shape)\n"
        "print(sorted(d.info['files'].values())[0])\n"
    )
    r = _run([python, "-c", script], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    module, first_file = r.stdout.strip().splitlines()[-2:]
    assert Path(module).resolve().is_relative_to(purelib.resolve()), module
    assert Path(first_file).resolve().is_relative_to(purelib.resolve()), first_file


def test_app_runs_from_the_clone_root_with_the_installed_package(installed, tmp_path):
    python, _, _ = installed
    out = tmp_path / "run"
    r = _run([python, "-m", "experiments.depth_sweep", "experiment=debug", f"hydra.run.dir={out}"], cwd=ROOT)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert (out / "summary.json").is_file()


def test_outside_a_clone_the_apps_are_not_found_and_dlnjax_says_where_they_are(installed, tmp_path):
    python, _, bindir = installed
    r = _run([python, "-m", "experiments.depth_sweep"], cwd=tmp_path)
    assert r.returncode != 0
    assert "No module named 'experiments'" in r.stderr, r.stderr[-2000:]
    # the console script: where the apps are, and how to run them
    dlnjax = bindir / ("dlnjax.exe" if os.name == "nt" else "dlnjax")
    assert dlnjax.is_file()
    r = _run([dlnjax], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "run them from a" in r.stdout and "clone of the repository" in r.stdout, r.stdout
    assert "python -m experiments.<app>" in r.stdout
    r = _run([dlnjax, "depth_sweep", "experiment=debug"], cwd=tmp_path)
    assert r.returncode == 2
    assert "clone of the repository" in r.stderr and "python -m experiments.depth_sweep" in r.stderr, r.stderr
    assert "no clone found here" in r.stderr
    # in a clone's root it names the clone
    r = _run([dlnjax, "depth_sweep"], cwd=ROOT)
    assert r.returncode == 2 and f"cd {ROOT} && python -m experiments.depth_sweep" in r.stderr, r.stderr
