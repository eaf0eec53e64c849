"""Fixtures and test-wide settings; tolerances and the NumPy oracles are in tests/helpers.py."""

import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# The apps (experiments) and the benchmarks are not installed with the package (only dlnjax is):
# they are imported from the clone, also under a bare `pytest` (which, unlike `python -m pytest`,
# does not put the current directory on sys.path).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# One persistent XLA compilation cache for the test run: both tiers of .ci/run and every app a
# test starts in a new interpreter (they inherit the variables) compile each program once. It is
# keyed by the program and the compiler's flags and version, so a cached executable is the one a
# fresh compile would give: the same numbers. Set JAX_COMPILATION_CACHE_DIR to move it ('' disables).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

import jax  # noqa: E402
import pytest  # noqa: E402

# Theory checks run in float64; tests that exercise float32 pass dtypes explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory):
    """``debug_run(app)``: the folder of one ``python -m experiments.<app> experiment=debug`` run,
    made in this process the first time a test asks for it and shared by every test after
    (test_experiments, test_aggregate, test_reproduce, test_resume read its files; none may
    change them)."""
    from helpers import run_cli

    done = {}

    def get(app: str) -> Path:
        if app not in done:
            out = tmp_path_factory.mktemp(f"debug-{app}") / "run"
            run_cli(f"experiments.{app}", "experiment=debug", f"hydra.run.dir={out}")
            done[app] = out
        return done[app]

    return get


# The main tier (the README's `python -m pytest`) must run in at most 10 min on 2 cores. These
# tests were its slowest (8.9-65 s each, 12.5 min of its 20 min, measured with --durations on 2
# cores): they run in the slow tier (`python -m pytest -m slow`, which .ci/run also runs), with
# every test module that shares their session fixtures (test_devices' four-device interpreter).
SLOW_MODULES = {"test_devices.py"}
SLOW_TESTS = {
    "tests/test_aggregate.py::test_aggregate_of_a_depth_sweep_split_into_jobs_equals_one_job",
    "tests/test_balanced_app.py::test_debug_run_summary",
    "tests/test_benchmarks.py::test_benchmark_runs_tiny[fig3-fig3_tiny.json-in-process]",
    "tests/test_benchmarks.py::test_benchmark_runs_tiny[linear_step-linear_step_tiny.json-in-process]",
    "tests/test_benchmarks.py::test_benchmark_runs_tiny[scaling-scaling_tiny.json-in-process]",
    "tests/test_chaos.py::test_fixed_point_zero_below_and_positive_above_edge",
    "tests/test_chaos.py::test_simulated_variance_converges_to_theory_with_width",
    "tests/test_compressed.py::test_sharpness_equals_the_dense_hessian",
    "tests/test_compressed_flow.py::test_compressed_flow_is_the_full_width_flow[3]",
    "tests/test_compressed_flow.py::test_compressed_flow_is_the_full_width_flow[5]",
    "tests/test_compressed_flow.py::test_fig4_flow_t_ct_is_the_compressed_flow",
    "tests/test_compressed_flow.py::test_small_rate_crossing_time_converges_to_t_ct_at_first_order",
    "tests/test_compressed_flow.py::test_whitened_t_ct_is_eq15_exact[3]",
    "tests/test_compressed_flow.py::test_whitened_t_ct_is_eq15_exact[6]",
    "tests/test_devices.py::test_every_apps_batch_sharded_over_four_devices_equals_one_device[mode_dynamics]",
    "tests/test_devices.py::test_sharded_sweep_equals_one_device",
    "tests/test_experiments.py::test_experiment_runs_end_to_end[deep_tanh]",
    "tests/test_experiments.py::test_experiment_runs_end_to_end[edge_of_chaos]",
    "tests/test_experiments.py::test_experiment_runs_end_to_end[init_comparison]",
    "tests/test_experiments.py::test_experiment_runs_end_to_end[mode_dynamics]",
    "tests/test_experiments.py::test_experiment_runs_end_to_end[pretraining]",
    "tests/test_experiments.py::test_experiment_runs_end_to_end[random_products]",
    "tests/test_experiments.py::test_full_width_is_recorded",
    "tests/test_gradient_flow.py::test_two_mode_learning_time_and_trajectory[4]",
    "tests/test_launchers.py::test_cluster_launchers_run_jobs_for_real[joblib]",
    "tests/test_launchers.py::test_cluster_launchers_run_jobs_for_real[submitit_local]",
    "tests/test_linear.py::test_decoupled_start_follows_theory_error_linear_in_lr[10]",
    "tests/test_linear.py::test_decoupled_start_follows_theory_error_linear_in_lr[4]",
    "tests/test_linear.py::test_decoupled_start_follows_theory_error_linear_in_lr[6]",
    "tests/test_linear.py::test_vmap_equals_loop_and_same_seed_same_numbers",
    "tests/test_native.py::test_fused_passes_equal_the_xla_factors[float32-37x33x19x10]",
    "tests/test_native.py::test_native_batch_sharded_over_four_devices_equals_one_device",
    "tests/test_reduced.py::test_vmap_over_inits_equals_loop",
    "tests/test_reproduce.py::test_reproduce_runs_experiments_and_writes_the_report",
    "tests/test_reproduce.py::test_same_command_twice_gives_identical_files",
    "tests/test_resume.py::test_a_changed_config_does_not_resume",
    "tests/test_resume.py::test_init_comparison_resumes_from_its_finished_depths",
    "tests/test_resume.py::test_killed_depth_sweep_resumes_from_its_finished_runs",
    "tests/test_resume.py::test_rerunning_a_sweep_skips_complete_jobs",
    "tests/test_theory.py::test_optimal_rate_is_inverse_top_hessian_eigenvalue",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid in SLOW_TESTS or item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
