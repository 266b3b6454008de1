"""The benchmark grid: one result file per run, resumable, parallel, summarised."""

import csv
import dataclasses
import json

import pytest
import torch as th

from sb3_ddpg_ext.cli import main
from sb3_ddpg_ext.ddpg_ext.critics import CategoricalCritic
from sb3_ddpg_ext.experiments.benchmark import EvaluationRecorder, RunSpec, algorithm_names, build, run_grid, train_run
from sb3_ddpg_ext.experiments.run_checkpoints import RunCheckpoints

SMALL = (("net_arch", [16]),)


def _specs(algorithms, seeds=(0,)):
    return [
        RunSpec(algorithm, "Pendulum-v1", seed, timesteps=300, eval_freq=100, n_eval_episodes=1, policy_kwargs=SMALL)
        for algorithm in algorithms
        for seed in seeds
    ]


@pytest.mark.parametrize(("executor", "jobs"), [("process", 1), ("process", 2), ("ray", 2)])
def test_grid_writes_one_complete_file_per_run_and_resumes(tmp_path, executor, jobs):
    specs = _specs(["sb3-ddpg", "ddpg-ext-td3"])
    paths = run_grid(specs, tmp_path, jobs=jobs, executor=executor)
    assert [path.relative_to(tmp_path).as_posix() for path in paths] == [
        "Pendulum-v1/sb3-ddpg/seed0.csv",
        "Pendulum-v1/ddpg-ext-td3/seed0.csv",
    ]
    for path in paths:
        rows = list(csv.DictReader(path.open()))
        assert [int(row["timesteps"]) for row in rows] == [100, 200, 300]
        assert all(float(row["mean_return"]) < 0 and float(row["seconds"]) > 0 for row in rows)
        metadata = json.loads(path.with_suffix(".json").read_text())
        assert metadata["run"]["algorithm"] in ("sb3-ddpg", "ddpg-ext-td3") and "git commit" in metadata["provenance"]
    # A finished run is not run again.
    modified = [path.stat().st_mtime_ns for path in paths]
    run_grid(specs, tmp_path, jobs=jobs, executor=executor)
    assert [path.stat().st_mtime_ns for path in paths] == modified


def test_a_finished_run_with_another_budget_is_refused_not_taken_for_the_one_asked(tmp_path):
    (spec,) = _specs(["sb3-td3"])
    run_grid([spec], tmp_path)
    longer = dataclasses.replace(spec, timesteps=400)
    with pytest.raises(ValueError, match=r"holds a run with other settings: timesteps 300 \(asked: 400\)"):
        run_grid([longer], tmp_path)
    assert [int(row["timesteps"]) for row in csv.DictReader(spec.path(tmp_path).open())][-1] == 300


def test_every_algorithm_builds_and_categorical_critics_get_the_task_support():
    for algorithm in algorithm_names():
        build(algorithm, "Pendulum-v1", seed=0, policy_kwargs={"net_arch": [8]})
    d4pg = build("ddpg-ext-d4pg", "Pendulum-v1", seed=0, policy_kwargs={"net_arch": [8]})
    assert isinstance(d4pg.critic, CategoricalCritic) and d4pg.critic.atoms[0].item() == -1500.0
    with pytest.raises(ValueError, match="unknown algorithm 'sac'"):
        build("sac", "Pendulum-v1", seed=0)


def test_cli_report_and_bad_algorithm(tmp_path, capsys):
    run_grid(_specs(["sb3-td3"]), tmp_path)
    assert main(["benchmark", "--root", str(tmp_path), "--report-only"]) == 0
    assert "| sb3-td3 | 1 | 300 |" in capsys.readouterr().out
    assert main(["benchmark", "--root", str(tmp_path), "--algos", "sac"]) == 2
    assert "unknown algorithms ['sac']" in capsys.readouterr().err


def test_unknown_executor_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"`executor` must be one of \['process', 'ray'\], got 'dask'"):
        run_grid(_specs(["sb3-ddpg"]), tmp_path, executor="dask")


def test_zoo_baselines_take_rl_zoo_entries_and_sb3_defaults_for_the_rest():
    td3 = build("sb3-td3-zoo", "Pendulum-v1", seed=0, policy_kwargs={"net_arch": [8]})
    assert (td3.gamma, td3.learning_starts, td3.buffer_size) == (0.98, 10_000, 200_000)
    ddpg = build("sb3-ddpg-zoo", "MountainCarContinuous-v0", seed=0, policy_kwargs={"net_arch": [8]})
    assert type(ddpg.action_noise).__name__ == "OrnsteinUhlenbeckActionNoise" and ddpg.learning_starts == 100
    with pytest.raises(ValueError, match="RL Zoo has no tuned DDPG entry for 'InvertedPendulum-v5'"):
        build("sb3-ddpg-zoo", "InvertedPendulum-v5", seed=0)


def test_the_peers_sb3_users_pick_build_with_rl_zoos_entries_and_their_own_exploration():
    crossq = build("contrib-crossq-zoo", "HalfCheetah-v5", seed=0)
    assert type(crossq).__name__ == "CrossQ" and (crossq.learning_rate, crossq.learning_starts, crossq.policy_delay) == (
        1e-3,
        5_000,
        3,
    )
    assert crossq.policy_kwargs["net_arch"] == {"pi": [256, 256], "qf": [2048, 2048]}
    narrowed = build("contrib-crossq-zoo-512", "HalfCheetah-v5", seed=0)
    assert (narrowed.learning_rate, narrowed.learning_starts, narrowed.policy_delay) == (1e-3, 5_000, 3)
    assert narrowed.policy_kwargs["net_arch"] == {"pi": [256, 256], "qf": [512, 512]}
    assert [layer.out_features for layer in narrowed.critic.modules() if isinstance(layer, th.nn.Linear)][:2] == [512, 512]
    tqc = build("contrib-tqc-zoo", "Hopper-v5", seed=0, policy_kwargs={"net_arch": [8]})
    assert type(tqc).__name__ == "TQC" and tqc.top_quantiles_to_drop_per_net == 5 and tqc.learning_starts == 10_000
    for name in ("sb3-sac", "contrib-tqc", "contrib-crossq", "sb3-sac-zoo"):
        model = build(name, "Hopper-v5", seed=0, policy_kwargs={"net_arch": [8]})
        assert model.action_noise is None  # stochastic actors explore with their own policy
    assert build("sb3-td3", "Hopper-v5", seed=0, policy_kwargs={"net_arch": [8]}).action_noise is not None


def test_an_interrupted_run_resumes_from_its_checkpoint_with_the_evaluations_before_it(tmp_path, monkeypatch):
    # Pendulum's episodes end every 200 steps: the checkpoint after 1100 steps is written at the episode end at 1200,
    # after the 200 updates that follow the 1000 random steps.
    spec = RunSpec("ddpg-ext-td3", "Pendulum-v1", 0, timesteps=1600, eval_freq=200, n_eval_episodes=1, policy_kwargs=SMALL)
    uninterrupted = train_run(spec)
    checkpoints = RunCheckpoints(tmp_path / "checkpoints", every=1100)
    original_on_step = EvaluationRecorder._on_step
    first_steps: list[int] = []

    def interrupted_at_1300(self):
        if self.num_timesteps == 1300:
            raise KeyboardInterrupt("the session ended")
        return original_on_step(self)

    monkeypatch.setattr(EvaluationRecorder, "_on_step", interrupted_at_1300)
    with pytest.raises(KeyboardInterrupt):
        train_run(spec, checkpoints)
    assert checkpoints.exists(spec)

    def recording_first_step(self):
        first_steps.append(self.num_timesteps)
        return original_on_step(self)

    monkeypatch.setattr(EvaluationRecorder, "_on_step", recording_first_step)
    resumed = train_run(spec, checkpoints)
    assert first_steps[0] == 1201  # continued from the checkpoint's step, not from 0 or from the interruption
    assert [row[0] for row in resumed.rows] == [row[0] for row in uninterrupted.rows] == list(range(200, 1601, 200))
    before = [(steps, mean, std) for steps, _, mean, std in uninterrupted.rows if steps <= 1200]
    assert [(steps, mean, std) for steps, _, mean, std in resumed.rows if steps <= 1200] == before
    seconds = [row[1] for row in resumed.rows]
    assert seconds == sorted(seconds)  # the training clock went on from where it stopped


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    checkpoints = RunCheckpoints(tmp_path, every=200)
    spec = RunSpec("ddpg-ext-td3", "Pendulum-v1", 0, timesteps=400, eval_freq=200, n_eval_episodes=1, policy_kwargs=SMALL)
    train_run(spec, checkpoints)
    other = RunSpec("ddpg-ext-td3", "Pendulum-v1", 0, timesteps=600, eval_freq=100, n_eval_episodes=1, policy_kwargs=SMALL)
    with pytest.raises(ValueError, match="is of another run"):
        train_run(other, checkpoints)
    with pytest.raises(ValueError, match="`checkpoint_freq` must be a positive number of steps, got 0"):
        RunCheckpoints(tmp_path, every=0)


def test_cli_checkpoints_runs_and_removes_a_finished_runs_checkpoint(tmp_path, capsys):
    arguments = ["benchmark", "--root", str(tmp_path / "runs"), "--algos", "sb3-td3", "--seeds", "0"]
    arguments += ["--timesteps", "400", "--eval-freq", "200", "--checkpoint-dir", str(tmp_path / "checkpoints")]
    assert main([*arguments, "--checkpoint-freq", "200"]) == 0
    assert (tmp_path / "runs" / "Pendulum-v1" / "sb3-td3" / "seed0.csv").exists()
    assert not (tmp_path / "checkpoints" / "Pendulum-v1" / "sb3-td3" / "seed0").exists()
    assert main([*arguments, "--checkpoint-freq", "-5", "--seeds", "1"]) == 2
    assert "`checkpoint_freq` must be a positive number of steps, got -5" in capsys.readouterr().err
