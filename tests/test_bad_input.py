"""Bad input, table-driven, through the command line: one line naming the key, the value and
what is allowed, a non-zero exit, no traceback, and nothing already written lost.

Every case runs in this process (``helpers.run_cli``: the same Hydra command line, composition,
validation and error handling as ``python -m``, without a new interpreter and JAX import per
case). In a new interpreter (``python -m experiments.<app>``) every case runs in the slow tier,
and in the main tier one case per kind of error: Hydra's composition, the schema's range check,
the data loader, the environment check.
"""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlnjax.data.idx import write_idx
from helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]

CASES = [
    # (id, app, overrides, fragments every one of which the error line must hold)
    ("zero rate", "depth_sweep", ["learning_rates.min=0"], ["learning_rates.min=0", "allowed: a number > 0"]),
    ("negative rate", "mode_dynamics", ["lr=-0.5"], ["lr=-0.5", "allowed: a number > 0"]),
    ("depth < 2", "lr_sweep", ["depth=1"], ["depth=1", "allowed: an integer >= 2"]),
    ("zero width", "depth_sweep", ["hidden=0"], ["hidden=0", "allowed: an integer >= 1"]),
    ("widths that do not fit the data", "mode_dynamics", ["data=teacher", "data.n_in=2", "data.singular_values=[3,2,1]"],
     ["data.singular_values=[3.0, 2.0, 1.0]", "at most min(n_in, n_out) = 2"]),
    ("unknown dataset", "depth_sweep", ["data=cifar"], ["Could not find 'data/cifar'", "embedded", "mnist"]),
    ("unknown init", "init_comparison", ["inits=[xavier]"], ["inits[0]", "'xavier'", "expected one of [decoupled, scaled_gaussian, orthogonal, pretrained, small_gaussian]"]),
    ("unknown experiment", "depth_sweep", ["experiment=huge"], ["Could not find 'experiment/huge'", "debug, paper"]),
    ("unknown preprocessing", "depth_sweep", ["data.preprocessing=blur"], ["data.preprocessing", "'blur'", "expected one of [raw, centred, whitened]"]),
    ("unknown key", "depth_sweep", ["hiden=3"], ["hiden", "not in"]),
    # a key added with + is force-added by Hydra: the schema check refuses it, naming the closest key
    ("misspelt key added with +", "depth_sweep", ["+stats.gradient_flw=true"],
     ["stats.gradient_flw is not a key", "closest declared key: stats.gradient_flow"]),
    ("misspelt data key added with +", "lr_sweep", ["+data.preprocesing=centred"],
     ["data.preprocesing is not a key", "closest declared key: data.preprocessing"]),
    ("non-numeric value", "depth_sweep", ["u0=abc"], ["u0", "'abc'", "could not be converted to Float"]),
    ("empty sweep list", "depth_sweep", ["depths=[]"], ["depths=[]", "allowed: a non-empty list"]),
    ("empty rate list", "depth_sweep", ["learning_rates.values=[]"], ["learning_rates.values=[]", "allowed"]),
    ("bad override syntax", "depth_sweep", ["depths=[3"], ["invalid override"]),
    ("missing data root", "depth_sweep", ["data=mnist", "data.root=NOWHERE"], ["missing train-images-idx3-ubyte[.gz]", "NOWHERE", "data.download=true"]),
    ("corrupt IDX file", "depth_sweep", ["data=mnist", "data.root=CORRUPT"], ["train-images-idx3-ubyte", "magic"]),
    ("truncated IDX file", "depth_sweep", ["data=mnist", "data.root=TRUNCATED"], ["train-images-idx3-ubyte", "truncated"]),
    ("failed download", "depth_sweep", ["data=mnist", "data.root=EMPTY", "data.download=true"], ["could not download train-images-idx3-ubyte.gz", "Put the file in"]),
    ("checksum mismatch", "depth_sweep", ["data=mnist", "data.root=EMPTY2", "data.download=true"], ["checksum mismatch", "expected"]),
    # environment variables (ENV:NAME=VALUE) are checked before any work, like the config
    ("unknown engine", "lr_sweep", ["ENV:DLNJAX_ENGINE=fast"], ["DLNJAX_ENGINE must be one of auto, xla, native, pallas", "'fast'"]),
    ("GPU engine on a CPU", "lr_sweep", ["ENV:DLNJAX_ENGINE=pallas"], ["DLNJAX_ENGINE=pallas needs a CUDA GPU", "DLNJAX_PALLAS_INTERPRET=1"]),
]


def _digits(folder: Path, images: bytes | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, (n,), dtype=np.uint8))
    if images is not None:
        (folder / "train-images-idx3-ubyte").write_bytes(images)


def _place(override: str, places: dict) -> str:
    """Replace a placeholder (NOWHERE, CORRUPT, ...) by its folder, longest name first."""
    for k in sorted(places, key=len, reverse=True):
        if k in override:
            return override.replace(k, str(places[k]))
    return override


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    good = base / "good"
    _digits(good)
    raw = (good / "train-images-idx3-ubyte").read_bytes()
    _digits(base / "corrupt", b"\x12\x34\x08\x03" + raw[4:])  # wrong magic number
    _digits(base / "truncated", raw[: len(raw) // 2])
    mirror = base / "mirror"  # a file:// mirror whose files have the wrong content
    mirror.mkdir()
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (mirror / f"{f}.gz").write_bytes(gzip.compress((good / f).read_bytes()))
    return dict(NOWHERE=base / "nowhere", CORRUPT=base / "corrupt", TRUNCATED=base / "truncated",
                EMPTY=base / "empty", EMPTY2=base / "empty2", MIRROR=mirror, NOMIRROR=base / "no-such-mirror")


# the cases also run in a new interpreter in the main tier (one per kind of error)
SUBPROCESS_MAIN = {"unknown key", "zero rate", "missing data root", "unknown engine"}
PARAMS = [pytest.param(c, "in-process", id=f"{c[0]}-in-process") for c in CASES] + [
    pytest.param(c, "subprocess", id=f"{c[0]}-subprocess", marks=() if c[0] in SUBPROCESS_MAIN else pytest.mark.slow)
    for c in CASES]


@pytest.mark.parametrize("case,how", PARAMS)
def test_bad_input_gives_one_clear_line_and_keeps_earlier_results(case, how, places, tmp_path):
    name, app, overrides, fragments = case
    out = tmp_path / "run"
    out.mkdir()
    earlier = out / "summary.json"
    earlier.write_text('{"earlier": true}\n')  # results of an earlier run in the same directory
    extra_env = dict(o[4:].split("=", 1) for o in overrides if o.startswith("ENV:"))
    overrides = [_place(o, places) for o in overrides if not o.startswith("ENV:")]
    preset = [] if any(o.startswith("experiment=") for o in overrides) else ["experiment=debug"]
    mirrors = (places["MIRROR"] if name == "checksum mismatch" else places["NOMIRROR"]).as_uri()
    args = [*preset, *overrides, f"hydra.run.dir={out}"]
    if how == "in-process":
        r = run_cli(f"experiments.{app}", *args, check=False,
                    env={"DLNJAX_MIRRORS": mirrors, "HYDRA_FULL_ERROR": None, "DLNJAX_ENGINE": None,
                         "DLNJAX_PALLAS_INTERPRET": None, **extra_env})
    else:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "DLNJAX_MIRRORS": mirrors}
        env.pop("HYDRA_FULL_ERROR", None)
        for k in ("DLNJAX_ENGINE", "DLNJAX_PALLAS_INTERPRET"):
            env.pop(k, None)
        env.update(extra_env)
        r = subprocess.run([sys.executable, "-m", f"experiments.{app}", *args], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr[-2000:]
    for frag in fragments:
        assert frag.replace("NOWHERE", str(places["NOWHERE"])) in lines[0], (frag, lines[0])
    assert earlier.read_text() == '{"earlier": true}\n'
    assert not list(out.glob(".*.tmp"))
