"""The RL Zoo plug-in runs RL Zoo's own train, enjoy and plot scripts with DDPGExt, reading this package's yaml."""

import subprocess
import sys

import pytest

from sb3_ddpg_ext import DDPGExt, PrioritizedReplayBuffer
from sb3_ddpg_ext.common.noise import AdaptiveParamNoise
from sb3_ddpg_ext.experiments.config import DEFAULT_HYPERPARAMS
from sb3_ddpg_ext.zoo import convert_entry, main, script_arguments


def zoo(*arguments, cwd):
    """One script in its own process: RL Zoo's scripts parse sys.argv and set global state."""
    result = subprocess.run(
        [sys.executable, "-m", "sb3_ddpg_ext.zoo", *arguments], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_rl_zoo_trains_enjoys_and_plots_ddpg_ext_end_to_end(tmp_path):
    # The package's Pendulum-v1 entry (prioritized replay, 3-step returns, LayerNorm critic), made small and short.
    small = ["-params", "learning_starts:100", "policy_kwargs:dict(net_arch=[32, 32], n_critics=1, layer_norm=True)"]
    out = zoo("train", "--env", "Pendulum-v1", "-n", "300", "-f", "logs/", "--eval-freq", "150", "--eval-episodes", "2",
              *small, cwd=tmp_path)  # fmt: skip
    assert f"Loading hyperparameters from: {DEFAULT_HYPERPARAMS}" in out
    run = tmp_path / "logs" / "ddpg_ext" / "Pendulum-v1_1"
    model = DDPGExt.load(run / "Pendulum-v1.zip")
    assert (
        model.num_timesteps == 304 and model.n_steps == 3
    )  # 300 rounded up to the entry's train_freq of 16 and (run / "evaluations.npz").is_file()
    assert model.replay_buffer_class is PrioritizedReplayBuffer  # the yaml's name resolved by the plug-in

    assert "Loading logs/ddpg_ext/Pendulum-v1_1/Pendulum-v1.zip" in zoo(
        "enjoy", "--env", "Pendulum-v1", "-f", "logs/", "--no-render", "-n", "210", cwd=tmp_path
    )
    out = zoo("plot", "-a", "ddpg_ext", "-e", "Pendulum-v1", "-f", "logs/", "--no-display", "--figure", "c.png", cwd=tmp_path)
    assert "|Pendulum-v1 |" in out and (tmp_path / "c.png").stat().st_size > 1000


def test_the_plugin_reads_ddpg_exts_own_keys_with_its_parser():
    entry = convert_entry(
        {"replay_buffer_class": "PrioritizedReplayBuffer", "param_noise": "AdaptiveParamNoise(initial_std=0.3)",
         "policy_checkpoints": "dict(max_episodes=5)", "policy_kwargs": "dict(net_arch=[8])"},
        "test",
    )  # fmt: skip
    assert entry["replay_buffer_class"] is PrioritizedReplayBuffer and entry["policy_checkpoints"] == {"max_episodes": 5}
    assert isinstance(entry["param_noise"], AdaptiveParamNoise) and entry["param_noise"].std == 0.3
    assert entry["policy_kwargs"] == "dict(net_arch=[8])"  # left to RL Zoo, which reads it as it reads its own files
    assert convert_entry({"param_noise": "dict(target_distance=0.1)"}, "t")["param_noise"].target_distance == 0.1


def test_rl_zoos_hyperparameter_search_runs_ddpg_ext_with_its_td3_space(tmp_path):
    arguments = ["train", "--env", "Pendulum-v1", "-n", "300", "-f", "logs/", "-params", "learning_starts:100", "-optimize"]
    out = zoo(*arguments, "--n-trials", "1", "--sampler", "random", "--pruner", "none", "--n-evaluations", "1", cwd=tmp_path)
    assert "Number of finished trials:  1" in out and "net_arch:" in out


def test_options_given_with_an_equals_sign_are_seen():
    assert script_arguments("train", ["--algo=td3"]) == ["--algo=td3"]
    assert script_arguments("train", ["--conf-file=mine.yml"]) == ["--algo", "ddpg_ext", "--conf-file=mine.yml"]


def test_plot_figure_without_a_file_name_is_an_error(capsys):
    assert main(["plot", "-a", "ddpg_ext", "--figure"]) == 2
    assert "`--figure` takes a file name" in capsys.readouterr().err


def test_train_defaults_to_ddpg_ext_and_its_yaml_but_leaves_other_choices_alone():
    assert script_arguments("train", ["--env", "X"]) == [
        "--algo",
        "ddpg_ext",
        "--env",
        "X",
        "--conf-file",
        str(DEFAULT_HYPERPARAMS),
    ]
    assert script_arguments("train", ["--algo", "td3", "--env", "X"]) == ["--algo", "td3", "--env", "X"]
    assert script_arguments("train", ["-conf", "mine.yml"])[-2:] == ["-conf", "mine.yml"]
    assert script_arguments("plot", ["-a", "ddpg_ext"]) == ["-a", "ddpg_ext"]


def test_an_unknown_script_prints_the_known_ones(capsys):
    assert main(["fly"]) == 2
    assert "train,enjoy,plot" in capsys.readouterr().err


@pytest.mark.parametrize("arguments", [["train", "--help"], ["enjoy", "--help"]])
def test_rl_zoos_help_lists_ddpg_ext_among_its_algorithms(tmp_path, arguments):
    assert "ddpg_ext" in zoo(*arguments, cwd=tmp_path)
