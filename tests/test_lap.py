"""LAP (loss-adjusted prioritization) as a priority rule of the prioritized buffers, and in DDPGExt's update."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import Logger
from torch.nn import functional as F

from sb3_ddpg_ext import DDPGExt, PrioritizedDictReplayBuffer, PrioritizedReplayBuffer
from sb3_ddpg_ext.common.priorities import LossAdjustedPriorities

BOX = spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
DICT = spaces.Dict({"a": BOX, "b": spaces.Box(-1, 1, shape=(2,), dtype=np.float32)})
ACTIONS = spaces.Box(-1, 1, shape=(2,), dtype=np.float32)
LAP = dict(replay_buffer_class=PrioritizedReplayBuffer, replay_buffer_kwargs=dict(priority="lap"))
FAST = dict(learning_starts=100, batch_size=32, buffer_size=2_000, seed=5)


def _buffer(n_rows=8, buffer_class=PrioritizedReplayBuffer, space=BOX, **kwargs):
    buffer = buffer_class(64, space, ACTIONS, device="cpu", priority="lap", **kwargs)
    for _ in range(n_rows):
        observation = space.sample() if isinstance(space, spaces.Dict) else np.zeros((1, 3), np.float32)
        if isinstance(observation, dict):
            observation = {key: value[None] for key, value in observation.items()}
        buffer.add(observation, observation, np.zeros((1, 2), np.float32), np.zeros(1), np.zeros(1), [{}])
    return buffer


def test_lap_priority_is_max_of_the_larger_critic_error_and_min_priority_to_the_alpha():
    buffer = _buffer(alpha=0.4, min_priority=1.0)
    errors = np.array([[0.2, 0.5], [3.0, -0.5], [-2.0, 4.0], [0.0, 0.0]])  # one column per critic
    buffer.update_priorities(np.arange(4), errors)
    expected = np.maximum(np.abs(errors).max(axis=1), 1.0) ** 0.4
    np.testing.assert_allclose(buffer.priorities.tree[np.arange(4)], expected)


def test_lap_samples_have_unit_weights_and_frequencies_proportional_to_the_priorities():
    buffer = _buffer(n_rows=4, alpha=1.0, min_priority=1.0)
    buffer.update_priorities(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    np.random.seed(0)
    counts = np.zeros(4)
    for _ in range(200):
        batch = buffer.sample(50)
        assert th.equal(batch.weights, th.ones(50, 1))
        counts += np.bincount(batch.indices, minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), np.array([1, 2, 3, 4]) / 10, atol=0.01)


def test_new_transitions_get_the_running_max_and_a_reset_takes_the_largest_stored_priority():
    buffer = _buffer(n_rows=4, alpha=0.4)
    assert buffer.max_priority == 1.0  # min_priority: no priority can be smaller
    buffer.update_priorities(np.arange(4), np.array([5.0, 2.0, 0.5, 3.0]))
    assert buffer.max_priority == 5.0
    buffer.update_priorities(np.array([0]), np.array([1.5]))  # the largest is gone; the running max stays
    assert buffer.max_priority == 5.0
    buffer.reset_max_priority()
    assert buffer.max_priority == pytest.approx(3.0)
    buffer.add(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    assert buffer.priorities.tree[np.array([4])][0] == pytest.approx(3.0**0.4)


def test_the_proportional_rule_keeps_its_max_priority_at_a_reset():
    buffer = PrioritizedReplayBuffer(8, BOX, ACTIONS, device="cpu")
    buffer.add(np.zeros((1, 3)), np.zeros((1, 3)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    buffer.update_priorities(np.array([0]), np.array([4.0]))
    buffer.update_priorities(np.array([0]), np.array([0.1]))
    buffer.reset_max_priority()
    assert buffer.max_priority == pytest.approx(4.0 + 1e-6)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (dict(priority="lap", beta=0.5), r"`beta` do\(es\) not apply to `priority='lap'`"),
        (dict(priority="proportional", min_priority=1.0), r"`min_priority` do\(es\) not apply"),
        (dict(priority="rank"), r"`priority` must be one of \['lap', 'proportional'\], got 'rank'"),
        (dict(priority="lap", min_priority=0.0), r"`min_priority` must be in \(0, inf\), got 0.0"),
        (dict(priority="lap", alpha=-1.0), r"`alpha` must be in \[0, inf\), got -1.0"),
    ],
)
def test_bad_priority_settings_are_refused_naming_the_parameter(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        PrioritizedReplayBuffer(10, BOX, ACTIONS, device="cpu", **kwargs)


def test_lap_on_dict_observations_with_n_step_returns():
    buffer = _buffer(n_rows=10, buffer_class=PrioritizedDictReplayBuffer, space=DICT, n_steps=3, gamma=0.9)
    assert isinstance(buffer.priorities, LossAdjustedPriorities)
    batch = buffer.sample(16)
    assert set(batch.observations) == {"a", "b"} and batch.discounts is not None
    buffer.update_priorities(batch.indices, np.full((16, 2), 2.0))
    assert buffer.max_priority == 2.0


def _trained(steps=150, **kwargs):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", **{**FAST, **LAP, **kwargs})
    model.learn(steps)
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


@pytest.mark.parametrize("lean_update", [True, False])
def test_ddpg_ext_with_lap_trains_the_critics_on_the_huber_loss_of_threshold_min_priority(lean_update, monkeypatch):
    model = _trained(policy_kwargs=dict(net_arch=[16], n_critics=2), lean_update=lean_update)
    recorded = {}
    sample, critic_loss = model.replay_buffer.sample, model.critic.loss
    monkeypatch.setattr(model.replay_buffer, "sample", lambda *a, **k: recorded.setdefault("batch", sample(*a, **k)))
    monkeypatch.setattr(model.critic, "loss", lambda *a, **k: recorded.setdefault("loss", critic_loss(*a, **k)))
    model.train(gradient_steps=1, batch_size=32)
    loss, batch = recorded["loss"], recorded["batch"]
    assert loss.huber_threshold == 1.0
    q_values, target = loss.q_values, loss.target
    expected = F.huber_loss(q_values, target.expand_as(q_values), reduction="none", delta=1.0).sum(dim=1).mean()
    th.testing.assert_close(loss.loss.detach(), expected)
    # The priorities handed back: the larger error over the two critics, at least min_priority, to the alpha.
    _, last = np.unique(batch.indices[::-1], return_index=True)
    last = len(batch.indices) - 1 - last
    expected_priorities = np.maximum((q_values - target).abs().max(dim=1).values.numpy(), 1.0) ** 0.4
    np.testing.assert_allclose(model.replay_buffer.priorities.tree[batch.indices[last]], expected_priorities[last], rtol=1e-6)
    assert "train/beta" not in model.logger.name_to_value and "train/is_weight_mean" not in model.logger.name_to_value


def test_lap_with_a_categorical_critic_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"priority='lap'.*Huber loss.*CategoricalCritic"):
        DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8], critic="categorical"), **LAP)


def test_lap_save_load_keeps_the_rule_and_its_priorities(tmp_path):
    model = _trained(policy_kwargs=dict(net_arch=[16]))
    model.save_replay_buffer(tmp_path / "buffer")
    model.save(tmp_path / "model")
    loaded = DDPGExt.load(tmp_path / "model", env=model.get_env())
    loaded.load_replay_buffer(tmp_path / "buffer")
    buffer = loaded.replay_buffer
    assert isinstance(buffer.priorities, LossAdjustedPriorities) and buffer.huber_threshold == 1.0
    np.testing.assert_array_equal(buffer.priorities.tree._nodes, model.replay_buffer.priorities.tree._nodes)
    loaded.learn(20, reset_num_timesteps=False)
