"""The compiled TD step of scalar critics is the arithmetic of DDPGExt's _td_target, _critic_loss and their gradient."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sb3_ddpg_ext import DDPGExt
from sb3_ddpg_ext.common.squared_td import squared_td_step
from sb3_ddpg_ext.common.type_aliases import PrioritizedReplayBufferSamples


def _batch(batch_size: int, n_steps: bool, weighted: bool, generator: th.Generator) -> ReplayBufferSamples:
    def column(low: float = -5.0, high: float = 5.0) -> th.Tensor:
        return th.empty(batch_size, 1).uniform_(low, high, generator=generator)

    fields = dict(
        observations=th.zeros(batch_size, 3),
        actions=th.zeros(batch_size, 1),
        next_observations=th.zeros(batch_size, 3),
        dones=(column(0.0, 1.0) < 0.3).float(),
        rewards=column(),
        discounts=column(0.5, 1.0) if n_steps else None,
    )
    if not weighted:
        return ReplayBufferSamples(**fields)
    return PrioritizedReplayBufferSamples(**fields, weights=column(0.1, 1.0), indices=np.arange(batch_size))


@pytest.mark.parametrize("n_critics", [1, 2, 3])
@pytest.mark.parametrize("n_steps", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_equals_the_tensor_ops_of_the_algorithm(n_critics, n_steps, weighted):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", gamma=0.97, policy_kwargs=dict(net_arch=[8], n_critics=n_critics))
    generator = th.Generator().manual_seed(n_critics + 2 * n_steps + 4 * weighted)
    batch = _batch(64, n_steps, weighted, generator)
    outputs = th.randn(64, n_critics, 1, generator=generator) * 10
    next_outputs = th.randn(64, n_critics, 1, generator=generator) * 10

    target = model._td_target(batch, next_outputs)
    loss, priorities, current_q = model._critic_loss(batch, outputs, target)
    gradients = model._critic_loss_gradients(batch, outputs, target, current_q)
    step = squared_td_step(
        next_outputs, outputs, batch.rewards, batch.dones, model.gamma, batch.discounts, getattr(batch, "weights", None)
    )
    # The same float32 operations in the same order (the multiply-add of the target fused, as in torch's CPU kernel).
    th.testing.assert_close(step.output_gradients, gradients, rtol=0, atol=0)
    th.testing.assert_close(step.priorities, priorities, rtol=0, atol=0)
    # Sums taken in float64 here.
    th.testing.assert_close(step.loss, loss)
    th.testing.assert_close(step.priority_mean, priorities.mean())
    th.testing.assert_close(step.q_mean, current_q.mean())
