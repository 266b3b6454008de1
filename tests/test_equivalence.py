"""With no extension switched on, DDPGExt is SB3's DDPG: same updates, same parameters."""

import copy
import inspect

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DDPG, TD3
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import NormalActionNoise
from update_helpers import outputs_target_and_loss

from sb3_ddpg_ext import DDPGExt


def _settings(**overrides):
    # A new dict each time: SB3's DDPG writes n_critics into the policy_kwargs it is given.
    return {**dict(policy_kwargs=dict(net_arch=[32, 32]), learning_starts=100, batch_size=64, seed=3), **overrides}


def _train(algorithm_class, steps=400, **kwargs):
    model = algorithm_class(
        "MlpPolicy", "Pendulum-v1", action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)), **_settings(**kwargs)
    )
    model.learn(steps)
    return model


def _assert_same_parameters(model, reference):
    ours, theirs = model.policy.state_dict(), reference.policy.state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        th.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6, msg=key)


def test_same_initial_weights_and_same_collected_data_as_sb3_ddpg():
    # gradient_steps=0: collection only, so any difference would come from the data pipeline.
    model, reference = _train(DDPGExt, gradient_steps=0), _train(DDPG, gradient_steps=0)
    _assert_same_parameters(model, reference)
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        np.testing.assert_array_equal(getattr(model.replay_buffer, name), getattr(reference.replay_buffer, name), err_msg=name)
    assert model.replay_buffer.pos == 400


@pytest.mark.parametrize("n_steps", [1, 3])
def test_critic_loss_equals_sum_of_mse_over_critics(n_steps):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", n_steps=n_steps, **_settings(policy_kwargs=dict(net_arch=[32], n_critics=2)))
    model.learn(150)
    batch = model.replay_buffer.sample(32)
    _, _, target, (loss, errors, _, current_q, *_) = outputs_target_and_loss(model, batch)
    q_values = model.critic(batch.observations, batch.actions)
    th.testing.assert_close(loss, sum(th.nn.functional.mse_loss(q, target) for q in q_values))
    # Priority rule with several critics: the mean absolute TD error over them.
    th.testing.assert_close(errors, th.cat([(q_values[0] - target).abs(), (q_values[1] - target).abs()], dim=1))
    assert current_q.shape == (32, 2) and not errors.requires_grad


def test_accepts_every_argument_of_sb3_ddpg_with_the_same_default():
    ours = inspect.signature(DDPGExt.__init__).parameters
    for name, parameter in inspect.signature(DDPG.__init__).parameters.items():
        assert name in ours, name
        assert ours[name].default == parameter.default, name
    for name in ("policy_delay", "target_policy_noise", "target_noise_clip", "stats_window_size"):
        assert name in ours, name


@pytest.mark.parametrize(
    "reference_class,settings",
    [
        (DDPG, dict()),
        (TD3, dict(policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5)),
    ],
)
def test_optimized_update_matches_the_straightforward_update_on_identical_batches(reference_class, settings):
    """DDPGExt's lean update (fused Adam, actor-only gradients, fused Polyak averaging) is SB3's maths."""
    n_critics = 2 if reference_class is TD3 else 1
    reference = reference_class("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[64, 64]), seed=5, **settings)
    reference.learn(300)
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[64, 64], n_critics=n_critics), seed=5, **settings)
    model.policy.load_state_dict(reference.policy.state_dict())
    model.replay_buffer = reference.replay_buffer
    for optimizer, reference_optimizer in (
        (model.actor.optimizer, reference.actor.optimizer),
        (model.critic.optimizer, reference.critic.optimizer),
    ):
        # A deep copy: load_state_dict would otherwise share the moment tensors between the two.
        optimizer.load_state_dict(copy.deepcopy(reference_optimizer.state_dict()))
    model._n_updates = reference._n_updates
    model.set_logger(Logger(folder=None, output_formats=[]))
    before = {key: value.clone() for key, value in model.policy.state_dict().items()}
    for algorithm in (model, reference):
        # Same batches and the same smoothing noise for both.
        np.random.seed(0)
        th.manual_seed(0)
        algorithm.train(gradient_steps=50, batch_size=64)
    ours, theirs = model.policy.state_dict(), reference.policy.state_dict()
    for key in ours:
        th.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-6, msg=key)
    assert any(not th.equal(before[key], ours[key]) for key in ours)


@pytest.mark.parametrize("gradient_steps", [0, 1])
def test_networks_are_in_the_same_train_or_eval_mode_as_in_sb3(gradient_steps):
    # After collection the online networks are in eval mode, after train() in train mode; targets always in eval mode.
    model, reference = (
        _train(DDPGExt, steps=120, gradient_steps=gradient_steps),
        _train(DDPG, steps=120, gradient_steps=gradient_steps),
    )
    modes = [{name: module.training for name, module in m.policy.named_modules()} for m in (model, reference)]
    assert modes[0] == modes[1]
    assert not any(training for name, training in modes[0].items() if "target" in name)
    model.policy.set_training_mode(True)
    reference.policy.set_training_mode(True)
    assert {name: module.training for name, module in model.policy.named_modules()} == {
        name: module.training for name, module in reference.policy.named_modules()
    }


def test_without_action_noise_the_same_collected_data_as_sb3_ddpg():
    settings = _settings(gradient_steps=0, learning_starts=50)  # no updates: the same weights on both sides
    model, reference = (
        algorithm_class("MlpPolicy", "MountainCarContinuous-v0", **settings) for algorithm_class in (DDPGExt, DDPG)
    )
    for algorithm in (model, reference):
        algorithm.learn(150)
    for name in ("observations", "next_observations", "actions", "rewards"):
        np.testing.assert_array_equal(getattr(model.replay_buffer, name), getattr(reference.replay_buffer, name), err_msg=name)
