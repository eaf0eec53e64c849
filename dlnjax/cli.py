"""The ``dlnjax`` console script: says where the experiment apps are and how to run them.

Only the library (``dlnjax``, with its embedded digits and the native kernels' source) is
installed by ``pip install .``; the apps (``experiments``), their Hydra configs (``configs/``)
and the benchmarks (``benchmarks``) are not, because top-level packages with such generic
names would collide with other projects' in site-packages. They run from a clone of the
repository, in its root::

    cd dlnjax-clone && python -m experiments.depth_sweep experiment=debug

Outside a clone, ``python -m experiments.depth_sweep`` fails with Python's own
"No module named 'experiments'" (a package of that name is exactly what is not installed);
``dlnjax`` (this script) prints the explanation instead, with the clone's path when it can
find one (the current directory, or the checkout an editable install points at). It never
runs an app itself. Exit status 0 for ``dlnjax`` and ``dlnjax --help``, 2 when given an app
name or anything else (nothing was run).
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["find_clone", "main", "message"]


def _is_clone(path: Path) -> bool:
    return (path / "experiments" / "common.py").is_file() and (path / "configs").is_dir()


def find_clone() -> Path | None:
    """The root of a clone: the current directory, or the one holding the imported package."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if _is_clone(candidate):
            return candidate
    return None


def message(app: str | None = None) -> str:
    from dlnjax import __version__

    clone = find_clone()
    command = f"python -m experiments.{app or '<app>'} [overrides]"
    lines = [
        f"dlnjax {__version__}: library at {Path(__file__).resolve().parent}",
        "The experiment apps and the benchmarks are not installed with the package: run them from a",
        "clone of the repository, in its root (the README lists the apps):",
    ]
    if clone is not None:
        lines += [f"    cd {clone} && {command}"]
    else:
        lines += ["    git clone <repository> && cd <clone> && pip install -e . && " + command,
                  "(no clone found here: not the current directory, nor where dlnjax is imported from)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(message())
        return 0
    app = args[0] if args[0].isidentifier() else None
    print(f"error: dlnjax does not run apps itself.\n{message(app)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
