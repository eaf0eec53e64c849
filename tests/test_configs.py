"""Every config composes; bad configs fail at composition or validation with a clear message."""

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigAttributeError, ValidationError

from experiments import APPS, CONFIGS
from experiments.schemas import ConfigError, compose, validate

APP_NAMES = [a for a in APPS if a != "reproduce"]
_compose = compose


@pytest.mark.parametrize("app", APP_NAMES)
@pytest.mark.parametrize("experiment", [None, "debug", "paper"])
def test_every_config_composes_and_validates(app, experiment):
    cfg = _compose(app, [] if experiment is None else [f"experiment={experiment}"])
    validate(app, cfg)
    # the engine is a key of every app's resolved config (so it lands in .hydra/config.yaml), and
    # it names an engine the registry resolves (its values are generated from dlnjax.networks.engines.ENGINES)
    from dlnjax.networks import engines

    assert engines.resolve(cfg.engine.value) in engines.ENGINES


def test_the_config_tree_matches_the_app_registry():
    """One folder per app with real overlays; the hydra block lives once, in configs/shared."""
    on_disk = {p.name for p in CONFIGS.iterdir() if p.is_dir() and p.name != "shared"}
    assert on_disk == set(APPS)
    for app in APP_NAMES:
        assert {p.name for p in (CONFIGS / app / "experiment").glob("*.yaml")} >= {"debug.yaml", "paper.yaml"}, app
        for p in (CONFIGS / app / "experiment").glob("*.yaml"):
            assert p.read_text().startswith("# @package _global_"), p
    for app in APPS:
        text = (CONFIGS / app / "config.yaml").read_text()
        assert "sweep:" not in text and "- hydra: default" in text, app


def test_experiment_overlays_switch_the_data_source_and_the_command_line_wins():
    assert _compose("depth_sweep", ["experiment=paper"]).data.name.value == "mnist"
    assert _compose("depth_sweep", ["experiment=paper", "data=fashion_mnist"]).data.name.value == "fashion_mnist"
    # each source has its own schema: a field of another source is an unknown key
    with pytest.raises(ConfigCompositionException):
        _compose("depth_sweep", ["data.levels=3"])
    assert _compose("depth_sweep", ["data=teacher"]).data.singular_values[0] == 8.0


def test_multirun_directory_is_named_after_the_app():
    from hydra import initialize_config_dir
    from hydra import compose as hydra_compose

    with initialize_config_dir(config_dir=str(CONFIGS / "lr_sweep"), version_base=None):
        cfg = hydra_compose(config_name="config", return_hydra_config=True)
    assert cfg.hydra.job.name == "lr_sweep"
    assert cfg.hydra.sweep.dir == "multirun/lr_sweep"


def test_paper_presets_carry_the_papers_protocol():
    cfg = _compose("depth_sweep", ["experiment=paper"])
    assert cfg.data.name.value == "mnist" and cfg.hidden == 1000 and cfg.u0 == 0.001
    assert min(cfg.depths) == 3 and max(cfg.depths) == 100
    assert (cfg.learning_rates["min"], cfg.learning_rates["max"], cfg.learning_rates.num) == (1e-7, 1e-4, 20)
    assert cfg.threshold.kind.value == "absolute" and cfg.threshold.value == 1.3e4
    md = _compose("mode_dynamics", ["experiment=paper"])
    assert (md.lr, md.hidden, md.u0, md.n_init) == (0.5e-3, 32, 1e-6, 100)
    assert list(md.modes) == [1, 2, 3, 5, 12, 18, 31]


@pytest.mark.parametrize(
    "app,override,fragment,cause",
    [
        # a missing config group option: Hydra's MissingConfigException, raised directly
        ("depth_sweep", "data=nosuch", "Could not find 'data/nosuch'", None),
        ("depth_sweep", "experiment=nosuch", "Could not find 'experiment/nosuch'", None),
        # a bad value or an unknown key: OmegaConf's error, wrapped by Hydra
        ("depth_sweep", "data.preprocessing=blur", "expected one of [raw, centred, whitened]", ValidationError),
        ("depth_sweep", "hidden=many", "hidden", ValidationError),
        ("depth_sweep", "u0=abc", "u0", ValidationError),
        ("mode_dynamics", "lrr=0.1", "lrr", ConfigAttributeError),
        ("depth_sweep", "threshold.kind=median", "expected one of [relative, absolute]", ValidationError),
        ("depth_sweep", "precision=float16", "expected one of [float32, float64]", ValidationError),
        ("init_comparison", "inits=[orthogonal,xavier]", "expected one of [decoupled, scaled_gaussian, orthogonal, pretrained, small_gaussian]", ValidationError),
    ],
)
def test_bad_values_fail_at_composition(app, override, fragment, cause):
    expected = MissingConfigException if cause is None else ConfigCompositionException
    with pytest.raises(expected) as e:
        _compose(app, [override])
    if cause is None:
        assert e.value.__cause__ is None
    else:
        assert isinstance(e.value.__cause__, cause), repr(e.value.__cause__)
    text = str(e.value) + str(getattr(e.value, "__cause__", ""))
    assert fragment in text


@pytest.mark.parametrize(
    "app,override,key",
    [
        ("mode_dynamics", "lr=0", "lr"),
        ("mode_dynamics", "lr=-0.1", "lr"),
        ("depth_sweep", "depths=[1,3]", "depths"),
        ("depth_sweep", "depths=[]", "depths"),
        ("lr_sweep", "depth=1", "depth"),
        ("depth_sweep", "learning_rates.min=-1", "learning_rates.min"),
        ("depth_sweep", "learning_rates.values=[]", "learning_rates.values"),
        ("depth_sweep", "threshold.eps=1.5", "threshold.eps"),
        ("depth_sweep", "chunk_steps=15", "chunk_steps"),
        ("mode_dynamics", "modes=[0]", "modes"),
        ("mode_dynamics", "data.flip_prob=2", "data.flip_prob"),
        ("depth_sweep", "data.n_train=0", "data.n_train"),
        ("depth_sweep", "u0=0", "u0"),
        ("pretraining", "depth=2", "depth"),
        ("pretraining", "pretrain.lr_scale=3", "pretrain.lr_scale"),
        ("pretraining", "pretrain.steps=0", "pretrain.steps"),
        ("pretraining", "init_std=0", "init_std"),
        ("init_comparison", "inits=[]", "inits"),
        ("init_comparison", "depths=[2,4]", "depths"),
        ("init_comparison", "gain=-1", "gain"),
    ],
)
def test_out_of_range_values_fail_validation(app, override, key):
    cfg = _compose(app, [override])
    with pytest.raises(ConfigError) as e:
        validate(app, cfg)
    msg = str(e.value)
    assert f"{key}=" in msg and "allowed" in msg and "\n" not in msg


def test_fig5_and_fig6a_paper_presets():
    pt = _compose("pretraining", ["experiment=paper"])
    assert pt.depth == 5 and pt.init_std == 0.01 and pt.data.name.value == "mnist"
    ic = _compose("init_comparison", ["experiment=paper"])
    assert ic.hidden == 1000 and min(ic.depths) == 3 and max(ic.depths) == 100
    assert {k.value for k in ic.inits} == {"scaled_gaussian", "pretrained", "orthogonal", "decoupled"}
