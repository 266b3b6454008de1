"""The benchmark report: IQM and bootstrap intervals, per-task and aggregate tables, learning-curve plots."""

import csv

import numpy as np
import pytest
from scipy import stats

from sb3_ddpg_ext.cli import main
from sb3_ddpg_ext.experiments.report import bootstrap_ci, iqm, normalised, report
from sb3_ddpg_ext.experiments.tasks import TASKS


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 10, 13])
def test_iqm_is_the_25_percent_trimmed_mean(n):
    values = np.random.default_rng(n).normal(size=n)
    assert iqm(values) == pytest.approx(stats.trim_mean(values, 0.25))


def test_bootstrap_interval_holds_the_statistic_is_seeded_and_collapses_without_spread():
    values = np.array([1.0, 2.0, 3.0, 10.0, 4.0])
    low, high = bootstrap_ci(values)
    assert low <= iqm(values) <= high and low >= 1.0 and high <= 10.0
    assert bootstrap_ci(values) == (low, high)
    assert bootstrap_ci(np.full(4, 7.0)) == (7.0, 7.0)


def _write_run(root, env_id, algorithm, seed, returns, step=1000, seconds_per_step=0.01):
    path = root / env_id / algorithm / f"seed{seed}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["timesteps", "seconds", "mean_return", "std_return"])
        for index, value in enumerate(returns, start=1):
            writer.writerow([index * step, index * step * seconds_per_step, value, 0.0])


def test_report_tables_and_plots(tmp_path):
    runs = tmp_path / "runs"
    for seed, last in enumerate([-150.0, -170.0, -400.0]):
        _write_run(runs, "Pendulum-v1", "fast", seed, [-1200.0, -180.0, last])
        _write_run(runs, "Pendulum-v1", "slow", seed, [-1200.0, -900.0, -1000.0 + 100 * seed])
        _write_run(runs, "InvertedPendulum-v5", "fast", seed, [50.0, 1000.0, 1000.0])
    lines = report(runs, plots=tmp_path / "plots", markdown_dir=tmp_path)
    text = "\n".join(lines)
    # fast on Pendulum: final returns -150, -170, -400; two of three seeds reached -200 at step 2000.
    finals = np.array([-150.0, -170.0, -400.0])
    assert f"| fast | 3 | 3000 | {finals.mean():.1f} ± {finals.std(ddof=1):.1f} | {iqm(finals):.1f} [" in text
    assert "| 2000 (3/3) | 20 |" in text  # -180 at step 2000 is above -200 for every seed
    assert "| slow | 3 | 3000 | -900.0 ± 100.0 |" in text and "| - (0/3) | - |" in text
    assert "![Pendulum-v1 learning curves](plots/Pendulum-v1.png)" in text
    for env_id in ("Pendulum-v1", "InvertedPendulum-v5"):
        assert (tmp_path / "plots" / f"{env_id}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Aggregate: only "fast" ran on both tasks.
    assert "Left out (not run on all of these tasks): slow." in text
    pooled = np.concatenate(
        [normalised(finals, TASKS["Pendulum-v1"]), normalised(np.full(3, 1000.0), TASKS["InvertedPendulum-v5"])]
    )
    assert f"| fast | 2 | 6 | {iqm(pooled):.2f} [" in text
    # The curve column: each run's mean over its evaluations, normalised.
    curves = np.concatenate(
        [
            normalised(np.array([np.mean([-1200.0, -180.0, last]) for last in finals]), TASKS["Pendulum-v1"]),
            normalised(np.full(3, np.mean([50.0, 1000.0, 1000.0])), TASKS["InvertedPendulum-v5"]),
        ]
    )
    aggregate_row = next(line for line in lines if line.startswith("| fast | 2 | 6 |"))
    assert aggregate_row.split(" | ")[-1].startswith(f"{iqm(curves):.2f} [")


def test_cli_report_writes_markdown_with_provenance_and_plots(tmp_path, capsys):
    _write_run(tmp_path / "runs", "Pendulum-v1", "fast", 0, [-1200.0, -150.0])
    output = tmp_path / "results" / "grid.md"
    assert main(["benchmark", "--root", str(tmp_path / "runs"), "--report-only", "--output", str(output)]) == 0
    text = output.read_text()
    assert "![Pendulum-v1 learning curves](Pendulum-v1.png)" in text and "- git commit:" in text
    assert (output.parent / "Pendulum-v1.png").is_file()


def test_aggregate_sb3_rows_take_rl_zoo_runs_where_the_task_has_them_and_defaults_elsewhere(tmp_path):
    runs = tmp_path / "runs"
    for seed in range(2):
        _write_run(runs, "Pendulum-v1", "sb3-ddpg", seed, [-1000.0])  # defaults: not used, a zoo run exists
        _write_run(runs, "Pendulum-v1", "sb3-ddpg-zoo", seed, [-200.0])
        _write_run(runs, "InvertedPendulum-v5", "sb3-ddpg", seed, [950.0])
        _write_run(runs, "InvertedPendulum-v5", "sb3-td3", seed, [950.0])  # sb3-td3 has no Pendulum run
    text = "\n".join(report(runs))
    # Both picked runs sit at their task's threshold: normalised score exactly 1.
    assert "| sb3-ddpg (RL Zoo where tuned) | 2 | 4 | 1.00 [1.00, 1.00] |" in text
    assert "sb3-td3 (RL Zoo where tuned)" not in text
    assert "Left out (not run on all of these tasks): sb3-ddpg-zoo, sb3-td3." in text
    assert "| sb3-ddpg | 2 | 4 |" in text  # the defaults ran on both tasks: their own row


def test_provenance_names_the_commit_the_process_imported_not_the_checkouts_head_later(monkeypatch):
    from sb3_ddpg_ext.experiments import provenance

    monkeypatch.setattr(provenance, "git_commit", lambda: "moved-on")  # HEAD after a commit during a long run
    assert provenance.provenance()["git commit"] == provenance.CODE_COMMIT != "moved-on"


def test_report_only_summarises_just_the_envs_and_algorithms_named(tmp_path, capsys):
    for env_id in ("Pendulum-v1", "InvertedPendulum-v5"):
        for algorithm in ("fast", "slow"):
            _write_run(tmp_path / "runs", env_id, algorithm, 0, [-1200.0, -150.0])
    argv = ["benchmark", "--root", str(tmp_path / "runs"), "--report-only", "--envs", "Pendulum-v1", "--algos", "fast"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "## Pendulum-v1" in text and "| fast |" in text
    assert "InvertedPendulum-v5" not in text and "| slow |" not in text


def test_task_tables_give_the_return_at_50k_and_100k_and_seconds_per_thousand_steps(tmp_path):
    for seed, returns in enumerate([[100.0, 900.0], [300.0, 1100.0]]):
        _write_run(tmp_path / "runs", "Hopper-v5", "fast", seed, returns, step=50_000, seconds_per_step=0.02)
    _write_run(tmp_path / "runs", "Hopper-v5", "short", 0, [50.0], step=50_000)
    text = "\n".join(report(tmp_path / "runs", plots=tmp_path / "plots"))
    assert "| return at 50k | return at 100k |" in text
    assert "| fast | 2 | 100000 | 1000.0 ± 141.4 |" in text and "| 200 ± 141 | 1000 ± 141 |" in text
    assert text.count("| 20.0 |") == 1  # 0.02 s per step is 20 s per 1,000
    assert "| short | 1 | 50000 | 50.0 ± 0.0 | 50.0 [50.0, 50.0] | 50 | - |" in text
    assert (tmp_path / "plots" / "Hopper-v5-wallclock.png").is_file() and "by training time" in text


def test_published_figures_of_the_v4_task_stand_beside_ours_with_their_source(tmp_path):
    _write_run(tmp_path / "runs", "Hopper-v5", "fast", 0, [100.0])
    _write_run(tmp_path / "runs", "Pendulum-v1", "fast", 0, [-150.0])
    text = "\n".join(report(tmp_path / "runs"))
    hopper, pendulum = text.split("## Pendulum-v1")
    assert "Published, Hopper-v4" in hopper and "Published" not in pendulum
    sac = next(line for line in hopper.splitlines() if line.startswith("| SAC | 10 |"))
    assert "dojeon-ai/SimbaV2@" in sac and "results/baseline/sac.csv" in sac
    mrq = next(line for line in hopper.splitlines() if line.startswith("| MR.Q | 10 |"))
    assert "facebookresearch/MRQ@" in mrq
