"""The command line trains, saves, evaluates and reports errors clearly."""

import subprocess
import sys

import pytest
import yaml

from sb3_ddpg_ext.cli import main

TINY_ENTRY = {
    "n_timesteps": 300,
    "policy": "MlpPolicy",
    "learning_starts": 100,
    "batch_size": 32,
    "noise_type": "normal",
    "noise_std": 0.1,
    "policy_kwargs": "dict(net_arch=[16])",
}


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Runs write their folders under ./logs: each test in its own directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def hyperparams(tmp_path):
    path = tmp_path / "hyperparams.yml"
    path.write_text(yaml.safe_dump({"Pendulum-v1": TINY_ENTRY, "Pendulum-normalized": {**TINY_ENTRY, "normalize": True}}))
    return path


def test_train_then_eval(tmp_path, hyperparams, capsys):
    model_path = tmp_path / "model.zip"
    code = main(
        [
            "train",
            "--hyperparams",
            str(hyperparams),
            "--save-path",
            str(model_path),
            "--n-eval-episodes",
            "2",
            "--tensorboard-log",
            str(tmp_path / "tb"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "trained Pendulum-v1 for 300 steps in" in out
    assert "evaluation return: -" in out and "over 2 episodes" in out
    assert model_path.is_file() and (tmp_path / "tb" / "DDPGExt_Pendulum-v1_1").is_dir()

    assert main(["eval", "--model", str(model_path), "--n-episodes", "2"]) == 0
    assert "over 2 episodes" in capsys.readouterr().out


def test_vecnormalize_statistics_are_saved_and_used_in_eval(tmp_path, hyperparams, capsys, monkeypatch):
    import gymnasium as gym

    # Register an alias so the entry name is a real env id.
    monkeypatch.setitem(gym.registry, "Pendulum-normalized", gym.spec("Pendulum-v1"))
    model_path = tmp_path / "model.zip"
    code = main(
        [
            "train",
            "--env",
            "Pendulum-normalized",
            "--hyperparams",
            str(hyperparams),
            "--save-path",
            str(model_path),
            "--n-eval-episodes",
            "1",
            "--timesteps",
            "200",
            "--no-progress-bar",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "model_vecnormalize.pkl").is_file()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--env", "NoSuchEnv-v0", "--hyperparams", "missing.yml"], "'missing.yml' does not exist"),
        (["train", "--preset", "nope"], "unknown preset 'nope'; presets are ['crossq', 'd4pg', 'ddpg', 'ext'"),
        (["train", "--params", "learning_rate"], "`--params` takes key:value pairs"),
        (["train", "--params", "no_such_key:1"], "unknown key(s) ['no_such_key']"),
        (["train", "--device", "bogus"], "`device`: 'bogus' is not a torch device"),
        (["train", "--timesteps", "0"], "`timesteps` must be an integer >= 1, got 0"),
        (["train", "--eval-freq", "-5"], "`eval_freq` must be an integer >= 0, got -5"),
        (["train", "--n-envs", "0"], "`n_envs` must be an integer >= 1, got 0"),
        (["train", "--checkpoint-freq", "-1"], "`checkpoint_freq` must be an integer >= 0, got -1"),
        (["train", "--eval-episodes", "0"], "`eval_episodes` must be an integer >= 1, got 0"),
        (["train", "--env-kwargs", "width"], "`--env-kwargs` takes key:value pairs"),
        (["train", "--log-folder", "hyperparams.yml"], "`log_folder`: 'hyperparams.yml' exists and is not a folder"),
        (["train", "--resume", "nowhere"], "model file 'nowhere' does not exist"),
        (["train", "--resume", "nowhere", "--seed", "1"], "--seed cannot be given"),
        (["record", "--model", "m.zip", "--output", "a.avi"], "must end in one of ['.mp4', '.gif']"),
        (["eval", "--model", "missing.zip"], "model file 'missing.zip' does not exist"),
        (["train", "--hyperparams", "missing.yml"], "hyperparameter file 'missing.yml' does not exist"),
    ],
)
def test_errors_are_reported_without_traceback(argv, message, capsys, hyperparams):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_module_entry_point_help():
    result = subprocess.run(
        [sys.executable, "-m", "sb3_ddpg_ext", "train", "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--env", "--timesteps", "--seed", "--hyperparams", "--tensorboard-log", "--save-path"):
        assert option in result.stdout


@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_a_save_path_with_or_without_zip_trains_saves_and_evaluates(tmp_path, hyperparams, capsys, name):
    argv = ["train", "--hyperparams", str(hyperparams), "--save-path", str(tmp_path / name), "--n-eval-episodes", "1"]
    assert main([*argv, "--no-progress-bar"]) == 0, capsys.readouterr().err
    assert f"saved model to {tmp_path / 'model.zip'}\n" in capsys.readouterr().out
    assert (tmp_path / "model.zip").is_file() and not (tmp_path / "model").exists()
    for model in (tmp_path / "model", tmp_path / "model.zip"):  # eval takes it either way, as DDPGExt.load does
        assert main(["eval", "--model", str(model), "--n-episodes", "1"]) == 0
        assert "over 1 episodes" in capsys.readouterr().out


def test_a_malformed_yaml_file_is_an_error_naming_the_file(tmp_path, capsys):
    path = tmp_path / "broken.yml"
    path.write_text("Pendulum-v1:\n  n_timesteps: [300\n")
    assert main(["train", "--hyperparams", str(path)]) == 2
    assert f"ddpg-ext: error: hyperparameter file '{path}' is not valid YAML" in capsys.readouterr().err


def test_a_normalize_string_that_is_no_literal_is_an_error_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "hyperparams.yml"
    path.write_text(yaml.safe_dump({"Pendulum-v1": {**TINY_ENTRY, "normalize": "{'norm_obs': True"}}))
    assert main(["train", "--hyperparams", str(path)]) == 2
    assert "ddpg-ext: error: " in (err := capsys.readouterr().err) and "`normalize` string" in err


def test_a_bug_keeps_its_traceback_instead_of_reading_like_bad_input(hyperparams, monkeypatch):
    from sb3_ddpg_ext.experiments import train

    def broken(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")

    monkeypatch.setattr(train, "train", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["train", "--hyperparams", str(hyperparams)])


def test_an_env_id_gymnasium_does_not_know_is_a_clean_error(tmp_path, capsys):
    path = tmp_path / "hyperparams.yml"
    path.write_text(yaml.safe_dump({"NoSuchEnv-v0": TINY_ENTRY}))
    assert main(["train", "--env", "NoSuchEnv-v0", "--hyperparams", str(path)]) == 2
    assert "ddpg-ext: error: " in (err := capsys.readouterr().err) and "NoSuchEnv" in err


def test_a_model_for_another_env_is_a_clean_error(tmp_path, hyperparams, capsys):
    assert main(["train", "--hyperparams", str(hyperparams), "--save-path", str(tmp_path / "m"), "--no-progress-bar"]) == 0
    capsys.readouterr()
    assert main(["eval", "--env", "MountainCarContinuous-v0", "--model", str(tmp_path / "m")]) == 2
    assert "cannot be loaded for env 'MountainCarContinuous-v0'" in capsys.readouterr().err


def test_benchmark_list_algos_offers_every_preset_and_the_td7_ablations(capsys):
    assert main(["benchmark", "--list-algos"]) == 0
    names = capsys.readouterr().out.split()
    for name in ("ddpg", "td3", "d4pg", "crossq", "ext", "td7", "simba", "td7-no-sale", "td7-no-lap", "td7-no-checkpoints"):
        assert f"ddpg-ext-{name}" in names
