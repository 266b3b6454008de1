"""`train` runs as RL Zoo users know them: run folders, presets and overrides, evaluations, checkpoints, resuming."""

import dataclasses

import numpy as np
import pytest
import torch as th
import yaml

from sb3_ddpg_ext import DDPGExt
from sb3_ddpg_ext.cli import main
from sb3_ddpg_ext.common.validation import InvalidValueError, MissingFileError
from sb3_ddpg_ext.experiments.run_config import parse_overrides, resolve_entry
from sb3_ddpg_ext.experiments.train import TrainSettings, resolve_device, resume, train

# Small enough to train in a second or two: learning starts after 50 steps, 16-unit networks.
SMALL = ["--params", "learning_starts:50", "policy_kwargs:dict(net_arch=[16])", "batch_size:32"]
QUIET = ["--no-progress-bar", "--n-eval-episodes", "1"]


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def run_folder(tmp_path, env_id="Pendulum-v1", number=1):
    return tmp_path / "logs" / "ddpg_ext" / f"{env_id}_{number}"


def test_a_run_writes_rl_zoos_layout_and_numbers_runs_as_rl_zoo_does(tmp_path, capsys):
    for _ in range(2):
        assert main(["train", "--preset", "td3", "-n", "120", *SMALL, *QUIET]) == 0, capsys.readouterr().err
    folder = run_folder(tmp_path, number=2)
    assert f"run folder: {folder.relative_to(tmp_path)}" in capsys.readouterr().out
    assert {path.name for path in folder.iterdir()} == {"Pendulum-v1.zip", "config.yml", "args.yml", "0.monitor.csv"}
    assert DDPGExt.load(folder / "Pendulum-v1.zip").num_timesteps == 120


def test_a_run_repeated_from_its_config_yml_trains_the_same_weights(tmp_path, capsys):
    argv = ["train", "--preset", "td7", "-n", "150", "--seed", "3", *QUIET]
    argv += ["--params", "learning_starts:50", "policy_kwargs:dict(net_arch=[16], sale_embedding_dim=8, sale_net_arch=[8])"]
    assert main(argv) == 0, capsys.readouterr().err
    config = run_folder(tmp_path) / "config.yml"
    entry = yaml.safe_load(config.read_text())["Pendulum-v1"]
    assert (
        entry["replay_buffer_class"] == "PrioritizedReplayBuffer" and "critic_activation_fn=nn.ELU" in entry["policy_kwargs"]
    )
    assert "sale_embedding_dim=8" in entry["policy_kwargs"] and "sale=True" in entry["policy_kwargs"]  # merged, not replaced
    assert main(["train", "--hyperparams", str(config), "--seed", "3", *QUIET]) == 0, capsys.readouterr().err
    first, again = (DDPGExt.load(run_folder(tmp_path, number=n) / "Pendulum-v1.zip") for n in (1, 2))
    for a, b in zip(first.policy.parameters(), again.policy.parameters(), strict=True):
        assert th.equal(a, b)
    assert type(again.replay_buffer).__name__ == "PrioritizedReplayBuffer" and again.target_update_interval == 250


def test_an_env_without_entry_trains_the_recommended_preset_and_says_so(tmp_path, capsys):
    hyperparams = tmp_path / "only_pendulum.yml"
    hyperparams.write_text(yaml.safe_dump({"Pendulum-v1": {"n_timesteps": 100}}))
    argv = ["train", "--env", "MountainCarContinuous-v0", "--hyperparams", str(hyperparams), "-n", "100", *SMALL, *QUIET]
    assert main(argv) == 0, capsys.readouterr().err
    assert "has no entry for 'MountainCarContinuous-v0': training the recommended preset 'ext'" in capsys.readouterr().out
    entry = yaml.safe_load((run_folder(tmp_path, "MountainCarContinuous-v0") / "config.yml").read_text())
    policy_kwargs = entry["MountainCarContinuous-v0"]["policy_kwargs"]
    assert "batch_norm=True" in policy_kwargs and "net_arch=[16]" in policy_kwargs


def test_evaluations_during_training_count_steps_over_all_envs_and_keep_the_best_model(tmp_path, capsys):
    argv = ["train", "--preset", "ddpg", "-n", "200", "--n-envs", "2", "--eval-freq", "100", "--eval-episodes", "2"]
    assert main([*argv, *SMALL, *QUIET]) == 0, capsys.readouterr().err
    folder = run_folder(tmp_path)
    with np.load(folder / "evaluations.npz") as evaluations:
        assert evaluations["timesteps"].tolist() == [100, 200] and evaluations["results"].shape == (2, 2)
    assert (folder / "best_model.zip").is_file() and (folder / "1.monitor.csv").is_file()
    assert DDPGExt.load(folder / "Pendulum-v1.zip").n_envs == 2


def test_a_resumed_run_continues_from_its_checkpoint_with_its_buffer_and_evaluations(tmp_path, capsys):
    argv = ["train", "--preset", "td3", "-n", "200", "--eval-freq", "50", "--eval-episodes", "1", "--checkpoint-freq", "100"]
    argv += ["--save-replay-buffer"]
    assert main([*argv, *SMALL, *QUIET]) == 0, capsys.readouterr().err
    folder = run_folder(tmp_path)
    with np.load(folder / "evaluations.npz") as evaluations:
        uninterrupted = evaluations["results"].copy()
    checkpoint = folder / "rl_model_100_steps.zip"
    assert checkpoint.is_file() and (folder / "rl_model_replay_buffer_100_steps.pkl").is_file()
    (folder / "Pendulum-v1.zip").unlink()
    checkpointed = DDPGExt.load(checkpoint)
    checkpointed.load_replay_buffer(folder / "rl_model_replay_buffer_100_steps.pkl")
    assert checkpointed.num_timesteps == 100 and checkpointed.replay_buffer.size() == 100

    result = resume(checkpoint, progress_bar=False)
    model = DDPGExt.load(result.model_path)
    assert result.n_timesteps == 100 and model.num_timesteps == 200
    model.load_replay_buffer(folder / "Pendulum-v1_replay_buffer.pkl")
    assert model.replay_buffer.size() == 200  # the checkpoint's 100 transitions and the resumed run's 100: none lost
    with np.load(folder / "evaluations.npz") as evaluations:
        assert evaluations["timesteps"].tolist() == [50, 100, 150, 200]
        np.testing.assert_array_equal(evaluations["results"][:2], uninterrupted[:2])  # kept, not recomputed


def test_resuming_a_folder_takes_its_latest_model_and_refuses_a_finished_run(tmp_path, capsys):
    argv = ["train", "--preset", "td3", "-n", "100", "--checkpoint-freq", "50", "--save-replay-buffer"]
    assert main([*argv, *SMALL, *QUIET]) == 0
    with pytest.raises(InvalidValueError, match="has trained 100 of the run's 100 steps; pass a larger budget"):
        resume(run_folder(tmp_path), progress_bar=False)
    assert main(["train", "--resume", str(run_folder(tmp_path)), "-n", "150", "--no-progress-bar"]) == 0
    assert "trained Pendulum-v1 for 50 steps" in capsys.readouterr().out
    assert yaml.safe_load((run_folder(tmp_path) / "config.yml").read_text())["Pendulum-v1"]["n_timesteps"] == 150


def test_a_final_model_without_a_saved_buffer_cannot_be_resumed(tmp_path):
    train(TrainSettings(preset="td3", timesteps=60, params=parse_overrides(SMALL[1:]), progress_bar=False, n_eval_episodes=1))
    with pytest.raises(MissingFileError, match=r"no replay buffer beside .* --save-replay-buffer"):
        resume(run_folder(tmp_path), timesteps=100, progress_bar=False)


def test_overrides_are_literals_where_they_parse_and_text_otherwise():
    overrides = parse_overrides(["learning_rate:1e-3", "train_freq:(1, 'episode')", "noise_type:normal", "a:b:c"])
    assert overrides == {"learning_rate": 1e-3, "train_freq": (1, "episode"), "noise_type": "normal", "a": "b:c"}


def test_a_preset_entry_takes_the_tasks_shared_settings():
    entry = resolve_entry("HalfCheetah-v5", preset_name="d4pg").entry
    assert entry["learning_starts"] == 10_000 and entry["noise_type"] == "normal"
    assert "v_min=-100.0" in entry["policy_kwargs"] and "v_max=1500.0" in entry["policy_kwargs"]


def test_a_device_this_machine_lacks_is_refused_not_replaced_by_the_cpu(monkeypatch):
    assert resolve_device("cpu") == th.device("cpu")
    monkeypatch.setattr(th.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidValueError, match="`device`: 'cuda:1' was asked for, but this machine has no cuda"):
        TrainSettings(device="cuda:1")


def test_every_train_option_is_in_its_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    options = ["--preset", "--params", "--n-envs", "--eval-freq", "--checkpoint-freq", "--resume", "--device"]
    for option in [*options, "--log-folder", "--env-kwargs", "--save-replay-buffer", "--eval-episodes"]:
        assert option in help_text


def test_a_resumed_run_ends_the_episodes_its_checkpoint_cut_as_truncations(tmp_path):
    # Checkpoint at step 100, inside Pendulum's 200-step episodes: the 3-step returns must not run into the new ones.
    settings = TrainSettings(preset="td3", timesteps=150, checkpoint_freq=100, progress_bar=False, n_eval_episodes=1)
    train(dataclasses.replace(settings, params={**parse_overrides(SMALL[1:]), "n_steps": 3}, save_replay_buffer=True))
    folder = run_folder(tmp_path)
    saved = DDPGExt.load(folder / "rl_model_100_steps.zip")
    saved.load_replay_buffer(folder / "rl_model_replay_buffer_100_steps.pkl")
    assert saved.replay_buffer.timeouts[99, 0] == 0  # as collected: mid-episode

    result = resume(folder / "rl_model_100_steps.zip", timesteps=160, progress_bar=False, n_eval_episodes=1)
    model = DDPGExt.load(result.model_path)
    model.load_replay_buffer(folder / "Pendulum-v1_replay_buffer.pkl")
    buffer = model.replay_buffer
    assert buffer.size() == 160 and buffer.timeouts[99, 0] == 1 and buffer.dones[99, 0] == 0  # bootstrapped, n-step stops
    assert not buffer.timeouts[100:160, 0].any()  # the resumed run's own steps, mid-episode again
    assert result.evaluation.n_episodes == 1


def test_a_refused_resume_leaves_the_runs_budget_as_it_was(tmp_path):
    assert main(["train", "--preset", "td3", "-n", "100", "--checkpoint-freq", "50", *SMALL, *QUIET]) == 0
    config = run_folder(tmp_path) / "config.yml"
    before = config.read_text()
    with pytest.raises(MissingFileError, match="no replay buffer beside"):
        resume(run_folder(tmp_path), timesteps=500, progress_bar=False)
    assert config.read_text() == before


def test_a_run_that_cannot_start_leaves_no_folder(tmp_path, capsys):
    hyperparams = tmp_path / "h.yml"
    hyperparams.write_text(yaml.safe_dump({"NoSuchEnv-v0": {"n_timesteps": 100}}))
    assert main(["train", "--env", "NoSuchEnv-v0", "--hyperparams", str(hyperparams)]) == 2
    assert ("NoSuchEnv" in capsys.readouterr().err and not (tmp_path / "logs" / "ddpg_ext").exists()) or not any(
        (tmp_path / "logs" / "ddpg_ext").iterdir()
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--preset", "td3", "--hyperparams", "h.yml"], "give it or `--hyperparams h.yml`, not both"),
        (["--params", "n_timesteps:abc"], "`n_timesteps` must be a whole number >= 0, got 'abc'"),
        (["--params", "n_envs:2.5"], "`n_envs` must be a whole number >= 1, got 2.5"),
        (["--params", "n_envs:0"], "`n_envs` must be a whole number >= 1, got 0"),
    ],
)
def test_conflicting_or_malformed_run_settings_are_refused_by_name(argv, message, capsys):
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_fallback_notice_comes_before_training(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(DDPGExt, "learn", lambda self, *args, **kwargs: seen.append("learn") or self)
    hyperparams = tmp_path / "h.yml"
    hyperparams.write_text(yaml.safe_dump({"Pendulum-v1": {"n_timesteps": 100}}))
    settings = TrainSettings(env_id="MountainCarContinuous-v0", hyperparams=str(hyperparams), timesteps=10)
    settings.params, settings.n_eval_episodes = parse_overrides(SMALL[1:]), 1
    train(settings, notify=lambda notice: seen.append(notice))
    assert len(seen) == 2 and "recommended preset 'ext'" in seen[0] and seen[1] == "learn"


def test_the_evaluation_env_normalises_as_the_entry_says(tmp_path):
    from sb3_ddpg_ext.experiments.config import parse_entry
    from sb3_ddpg_ext.experiments.run_callbacks import evaluation_callback
    from sb3_ddpg_ext.experiments.run_folder import RunFolder

    config = parse_entry("Pendulum-v1", {"n_timesteps": 10, "normalize": "{'norm_obs': False, 'clip_obs': 3.0}"})
    callback = evaluation_callback(config, 0, RunFolder(tmp_path, "Pendulum-v1"), 100, 1)
    env = callback.eval_env
    assert not env.norm_obs and not env.norm_reward and not env.training and env.clip_obs == 3.0


def test_eval_finds_the_statistics_of_rl_zoos_layout(tmp_path):
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from sb3_ddpg_ext.experiments.evaluation import load_for_evaluation

    DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8])).save(tmp_path / "Pendulum-v1.zip")
    (tmp_path / "Pendulum-v1").mkdir()
    VecNormalize(make_vec_env("Pendulum-v1")).save(str(tmp_path / "Pendulum-v1" / "vecnormalize.pkl"))
    _, env = load_for_evaluation("Pendulum-v1", tmp_path / "Pendulum-v1.zip")
    assert isinstance(env, VecNormalize) and not env.training and not env.norm_reward
