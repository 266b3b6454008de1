"""Prioritized and n-step buffers, tested exactly against the formulas and brute-force references."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from scipy import stats
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer

from sb3_ddpg_ext import NStepDictReplayBuffer, PrioritizedDictReplayBuffer, PrioritizedReplayBuffer, UniformReplayBuffer

BOX = spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
DICT = spaces.Dict({"a": spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32), "b": spaces.Box(-1, 1, shape=(2,))})
ACTIONS = spaces.Box(-1, 1, shape=(2,), dtype=np.float32)


def _observation(space, ids):
    """Observations that carry their (row, env) slot id in the first feature."""
    column = np.asarray(ids, dtype=np.float32)[:, None]
    if isinstance(space, spaces.Dict):
        return {"a": np.repeat(column, 3, axis=1), "b": np.repeat(column, 2, axis=1) * 0}
    return np.repeat(column, 3, axis=1)


def _fill(buffer, n_rows, seed=0, episode_end=0.15, truncation=0.5):
    """Random episodes on every env: ends with probability ``episode_end``, half of them truncations."""
    rng = np.random.default_rng(seed)
    n_envs = buffer.n_envs
    space = buffer.observation_space
    for row in range(n_rows):
        slot_ids = (row % buffer.buffer_size) * n_envs + np.arange(n_envs)
        dones = rng.random(n_envs) < episode_end
        truncated = dones & (rng.random(n_envs) < truncation)
        infos = [{"TimeLimit.truncated": bool(t)} for t in truncated]
        buffer.add(
            _observation(space, slot_ids),
            _observation(space, slot_ids + 0.5),  # next observation of slot s is s + 0.5
            rng.uniform(-1, 1, size=(n_envs, 2)).astype(np.float32),
            rng.normal(size=n_envs).astype(np.float32),
            dones,
            infos,
        )


def _reference(buffer, slot, n_steps, gamma):
    """n-step return, discount, bootstrap slot and done of one slot, by walking forward step by step."""
    row, env = divmod(int(slot), buffer.n_envs)
    newest = (buffer.pos - 1) % buffer.buffer_size
    total, discount = 0.0, 1.0
    for step in range(n_steps):
        total += discount * float(buffer.rewards[row, env])
        discount *= gamma
        if buffer.dones[row, env] or buffer.timeouts[row, env] or row == newest or step == n_steps - 1:
            break
        row = (row + 1) % buffer.buffer_size
    done = float(buffer.dones[row, env]) * (1.0 - float(buffer.timeouts[row, env]))
    return total, discount, row * buffer.n_envs + env, done


def _first_feature(observations):
    return (observations["a"] if isinstance(observations, dict) else observations)[:, 0].numpy()


@pytest.mark.parametrize(
    "buffer_class,space", [(PrioritizedReplayBuffer, BOX), (PrioritizedDictReplayBuffer, DICT), (NStepDictReplayBuffer, DICT)]
)
@pytest.mark.parametrize("n_steps", [1, 3, 5])
@pytest.mark.parametrize("n_rows", [37, 113])  # not full, and wrapped around twice
def test_n_step_returns_equal_brute_force(buffer_class, space, n_steps, n_rows):
    gamma = 0.9
    # SB3 buffers hold buffer_size transitions in total: 50 rows of 3 envs.
    buffer = buffer_class(150, space, ACTIONS, device="cpu", n_envs=3, n_steps=n_steps, gamma=gamma)
    _fill(buffer, n_rows)
    np.random.seed(0)
    for _ in range(20):
        samples = buffer.sample(64)
        slots = _first_feature(samples.observations).astype(np.int64)
        if hasattr(samples, "indices"):
            np.testing.assert_array_equal(samples.indices, slots)
        assert np.all(slots < min(n_rows, 50) * 3)
        for k, slot in enumerate(slots):
            reward, discount, next_slot, done = _reference(buffer, slot, n_steps, gamma)
            assert samples.rewards[k, 0].item() == pytest.approx(reward, rel=1e-5, abs=1e-5)
            assert samples.dones[k, 0].item() == done
            assert _first_feature(samples.next_observations)[k] == next_slot + 0.5
            if n_steps == 1:
                assert samples.discounts is None
            else:
                assert samples.discounts[k, 0].item() == pytest.approx(discount, rel=1e-6)


def test_timeouts_not_handled_count_as_terminations():
    buffer = PrioritizedReplayBuffer(100, BOX, ACTIONS, device="cpu", n_envs=2, handle_timeout_termination=False)
    _fill(buffer, 40)
    samples = buffer.sample(256)
    slots = samples.indices
    np.testing.assert_array_equal(samples.dones[:, 0].numpy(), buffer.dones.reshape(-1)[slots])


def _buffer_with_priorities(raw, alpha, **kwargs):
    buffer = PrioritizedReplayBuffer(len(raw), BOX, ACTIONS, device="cpu", alpha=alpha, **kwargs)
    _fill(buffer, len(raw))
    buffer.update_priorities(np.arange(len(raw)), raw)
    return buffer


def test_sampling_frequencies_match_priorities_to_the_alpha():
    raw = np.linspace(0.1, 2.0, 10)
    alpha = 0.7
    buffer = _buffer_with_priorities(raw, alpha)
    np.random.seed(1)
    counts = np.bincount(np.concatenate([buffer.sample(32).indices for _ in range(2000)]), minlength=10)
    expected = (raw + buffer.priorities.eps) ** alpha
    expected = expected / expected.sum() * counts.sum()
    assert stats.chisquare(counts, expected).pvalue > 1e-3
    # The test can fail: the same counts are far from uniform (alpha applied) and from alpha = 1.
    assert stats.chisquare(counts, np.full(10, counts.sum() / 10)).pvalue < 1e-6
    assert stats.chisquare(counts, raw / raw.sum() * counts.sum()).pvalue < 1e-6


def test_alpha_zero_is_uniform_with_unit_weights():
    buffer = _buffer_with_priorities(np.linspace(0.1, 5.0, 10), alpha=0.0)
    np.random.seed(2)
    batches = [buffer.sample(32) for _ in range(1000)]
    counts = np.bincount(np.concatenate([b.indices for b in batches]), minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-3
    assert all(th.all(b.weights == 1.0) for b in batches)


def test_alpha_is_applied_exactly_once():
    raw = np.array([0.5, 2.0, 3.0, 0.0])
    buffer = _buffer_with_priorities(raw, alpha=0.6, eps=0.01)
    np.testing.assert_allclose(buffer.priorities.tree[np.arange(4)], (raw + 0.01) ** 0.6)
    # Tensors are accepted too, and their sign does not matter (priorities are |TD error|).
    buffer.update_priorities(th.tensor([1]), th.tensor([-4.0]))
    assert buffer.priorities.tree[np.array([1])][0] == pytest.approx(4.01**0.6)


def test_new_item_gets_max_priority():
    buffer = PrioritizedReplayBuffer(16, BOX, ACTIONS, device="cpu", alpha=0.5, eps=0.1, n_envs=2)
    _fill(buffer, 1)
    np.testing.assert_array_equal(buffer.priorities.tree[np.arange(2)], [1.0, 1.0])  # nothing seen yet: 1
    buffer.update_priorities(np.array([0, 1]), np.array([7.0, 3.0]))
    buffer.update_priorities(np.array([0]), np.array([0.5]))  # the maximum is not forgotten
    assert buffer.max_priority == pytest.approx(7.1)
    _fill(buffer, 1, seed=1)
    np.testing.assert_allclose(buffer.priorities.tree[np.arange(2, 4)], [7.1**0.5, 7.1**0.5])


def test_importance_weights_formula():
    raw = np.array([0.1, 0.4, 1.0, 3.0, 0.2, 0.7])
    buffer = _buffer_with_priorities(raw, alpha=0.8, beta=0.5)
    np.random.seed(3)
    samples = buffer.sample(16)
    probabilities = (raw + buffer.priorities.eps) ** 0.8
    probabilities /= probabilities.sum()
    weights = (len(raw) * probabilities[samples.indices]) ** -0.5
    np.testing.assert_allclose(samples.weights[:, 0].numpy(), weights / weights.max(), rtol=1e-6)
    assert samples.weights.max().item() == 1.0 and samples.weights.shape == (16, 1)


def test_beta_is_annealed_with_progress():
    buffer = PrioritizedReplayBuffer(8, BOX, ACTIONS, device="cpu", beta=0.4, final_beta=1.0)
    assert buffer.beta == 0.4
    buffer.set_progress(0.5)
    assert buffer.beta == pytest.approx(0.7)
    buffer.set_progress(1.5)
    assert buffer.beta == 1.0


def test_one_tree_over_all_env_slots():
    buffer = PrioritizedReplayBuffer(40, BOX, ACTIONS, device="cpu", n_envs=4)
    _fill(buffer, 3)
    assert buffer.buffer_size == 10 and buffer.priorities.tree.capacity == 40
    # Only env 2 of row 1 has a large priority: it dominates the draws.
    buffer.update_priorities(np.arange(12), np.where(np.arange(12) == 6, 100.0, 1e-3))
    np.random.seed(4)
    assert np.mean(buffer.sample(64).indices == 6) > 0.9


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(alpha=-0.1), r"`alpha` must be in \[0, inf\), got -0.1"),
        (dict(beta=1.5), r"`beta` must be in \[0, 1\], got 1.5"),
        (dict(final_beta=-1.0), r"`final_beta` must be in \[0, 1\], got -1.0"),
        (dict(eps=0.0), r"`eps` must be in \(0, inf\), got 0.0"),
        (dict(n_steps=0), r"`n_steps` must be an integer >= 1, got 0"),
        (dict(optimize_memory_usage=True, handle_timeout_termination=False), "does not support `optimize_memory_usage=True`"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        PrioritizedReplayBuffer(10, BOX, ACTIONS, device="cpu", **kwargs)


def test_non_finite_priorities_are_refused():
    buffer = _buffer_with_priorities(np.ones(4), alpha=0.6)
    with pytest.raises(ValueError, match="priorities must be finite"):
        buffer.update_priorities(np.array([0, 1]), np.array([1.0, np.nan]))


def test_sampling_an_empty_buffer_is_an_error():
    with pytest.raises(ValueError, match="empty replay buffer"):
        PrioritizedReplayBuffer(10, BOX, ACTIONS, device="cpu").sample(4)


@pytest.mark.parametrize("n_steps,n_envs", [(1, 1), (1, 3), (3, 1), (5, 3)])
def test_uniform_buffer_gives_the_same_batches_as_sb3(n_steps, n_envs):
    """Same storage and the same random draws as SB3's ReplayBuffer / NStepReplayBuffer: same batches."""
    sb3_class = ReplayBuffer if n_steps == 1 else NStepReplayBuffer
    kwargs = {} if n_steps == 1 else dict(n_steps=n_steps, gamma=0.9)
    ours = UniformReplayBuffer(90, BOX, ACTIONS, device="cpu", n_envs=n_envs, **kwargs)
    theirs = sb3_class(90, BOX, ACTIONS, device="cpu", n_envs=n_envs, **kwargs)
    for buffer in (ours, theirs):
        _fill(buffer, 50)
    for seed in range(5):
        np.random.seed(seed)
        batch = ours.sample(32)
        np.random.seed(seed)
        reference = theirs.sample(32)
        for name in ("observations", "actions", "next_observations", "dones", "rewards", "discounts"):
            mine, other = getattr(batch, name), getattr(reference, name)
            if other is None:
                assert mine is None, name
            else:
                th.testing.assert_close(mine, other, msg=name)


@pytest.mark.parametrize("n_envs", [1, 2])
def test_uniform_buffer_gives_sb3s_batches_of_multi_dimensional_integer_observations(n_envs):
    space = spaces.Box(0, 255, shape=(4, 5), dtype=np.uint8)
    ours = UniformReplayBuffer(40, space, ACTIONS, device="cpu", n_envs=n_envs)
    theirs = ReplayBuffer(40, space, ACTIONS, device="cpu", n_envs=n_envs)
    rng = np.random.default_rng(1)
    for _ in range(30):
        observations, next_observations = rng.integers(0, 256, (2, n_envs, 4, 5), dtype=np.uint8)
        actions = rng.uniform(-1, 1, (n_envs, 2)).astype(np.float32)
        rewards, dones = rng.normal(size=n_envs).astype(np.float32), rng.random(n_envs) < 0.3
        infos = [{"TimeLimit.truncated": bool(rng.random() < 0.5)} for _ in range(n_envs)]
        for buffer in (ours, theirs):
            buffer.add(observations, next_observations, actions, rewards, dones, infos)
    np.random.seed(4)
    batch = ours.sample(16)
    np.random.seed(4)
    reference = theirs.sample(16)
    for name in ("observations", "actions", "next_observations", "dones", "rewards"):
        th.testing.assert_close(getattr(batch, name), getattr(reference, name), rtol=0, atol=0, msg=name)
