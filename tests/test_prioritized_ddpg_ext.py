"""DDPGExt with prioritized replay: weighted loss, priorities handed back, beta annealed, saved whole."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.logger import configure
from update_helpers import outputs_target_and_loss

from sb3_ddpg_ext import DDPGExt, NStepDictReplayBuffer, PrioritizedDictReplayBuffer, PrioritizedReplayBuffer
from sb3_ddpg_ext.common.type_aliases import PrioritizedReplayBufferSamples

FAST = dict(learning_starts=50, batch_size=32, buffer_size=1_000, policy_kwargs=dict(net_arch=[16]))


def _model(env="Pendulum-v1", buffer_class=PrioritizedReplayBuffer, **kwargs):
    return DDPGExt(
        "MultiInputPolicy" if isinstance(env, SimpleMultiObsEnv) else "MlpPolicy",
        env,
        replay_buffer_class=buffer_class,
        replay_buffer_kwargs=None if buffer_class is None else dict(alpha=0.6, beta=0.4, final_beta=1.0),
        seed=0,
        **{**FAST, **kwargs},
    )


def test_n_steps_and_gamma_are_passed_to_the_prioritized_buffer():
    model = _model(n_steps=3, gamma=0.95)
    assert isinstance(model.replay_buffer, PrioritizedReplayBuffer)
    assert (model.replay_buffer.n_steps, model.replay_buffer.gamma, model.replay_buffer.alpha) == (3, 0.95, 0.6)


def test_dict_observations_with_n_steps():
    prioritized = _model(SimpleMultiObsEnv(discrete_actions=False), buffer_class=PrioritizedDictReplayBuffer, n_steps=3)
    uniform = _model(SimpleMultiObsEnv(discrete_actions=False), buffer_class=None, n_steps=3)
    assert isinstance(uniform.replay_buffer, NStepDictReplayBuffer) and uniform.replay_buffer.n_steps == 3
    for model in (prioritized, uniform):
        model.learn(150)
        assert model._n_updates == 100


def test_priorities_handed_back_are_the_td_errors_of_the_update(monkeypatch):
    model = _model(n_steps=2, policy_kwargs=dict(net_arch=[16], n_critics=2))
    model.learn(100)
    recorded = {}
    sample, critic_loss = model.replay_buffer.sample, model.critic.loss

    def recording_sample(*args, **kwargs):
        recorded["batch"] = sample(*args, **kwargs)
        return recorded["batch"]

    def recording_loss(*args, **kwargs):
        recorded["loss"] = critic_loss(*args, **kwargs)
        return recorded["loss"]

    monkeypatch.setattr(model.replay_buffer, "sample", recording_sample)
    monkeypatch.setattr(model.critic, "loss", recording_loss)
    model.train(gradient_steps=1, batch_size=32)
    batch, errors = recorded["batch"], recorded["loss"].errors
    priorities = errors.mean(dim=1)  # PER: the mean over the critics
    # Repeated slots keep the value written last.
    _, last = np.unique(batch.indices[::-1], return_index=True)
    last = len(batch.indices) - 1 - last
    expected = (priorities.numpy()[last] + model.replay_buffer.priorities.eps) ** 0.6
    np.testing.assert_allclose(model.replay_buffer.priorities.tree[batch.indices[last]], expected, rtol=1e-6)


def test_critic_loss_is_importance_weighted():
    model = _model(policy_kwargs=dict(net_arch=[16], n_critics=2))
    model.learn(60)
    batch = model.replay_buffer.sample(32)
    weights = th.linspace(0.1, 1.0, 32).view(-1, 1)
    weighted = PrioritizedReplayBufferSamples(*batch[:-2], weights=weights, indices=batch.indices)
    _, _, target, (loss, errors, *_) = outputs_target_and_loss(model, weighted)
    q1, q2 = model.critic(batch.observations, batch.actions)
    per_sample = (q1 - target).square() + (q2 - target).square()
    th.testing.assert_close(loss, (weights * per_sample).mean())
    th.testing.assert_close(errors, th.cat([(q1 - target).abs(), (q2 - target).abs()], dim=1))


def test_beta_is_annealed_over_learn_and_metrics_are_logged(tmp_path):
    model = _model()
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(600, log_interval=1)
    # The last update runs after the last step: beta has reached final_beta.
    assert model.replay_buffer.beta == 1.0
    rows = [line.split(",") for line in (tmp_path / "progress.csv").read_text().splitlines()]
    logged = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    for key in ("train/td_error_mean", "train/priority_mean", "train/priority_max", "train/is_weight_mean", "train/beta"):
        assert key in rows[0], key
    # Logs are written at each episode end, before that step's update: beta is that of step t - 1.
    for row in logged:
        steps = int(row["time/total_timesteps"])
        assert float(row["train/beta"]) == pytest.approx(0.4 + 0.6 * (steps - 1) / 600)


def test_replay_buffer_save_load_keeps_priorities_and_training_continues(tmp_path):
    model = _model(n_steps=3)
    model.learn(300)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    model.save(tmp_path / "model.zip")
    saved = model.replay_buffer

    loaded = DDPGExt.load(tmp_path / "model.zip", env=model.get_env())
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    buffer = loaded.replay_buffer
    assert isinstance(buffer, PrioritizedReplayBuffer) and buffer is not saved
    np.testing.assert_array_equal(buffer.priorities.tree._nodes, saved.priorities.tree._nodes)
    assert (buffer.max_priority, buffer.beta, buffer.alpha, buffer.n_steps, buffer.pos) == (
        saved.max_priority,
        saved.beta,
        saved.alpha,
        saved.n_steps,
        saved.pos,
    )
    np.testing.assert_array_equal(buffer.observations, saved.observations)
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded._n_updates == model._n_updates + 100


def test_loaded_model_rebuilds_a_prioritized_buffer(tmp_path):
    model = _model(n_steps=3)
    model.save(tmp_path / "model.zip")
    loaded = DDPGExt.load(tmp_path / "model.zip", env=model.get_env())
    assert isinstance(loaded.replay_buffer, PrioritizedReplayBuffer) and loaded.replay_buffer.n_steps == 3


def test_vectorized_envs_and_vec_normalize():
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = _model(env, n_steps=3)
    model.learn(200)
    assert model.replay_buffer.priorities.tree.capacity == 1_000
    assert model._n_updates == (200 - 52) // 2 + 1
