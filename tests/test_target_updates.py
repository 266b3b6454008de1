"""Target updates every N critic updates (TD7's hard copies) and TD7's clipping of the bootstrap values."""

import math

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.logger import Logger

from sb3_ddpg_ext import DDPGExt, PrioritizedReplayBuffer
from sb3_ddpg_ext.ddpg_ext.target_values import TargetValueRange

FAST = dict(learning_starts=100, batch_size=32, buffer_size=2_000, seed=6, policy_kwargs=dict(net_arch=[16]))
HARD = dict(tau=1.0, target_update_interval=5)


def _model(**kwargs):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", **{**FAST, **kwargs})
    model.learn(110)  # 10 updates
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def _same(first, second):
    return all(th.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))


@pytest.mark.parametrize("lean_update", [True, False])
def test_targets_are_hard_copies_every_interval_and_unchanged_between(lean_update):
    model = _model(lean_update=lean_update, **HARD)
    assert model._n_updates % 5 == 0
    assert _same(model.actor, model.actor_target) and _same(model.critic, model.critic_target)
    for _ in range(4):
        model.train(gradient_steps=1, batch_size=32)
        assert not _same(model.critic, model.critic_target)
    model.train(gradient_steps=1, batch_size=32)
    assert _same(model.actor, model.actor_target) and _same(model.critic, model.critic_target)


def test_with_an_interval_the_actor_keeps_its_policy_delay():
    model = _model(policy_delay=2, **HARD)
    before = [parameter.clone() for parameter in model.actor.parameters()]
    model.train(gradient_steps=1, batch_size=32)  # update 11: no actor step
    assert all(th.equal(a, b) for a, b in zip(model.actor.parameters(), before, strict=True))
    model.train(gradient_steps=1, batch_size=32)  # update 12
    assert not all(th.equal(a, b) for a, b in zip(model.actor.parameters(), before, strict=True))


def test_the_value_range_clips_to_the_targets_seen_before_the_last_roll():
    value_range = TargetValueRange()
    assert value_range.bounds == (0.0, 0.0)  # TD7: [0, 0] before the first target update
    value_range.observe(th.tensor([[-3.0], [2.0]]))
    assert value_range.bounds == (0.0, 0.0)
    value_range.roll()
    value_range.observe(th.tensor([[7.0]]))
    assert value_range.bounds == (-3.0, 2.0)
    value_range.roll()
    assert value_range.bounds == (-3.0, 7.0)


@pytest.mark.parametrize("n_critics", [1, 2])
def test_clipped_outputs_give_the_td_target_of_the_clipped_bootstrap_value_not_a_clipped_reward(n_critics):
    model = _model(target_value_clipping=True, policy_kwargs=dict(net_arch=[16], n_critics=n_critics), **HARD)
    value_range = TargetValueRange()
    value_range.low, value_range.high = -1.0, 2.0
    next_q = th.tensor([[-10.0, -3.0], [0.5, 0.8], [10.0, 4.0]])[:, :n_critics]
    rewards = th.tensor([[1.0], [1.0], [-20.0]])
    discounts = th.full((3, 1), 0.5)
    target = model.critic.td_target(value_range.clip(next_q.unsqueeze(-1)), rewards, discounts)
    th.testing.assert_close(target, rewards + discounts * next_q.amin(dim=1, keepdim=True).clamp(-1.0, 2.0))


def test_ddpg_ext_clips_with_the_range_of_the_previous_interval_and_saves_it(tmp_path):
    model = _model(target_value_clipping=True, **HARD)
    value_range = model._value_range
    assert value_range is not None and math.isfinite(value_range.seen_low)
    low, high = value_range.bounds
    assert value_range.seen_low <= low <= high <= value_range.seen_high
    recorded = {}
    td_target = model.critic.td_target

    def recording_td_target(next_outputs, *args):
        recorded["next_outputs"] = next_outputs
        return td_target(next_outputs, *args)

    model.critic.td_target = recording_td_target
    model.train(gradient_steps=1, batch_size=32)
    assert low <= recorded["next_outputs"].min() and recorded["next_outputs"].max() <= high
    model.save(tmp_path / "model")
    loaded = DDPGExt.load(tmp_path / "model")
    assert loaded._value_range is not None and loaded._value_range.__dict__ == model._value_range.__dict__


def test_lap_max_priority_is_reset_at_each_target_update():
    model = _model(replay_buffer_class=PrioritizedReplayBuffer, replay_buffer_kwargs=dict(priority="lap"), **HARD)
    buffer = model.replay_buffer
    buffer.priorities.max_priority = 1e6  # a stale maximum from long ago
    for _ in range(4):
        model.train(gradient_steps=1, batch_size=32)
    assert buffer.max_priority >= 1e6
    model.train(gradient_steps=1, batch_size=32)
    stored = buffer.priorities.tree[np.arange(buffer.n_stored)].max() ** (1 / buffer.alpha)
    assert buffer.max_priority == pytest.approx(stored)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(target_update_interval=0), r"`target_update_interval` must be an integer >= 1, got 0"),
        (dict(target_update_interval=2.5), r"`target_update_interval` must be an integer >= 1, got 2.5"),
        (dict(target_value_clipping="yes"), r"`target_value_clipping` must be a bool, got 'yes'"),
        (
            dict(target_value_clipping=True, policy_kwargs=dict(critic="categorical")),
            r"`target_value_clipping=True` clips scalar bootstrap values.*CategoricalCritic",
        ),
    ],
)
def test_bad_target_settings_are_refused_at_construction(kwargs, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        DDPGExt("MlpPolicy", "Pendulum-v1", **kwargs)


def test_with_polyak_averaging_lap_keeps_its_running_max_as_the_lap_paper():
    model = _model(replay_buffer_class=PrioritizedReplayBuffer, replay_buffer_kwargs=dict(priority="lap"))
    model.replay_buffer.priorities.max_priority = 1e6
    model.train(gradient_steps=3, batch_size=32)
    assert model.replay_buffer.max_priority == 1e6
