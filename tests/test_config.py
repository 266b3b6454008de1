"""RL-Zoo-format hyperparameter entries convert to DDPGExt arguments, without eval."""

import numpy as np
import pytest
import torch as th
import yaml
from stable_baselines3.common.noise import OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule

from sb3_ddpg_ext import AdaptiveParamNoise, DDPGExt, PrioritizedReplayBuffer
from sb3_ddpg_ext.experiments.config import DEFAULT_HYPERPARAMS, load_entry, parse_entry, parse_policy_kwargs
from sb3_ddpg_ext.experiments.train import build_model


def test_rl_zoo_td3_style_entry():
    entry = {
        "n_timesteps": 1e6,
        "policy": "MlpPolicy",
        "n_envs": 2,
        "normalize": "{'norm_obs': True, 'norm_reward': False}",
        "learning_rate": "lin_7.3e-4",
        "noise_type": "ornstein-uhlenbeck",
        "noise_std": 0.5,
        "train_freq": [1, "episode"],
        "gradient_steps": -1,
        "policy_kwargs": "dict(net_arch=[400, 300], activation_fn=nn.Tanh, optimizer_class=th.optim.AdamW)",
    }
    config = parse_entry("Pendulum-v1", entry)
    assert (config.n_timesteps, config.n_envs, config.normalize) == (1_000_000, 2, {"norm_obs": True, "norm_reward": False})
    kwargs = config.model_kwargs
    assert isinstance(kwargs["learning_rate"], LinearSchedule) and kwargs["learning_rate"](0.5) == pytest.approx(3.65e-4)
    assert kwargs["train_freq"] == (1, "episode")
    assert kwargs["policy_kwargs"] == dict(net_arch=[400, 300], activation_fn=th.nn.Tanh, optimizer_class=th.optim.AdamW)
    noise = config.make_action_noise(2)
    assert isinstance(noise, OrnsteinUhlenbeckActionNoise) and np.array_equal(noise._sigma, [0.5, 0.5])


def test_a_td7_entry_names_its_classes_and_checkpoints_as_rl_zoo_writes_them():
    entry = {
        "n_timesteps": 1000,
        "policy": "MlpPolicy",
        "policy_kwargs": "dict(sale=True, critic_activation_fn=nn.ELU, sale_activation_fn=nn.ELU, actor_q='mean')",
        "replay_buffer_class": "PrioritizedReplayBuffer",
        "replay_buffer_kwargs": "dict(priority='lap', min_priority=1.0)",
        "policy_checkpoints": "dict(max_episodes=5)",
        "target_update_interval": 250,
    }
    config = parse_entry("Pendulum-v1", entry)
    kwargs = config.model_kwargs
    assert kwargs["policy_kwargs"]["critic_activation_fn"] is th.nn.ELU
    assert kwargs["policy_kwargs"]["sale_activation_fn"] is th.nn.ELU
    assert kwargs["policy_checkpoints"] == {"max_episodes": 5} and kwargs["replay_buffer_kwargs"]["priority"] == "lap"
    model = build_model(config, seed=0)
    assert model._checkpoints is not None and model._checkpoints.max_episodes == 5


def test_policy_kwargs_as_yaml_mapping():
    kwargs = parse_policy_kwargs({"net_arch": {"pi": [64], "qf": [400, 300]}, "activation_fn": "ReLU", "n_critics": 2})
    assert kwargs == {"net_arch": {"pi": [64], "qf": [400, 300]}, "activation_fn": th.nn.ReLU, "n_critics": 2}


@pytest.mark.parametrize(
    "value,pattern",
    [
        ("__import__('os').system('echo pwned')", "must be 'dict"),
        ("dict(net_arch=open('/etc/passwd'))", "only literals and torch names"),
        ("dict(activation_fn=os.system)", "not a class of torch.nn or torch.optim"),
        ("dict(net_arch=[64,", "not valid syntax"),
    ],
)
def test_policy_kwargs_strings_are_never_evaluated(value, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_policy_kwargs(value)


@pytest.mark.parametrize(
    "entry,pattern",
    [
        ({"policy": "MlpPolicy"}, "`n_timesteps` is required"),
        ({"n_timesteps": 10, "frame_stack": 4}, r"keys \['frame_stack'\] are not supported"),
        ({"n_timesteps": 10, "learning_rat": 1e-3}, r"unknown key\(s\) \['learning_rat'\]"),
        ({"n_timesteps": 10, "noise_type": "pink"}, "`noise_type` must be one of"),
        ({"n_timesteps": 10, "learning_rate": "cos_1e-3"}, "schedule must look like 'lin_<float>'"),
    ],
)
def test_bad_entries(entry, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_entry("Pendulum-v1", entry)


def test_missing_env_entry_lists_the_available_ones(tmp_path):
    path = tmp_path / "h.yml"
    path.write_text(yaml.safe_dump({"Pendulum-v1": {"n_timesteps": 10}}))
    with pytest.raises(ValueError, match=r"no entry for env 'Hopper-v5'; it has entries for \['Pendulum-v1'\]"):
        load_entry("Hopper-v5", path)


def test_every_shipped_entry_builds_a_model_and_says_how_it_was_chosen():
    text = DEFAULT_HYPERPARAMS.read_text()
    entries = yaml.safe_load(text)
    assert next(iter(entries)) == "Pendulum-v1" and len(entries) >= 3
    for env_id in entries:
        config = load_entry(env_id)
        model = build_model(config, seed=0)
        assert isinstance(model, DDPGExt) and model.get_env().num_envs == config.n_envs
        # The comment block just above the entry gives the command that produced it and what it reached.
        comment = text[: text.index(f"\n{env_id}:")].rsplit("\n\n", 1)[-1]
        assert "python -m sb3_ddpg_ext" in comment and "reached" in comment, env_id


def test_extension_objects_are_written_as_names_and_dict_strings():
    entry = {
        "n_timesteps": 10,
        "replay_buffer_class": "PrioritizedReplayBuffer",
        "replay_buffer_kwargs": "dict(alpha=0.5, beta=0.3)",
        "param_noise": "dict(target_distance=0.1)",
    }
    kwargs = parse_entry("Pendulum-v1", entry).model_kwargs
    assert kwargs["replay_buffer_class"] is PrioritizedReplayBuffer
    assert kwargs["replay_buffer_kwargs"] == {"alpha": 0.5, "beta": 0.3}
    assert isinstance(kwargs["param_noise"], AdaptiveParamNoise) and kwargs["param_noise"].target_distance == 0.1


@pytest.mark.parametrize(
    "entry,pattern",
    [
        ({"replay_buffer_class": "HerReplayBuffr"}, "`replay_buffer_class` must be one of"),
        (
            {"replay_buffer_kwargs": "dict(alpha=os.getcwd())"},
            "only literals and torch names are allowed in `replay_buffer_kwargs`",
        ),
        ({"param_noise": "dict(std=0.1)"}, r"unknown `param_noise` argument\(s\) \['std'\]"),
    ],
)
def test_bad_extension_entries(entry, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_entry("Pendulum-v1", {"n_timesteps": 10, **entry})


def test_a_normalize_string_that_is_no_python_literal_is_refused_naming_the_key():
    for value in ("{'norm_obs': True", "dict(norm_obs=True)"):  # a SyntaxError and a ValueError in literal_eval
        with pytest.raises(ValueError, match="entry: `normalize` string"):
            parse_entry("Pendulum-v1", {"n_timesteps": 10, "normalize": value})


def test_the_test_extra_installs_the_mujoco_tasks_the_tests_use():
    from pathlib import Path

    import tomllib

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("gymnasium[mujoco]") for requirement in extras["test"])
