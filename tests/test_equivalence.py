"""With no extension switched on, DDPGExt is SB3's DDPG: same updates, same parameters."""

import inspect

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DDPG, TD3
from stable_baselines3.common.noise import NormalActionNoise

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


def test_same_parameters_as_sb3_ddpg_after_training():
    model, reference = _train(DDPGExt), _train(DDPG)
    assert model._n_updates == reference._n_updates == 300
    # Training moved the weights away from their shared initialisation: the comparison means something.
    assert not th.allclose(model.actor.mu[0].weight, _train(DDPGExt, steps=100).actor.mu[0].weight)
    _assert_same_parameters(model, reference)


def test_td3_settings_give_same_parameters_as_sb3_td3():
    td3_settings = dict(policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5)
    model = _train(DDPGExt, **td3_settings, policy_kwargs=dict(net_arch=[32, 32], n_critics=2))
    reference = _train(TD3, **td3_settings)
    assert model._n_updates == reference._n_updates
    # Both draw the smoothing noise from torch's generator with one call of the same shape per update.
    _assert_same_parameters(model, reference)


@pytest.mark.parametrize("n_steps", [1, 3])
def test_critic_loss_equals_sum_of_mse_over_critics(n_steps):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", n_steps=n_steps, **_settings(policy_kwargs=dict(net_arch=[32], n_critics=2)))
    model.learn(150)
    batch = model.replay_buffer.sample(32)
    target = model._td_target(batch)
    loss, priorities, current_q = model._critic_loss(batch, target)
    q_values = model.critic(batch.observations, batch.actions)
    th.testing.assert_close(loss, sum(th.nn.functional.mse_loss(q, target) for q in q_values))
    # Priority rule with several critics: the mean absolute TD error over them.
    th.testing.assert_close(priorities, ((q_values[0] - target).abs() + (q_values[1] - target).abs()).view(-1) / 2)
    assert current_q.shape == (32, 2) and not priorities.requires_grad


def test_accepts_every_argument_of_sb3_ddpg_with_the_same_default():
    ours = inspect.signature(DDPGExt.__init__).parameters
    for name, parameter in inspect.signature(DDPG.__init__).parameters.items():
        assert name in ours, name
        assert ours[name].default == parameter.default, name
    for name in ("policy_delay", "target_policy_noise", "target_noise_clip", "stats_window_size"):
        assert name in ours, name
