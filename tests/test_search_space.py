"""The tuning search space: conditional sampling, narrowing, and conversion into entries that build DDPGExt."""

import optuna
import pytest

from sb3_ddpg_ext import DDPGExt
from sb3_ddpg_ext.common.buffers import PrioritizedReplayBuffer
from sb3_ddpg_ext.common.noise import AdaptiveParamNoise
from sb3_ddpg_ext.experiments.config import parse_entry
from sb3_ddpg_ext.experiments.search_space import (
    Choice,
    Range,
    check_search_space,
    default_search_space,
    narrow,
    read_overrides,
    sample_params,
    to_entry,
    to_kwargs,
)
from sb3_ddpg_ext.experiments.train import build_model


def _random_trials(space, n_trials, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    samples = []
    for _ in range(n_trials):
        trial = study.ask()
        samples.append((trial, sample_params(trial, space)))
        study.tell(trial, 0.0)
    return samples


def test_conditional_dimensions_are_drawn_only_when_their_condition_holds():
    for trial, params in _random_trials(default_search_space("Pendulum-v1"), 60):
        assert params == trial.params
        assert ("per_alpha" in params) == params["prioritized"]
        assert ("priority" in params) == (params["prioritized"] and params["critic"] == "plain")
        assert ("per_beta" in params) == (params["prioritized"] and params.get("priority") != "lap")
        assert ("net_arch" in params) == ("layer_norm" in params) == (params["network"] == "mlp")
        assert ("noise_std" in params) == (params["noise_type"] != "none")
        assert ("param_noise_distance" in params) == params["param_noise"]
        assert ("target_noise_clip" in params) == (params["target_policy_noise"] > 0)
        assert ("n_atoms" in params) == ("v_min" in params) == (params["critic"] == "categorical")
        targets = not params.get("batch_norm", False)
        assert ("hard_target_interval" in params) == targets
        assert ("tau" in params) == (targets and params["hard_target_interval"] == 0)
        assert ("value_clipping" in params) == (targets and params["critic"] == "plain")
        assert ("sale" in params) == (targets and params["n_steps"] == 1)


def test_every_sample_of_the_default_space_builds_a_ddpg_ext_and_its_entry_means_what_was_drawn():
    space = narrow(default_search_space("Pendulum-v1"), {"buffer_size": 1_000})
    for _, params in _random_trials(space, 25, seed=1):
        entry = to_entry(params, n_timesteps=500)
        assert entry["gamma"] == pytest.approx(1 - params["one_minus_gamma"])
        assert entry["train_freq"] == entry["gradient_steps"] == params["train_freq"]
        model = build_model(parse_entry("Pendulum-v1", entry), seed=0)
        assert model.learning_rate == params["learning_rate"] and model.n_steps == params["n_steps"]
        assert model.policy_delay == params["policy_delay"]
        assert isinstance(model.replay_buffer, PrioritizedReplayBuffer) == params["prioritized"]
        assert isinstance(model.param_noise, AdaptiveParamNoise) == params["param_noise"]
        assert (model.action_noise is None) == (params["noise_type"] == "none")
        if params.get("batch_norm"):
            assert model.policy.critic_target is None
        elif params["hard_target_interval"]:
            assert (model.tau, model.target_update_interval) == (1.0, params["hard_target_interval"])
        else:
            assert model.tau == params["tau"] and model.target_update_interval is None
        if params["prioritized"]:
            assert model.replay_buffer.alpha == pytest.approx(params["per_alpha"])
            assert (model.replay_buffer.huber_threshold is not None) == (params.get("priority") == "lap")
        assert model.policy.network == params["network"] and (model.policy.sale is not None) == params.get("sale", False)
        assert (model._checkpoints is not None) == params["policy_checkpoints"]
        assert model.target_value_clipping == params.get("value_clipping", False)


def test_to_kwargs_builds_ddpg_ext_directly():
    for _, params in _random_trials(narrow(default_search_space("Pendulum-v1"), {"buffer_size": 1_000}), 5, seed=2):
        model = DDPGExt("MlpPolicy", "Pendulum-v1", **to_kwargs(params, action_dim=1))
        assert model.batch_size == params["batch_size"] and model.n_steps == params["n_steps"]


def test_narrowing_takes_choices_ranges_and_fixed_values_and_keeps_conditions():
    space = narrow(
        default_search_space("Pendulum-v1"),
        {"batch_size": [32], "learning_rate": {"low": 1e-4, "high": 1e-3, "log": True}, "prioritized": True, "per_alpha": 0.5},
    )
    assert space["batch_size"] == Choice((32,)) and space["prioritized"] == Choice((True,))
    assert isinstance(space["learning_rate"], Range) and space["learning_rate"].log
    assert space["per_alpha"].when is not None
    for _, params in _random_trials(space, 5):
        assert params["batch_size"] == 32 and params["per_alpha"] == 0.5 and 1e-4 <= params["learning_rate"] <= 1e-3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lr": [1e-3]}, r"unknown parameter\(s\) \['lr'\]"),
        ({"batch_size": []}, "needs at least one choice"),
        ({"learning_rate": {"low": 1e-3}}, "must have keys low, high"),
        ({"learning_rate": {"low": 1e-3, "high": 1e-4}}, "low < high"),
        ({"one_minus_gamma": {"low": 0, "high": 0.1, "log": True}}, "needs low > 0"),
    ],
)
def test_bad_narrowing_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        narrow(default_search_space(), overrides)


def test_a_categorical_critic_needs_a_support_for_unknown_tasks():
    with pytest.raises(ValueError, match=r"no \['v_min', 'v_max'\] for env 'Swimmer-v5'"):
        check_search_space(default_search_space("Swimmer-v5"), "Swimmer-v5")
    check_search_space(narrow(default_search_space("Swimmer-v5"), {"critic": "plain"}), "Swimmer-v5")
    check_search_space(narrow(default_search_space("Swimmer-v5"), {"v_min": -10.0, "v_max": 500.0}), "Swimmer-v5")


def test_search_space_file(tmp_path):
    path = tmp_path / "space.yml"
    path.write_text("batch_size: [64, 128]\ncritic: plain\n")
    assert read_overrides(path) == {"batch_size": [64, 128], "critic": "plain"}
    path.write_text("batch_sise: [64]\n")
    with pytest.raises(ValueError, match="batch_sise"):
        read_overrides(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_overrides(tmp_path / "missing.yml")
