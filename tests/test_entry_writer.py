"""Keyword arguments written as an RL-Zoo-format entry read back as the same keyword arguments."""

import pytest
import yaml
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from sb3_ddpg_ext.common.validation import InvalidValueError
from sb3_ddpg_ext.experiments.config import parse_entry
from sb3_ddpg_ext.experiments.entry_writer import python_text, raw_entry
from sb3_ddpg_ext.presets import PRESETS, preset


def read_back(entry):
    """Through YAML, as `config.yml` is written and read."""
    return parse_entry("Pendulum-v1", yaml.safe_load(yaml.safe_dump(entry)))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_written_as_an_entry_reads_back_as_itself(name):
    kwargs = preset(name)
    config = read_back(raw_entry({"n_timesteps": 1000}, kwargs))
    assert config.model_kwargs == kwargs  # classes by identity, tuples as tuples, nested mappings key by key


def test_experiment_settings_and_schedules_read_back():
    experiment = {"n_timesteps": 500, "n_envs": 2, "normalize": {"norm_reward": False}, "noise_type": "normal"}
    entry = raw_entry({**experiment, "noise_std": 0.3}, {"learning_rate": LinearSchedule(3e-4, 0.0, 1.0)})
    assert entry["learning_rate"] == "lin_0.0003"
    config = read_back({**entry, "train_freq": [1, "episode"]})
    assert (config.n_envs, config.normalize, config.noise_std) == (2, {"norm_reward": False}, 0.3)
    assert config.model_kwargs["learning_rate"](0.5) == pytest.approx(1.5e-4)
    assert config.model_kwargs["train_freq"] == (1, "episode")


def test_python_text_is_what_rl_zoo_files_hold():
    value = {"net_arch": {"pi": [64], "qf": [400, 300]}, "activation_fn": nn.ELU, "betas": (0.5,), "eps": None}
    assert (
        python_text(value, "policy_kwargs")
        == "dict(net_arch=dict(pi=[64], qf=[400, 300]), activation_fn=nn.ELU, betas=(0.5,), eps=None)"
    )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"learning_rate": LinearSchedule(1e-3, 1e-4, 0.5)}, "only linear schedules to 0 over all of training"),
        ({"learning_rate": lambda progress: 1e-3}, "cannot be written to a hyperparameter file"),
        ({"policy_kwargs": {"activation_fn": LinearSchedule}}, "is neither in torch.nn nor in torch.optim"),
        ({"policy_kwargs": {"net arch": [4]}}, "cannot be written as dict(key=value) arguments"),
    ],
)
def test_what_cannot_be_written_faithfully_is_refused_by_name(kwargs, message):
    with pytest.raises(InvalidValueError) as error:
        raw_entry({}, kwargs)
    assert message in str(error.value) and f"`{next(iter(kwargs))}`" in str(error.value)
