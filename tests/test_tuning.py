"""Optuna tuning end to end: studies, shared storages, killed workers, failures, reports and replays."""

import csv
import os
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import optuna
import pytest
import yaml

from sb3_ddpg_ext.cli import main
from sb3_ddpg_ext.experiments.config import load_entry
from sb3_ddpg_ext.experiments.storage import make_storage
from sb3_ddpg_ext.experiments.train import build_model
from sb3_ddpg_ext.experiments.tuning import ENTRY_ATTR, FAILURE_ATTR, TuningSettings, replay_entry, tune
from sb3_ddpg_ext.experiments.tuning_report import tune_and_report

# Tiny trials: small networks and buffers, a few hundred steps; everything else stays in the search space.
TINY_SPACE = {
    "net_arch": "small",
    "buffer_size": 2_000,
    "learning_starts": 100,
    "batch_size": [32, 64],
    # TD7 and SimBa parts at their cheapest: the tests are about the tuning, not the agents.
    "network": "mlp",
    "sale": False,
    "policy_checkpoints": False,
}
POSTGRES_URL = os.environ.get("SB3_DDPG_EXT_TEST_POSTGRES_URL")
State = optuna.trial.TrialState


def _settings(tmp_path, **overrides):
    arguments = dict(
        env_id="Pendulum-v1",
        n_trials=2,
        n_timesteps=300,
        n_evaluations=2,
        n_eval_episodes=1,
        storage=str(tmp_path / "study.journal"),
        search_space=TINY_SPACE,
        n_startup_trials=1,
        heartbeat_interval=1,
    )
    return TuningSettings(**{**arguments, **overrides})


def test_cli_runs_a_two_trial_study_and_writes_entry_csv_and_plots(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yml").write_text(yaml.safe_dump(TINY_SPACE))
    arguments = ["tune", "--n-trials", "2", "--timesteps", "300", "--n-evaluations", "2", "--n-eval-episodes", "1"]
    arguments += ["--pruner", "none"]  # both trials complete (pruning is tested below)
    assert main([*arguments, "--search-space", "space.yml", "--n-startup-trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "best trial #" in out
    output = tmp_path / "logs" / "tuning" / "ddpg_ext-Pendulum-v1.yml"
    assert output.read_text().startswith("# sb3-ddpg-ext tuning result for study 'ddpg_ext-Pendulum-v1'")
    assert "# budget: trials of 300 steps (2 complete), 2 evaluations of 1 episodes each" in output.read_text()
    config = load_entry("Pendulum-v1", output)
    assert config.n_timesteps == 300 and config.model_kwargs["batch_size"] in (32, 64)
    build_model(config, seed=0)
    with (tmp_path / "logs" / "tuning" / "ddpg_ext-Pendulum-v1_trials.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [row["state"] for row in rows] == ["COMPLETE", "COMPLETE"] and all(float(row["value"]) < 0 for row in rows)
    for plot in ("history", "importances", "parallel_coordinate"):
        assert (tmp_path / "logs" / "tuning" / f"ddpg_ext-Pendulum-v1_{plot}.html").stat().st_size > 1000
    # Re-running the finished command resumes the study: nothing left to do, the trials are kept.
    assert main([*arguments, "--search-space", "space.yml", "--n-startup-trials", "1"]) == 0
    assert "2 trials (2 COMPLETE)" in capsys.readouterr().out


def test_stored_trials_replay_to_the_same_entry_and_last_evaluation(tmp_path):
    study = tune(_settings(tmp_path, n_trials=3, pruner="none"))
    for trial in study.trials:
        assert replay_entry(trial, 300) == trial.user_attrs[ENTRY_ATTR]
        assert trial.value == trial.intermediate_values[300]


def _check_shared_study(study, n_trials, n_jobs):
    trials = study.get_trials()
    assert sorted(trial.number for trial in trials) == list(range(len(trials)))
    assert n_trials <= len(trials) <= n_trials + n_jobs - 1
    assert all(trial.state in (State.COMPLETE, State.PRUNED) for trial in trials)
    # Trials are seeded by their number: workers started with the same seed did not draw the same configurations.
    assert len({trial.params["learning_rate"] for trial in trials}) == len(trials)


def test_two_worker_processes_share_one_journal_study(tmp_path):
    study = tune(_settings(tmp_path, n_trials=4, n_jobs=2, sampler="random"))
    _check_shared_study(study, n_trials=4, n_jobs=2)


@pytest.mark.skipif(POSTGRES_URL is None and not os.environ.get("CI"), reason="no PostgreSQL server (CI starts one)")
def test_two_worker_processes_share_one_postgresql_study(tmp_path):
    assert POSTGRES_URL is not None, "CI must provide SB3_DDPG_EXT_TEST_POSTGRES_URL (see .ci/postgres)"
    name = f"test-{time.time_ns()}"
    study = tune(_settings(tmp_path, n_trials=4, n_jobs=2, sampler="random", storage=POSTGRES_URL, study_name=name))
    _check_shared_study(study, n_trials=4, n_jobs=2)
    # The trials live in the server: a plain Optuna client sees them.
    assert len(optuna.load_study(study_name=name, storage=POSTGRES_URL).trials) == len(study.trials)


def _worker_command(settings_kwargs):
    return [
        sys.executable,
        "-c",
        "from sb3_ddpg_ext.experiments.tuning import TuningSettings, run_worker; "
        f"run_worker(TuningSettings(**{settings_kwargs!r}))",
    ]


def test_a_killed_workers_trial_is_failed_and_the_study_resumes(tmp_path):
    storage = str(tmp_path / "study.journal")
    slow = dict(env_id="Pendulum-v1", n_trials=2, n_timesteps=1_000_000, storage=storage, search_space=TINY_SPACE)
    worker = subprocess.Popen(_worker_command({**slow, "heartbeat_interval": 1}))
    try:
        study = None
        deadline = time.time() + 120
        while time.time() < deadline and not (study and study.get_trials(states=(State.RUNNING,))):
            time.sleep(0.5)
            if (tmp_path / "study.journal").exists():
                study = optuna.load_study(study_name="ddpg_ext-Pendulum-v1", storage=make_storage(storage))
        assert study is not None and study.get_trials(states=(State.RUNNING,)), "the worker never started a trial"
    finally:
        worker.kill()
        worker.wait()
    time.sleep(2.5)  # longer than the grace period (2 heartbeat intervals)
    study = tune(_settings(tmp_path, n_trials=2, storage=storage, pruner="none"))
    states = [trial.state for trial in study.get_trials()]
    assert states == [State.FAIL, State.COMPLETE, State.COMPLETE]
    assert FAILURE_ATTR not in study.trials[0].user_attrs  # the dead worker's trial does not count


class NanRewardPendulum(gym.Wrapper):
    def step(self, action):
        observation, _, terminated, truncated, info = self.env.step(action)
        return observation, float("nan"), terminated, truncated, info


gym.register("NanRewardPendulum-v0", entry_point=lambda **kwargs: NanRewardPendulum(gym.make("Pendulum-v1", **kwargs)))


def test_divergent_and_impossible_trials_end_with_their_reason_and_the_study_goes_on(tmp_path):
    diverging = tune(_settings(tmp_path, env_id="NanRewardPendulum-v0", search_space={**TINY_SPACE, "critic": "plain"}))
    assert [trial.state for trial in diverging.trials] == [State.PRUNED, State.PRUNED]
    # NaN rewards show up as a NaN evaluation return, or earlier as NaN TD errors given to prioritized replay.
    reasons = [trial.user_attrs[FAILURE_ATTR] for trial in diverging.trials]
    assert all(
        reason.startswith(("diverged: evaluation return nan", "diverged: priorities must be finite")) for reason in reasons
    )

    # An empty support (v_min > v_max) is refused by the critic when the trial builds it.
    impossible = {**TINY_SPACE, "critic": "categorical", "v_min": 10.0, "v_max": -10.0}
    failing = tune(_settings(tmp_path, storage=str(tmp_path / "other.journal"), search_space=impossible))
    assert [trial.state for trial in failing.trials] == [State.FAIL, State.FAIL]
    assert all("`v_min` < `v_max`" in trial.user_attrs[FAILURE_ATTR] for trial in failing.trials)


def test_pruned_trials_stop_early_but_not_in_the_first_third_of_their_budget(tmp_path):
    settings = _settings(tmp_path, n_trials=10, n_evaluations=3, n_timesteps=600, pruner="median", sampler="random")
    study = tune(settings)
    pruned = study.get_trials(states=(State.PRUNED,))
    assert pruned, "no trial was pruned"
    # Evaluations at steps 200, 400, 600: the one at 200 lies in the warm-up and never prunes.
    assert all(max(trial.intermediate_values) == 400 for trial in pruned)
    # A trial the pruner would stop at its last evaluation has finished its budget: it completes.
    assert all(trial.value == trial.intermediate_values[600] for trial in study.get_trials(states=(State.COMPLETE,)))
    assert all(np.isfinite(list(trial.intermediate_values.values())).all() for trial in pruned)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--n-trials", "-1"], "`n_trials` must be a positive integer, got -1"),
        (["--sampler", "grid"], "`sampler` must be one of ['tpe', 'random', 'cmaes'], got 'grid'"),
        (["--pruner", "hyperband"], "`pruner` must be one of ['median', 'halving', 'none'], got 'hyperband'"),
        (["--env", "NoSuchEnv-v0"], "unknown or unusable env 'NoSuchEnv-v0'"),
        (["--env", "CartPole-v1"], "needs continuous (Box) actions"),
        (["--timesteps", "5", "--n-evaluations", "10"], "`n_evaluations=10` must be <= `n_timesteps=5`"),
        (["--search-space", "missing.yml"], "search space file 'missing.yml' does not exist"),
    ],
)
def test_bad_options_give_clear_errors(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    assert main(["tune", *arguments]) == 2
    assert message in capsys.readouterr().err


def test_tuning_never_overwrites_a_file_it_did_not_write(tmp_path):
    hand_kept = tmp_path / "ddpg_ext.yml"
    hand_kept.write_text("# my tuned entries\nPendulum-v1: {n_timesteps: 1000}\n")
    with pytest.raises(ValueError, match="was not written by a tuning run"):
        tune_and_report(_settings(tmp_path, output=str(hand_kept)))
    assert hand_kept.read_text().startswith("# my tuned entries")


def test_the_best_trial_may_have_a_return_of_zero():
    from sb3_ddpg_ext.experiments.tuning_report import best_trial

    study = optuna.create_study(direction="maximize")
    for value in (-5.0, 0.0, -1.0):
        study.add_trial(optuna.trial.create_trial(value=value))
    assert best_trial(study).value == 0.0
