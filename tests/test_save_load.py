"""Saved models and buffers load back whole, and training continues from them."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.envs import SimpleMultiObsEnv

from sb3_ddpg_ext import DDPGExt, UniformReplayBuffer

FAST = dict(learning_starts=50, batch_size=32, buffer_size=1_000)


def _observations(model, n=20):
    rng = np.random.default_rng(0)
    space = model.observation_space
    space.seed(int(rng.integers(1_000)))
    return [space.sample() for _ in range(n)]


@pytest.mark.parametrize(
    "env,policy,kwargs",
    [
        (
            "Pendulum-v1",
            "MlpPolicy",
            dict(policy_kwargs=dict(net_arch=[32, 32], n_critics=2), policy_delay=2, target_policy_noise=0.1),
        ),
        ("Pendulum-v1", "MlpPolicy", dict(policy_kwargs=dict(net_arch=[16]), n_steps=3)),
        (SimpleMultiObsEnv(discrete_actions=False), "MultiInputPolicy", dict(policy_kwargs=dict(net_arch=[16]))),
    ],
)
def test_save_load_restores_everything(tmp_path, env, policy, kwargs):
    model = DDPGExt(policy, env, seed=0, **FAST, **kwargs)
    model.learn(120)
    model.save(tmp_path / "model.zip")
    loaded = DDPGExt.load(tmp_path / "model.zip", env=model.get_env())

    for key, tensor in model.policy.state_dict().items():
        assert th.equal(tensor, loaded.policy.state_dict()[key]), key
    for optimizer, loaded_optimizer in (
        (model.actor.optimizer, loaded.actor.optimizer),
        (model.critic.optimizer, loaded.critic.optimizer),
    ):
        state, loaded_state = optimizer.state_dict()["state"], loaded_optimizer.state_dict()["state"]
        assert state.keys() == loaded_state.keys() and len(state) > 0
        for index in state:
            assert th.equal(state[index]["exp_avg"], loaded_state[index]["exp_avg"])
    for name in (
        "policy_delay",
        "target_policy_noise",
        "target_noise_clip",
        "n_steps",
        "tau",
        "gamma",
        "_n_updates",
        "num_timesteps",
    ):
        assert getattr(loaded, name) == getattr(model, name), name
    for obs in _observations(model):
        np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])

    # The loaded model trains on, with target networks that are separate tensors from the online ones.
    loaded.learn(80, reset_num_timesteps=False)
    assert loaded._n_updates > model._n_updates
    averaging = loaded._update_setup.target_averaging
    assert all(p is not q for p, q in zip(averaging.online, averaging.targets, strict=True))
    assert averaging.targets[0] is next(loaded.critic_target.parameters())


def test_replay_buffer_save_load_round_trip(tmp_path):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", n_steps=3, policy_kwargs=dict(net_arch=[16]), seed=0, **FAST)
    model.learn(150)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    other = DDPGExt("MlpPolicy", "Pendulum-v1", n_steps=3, policy_kwargs=dict(net_arch=[16]), seed=1, **FAST)
    other.load_replay_buffer(tmp_path / "buffer.pkl")
    assert isinstance(other.replay_buffer, UniformReplayBuffer)
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        np.testing.assert_array_equal(getattr(other.replay_buffer, name), getattr(model.replay_buffer, name))
    assert (other.replay_buffer.pos, other.replay_buffer.full, other.replay_buffer.n_steps) == (
        model.replay_buffer.pos,
        False,
        3,
    )
    other.learn(60)
    assert other.replay_buffer.pos == (model.replay_buffer.pos + 60) % FAST["buffer_size"]


def test_dict_replay_buffer_save_load(tmp_path):
    model = DDPGExt("MultiInputPolicy", SimpleMultiObsEnv(discrete_actions=False), policy_kwargs=dict(net_arch=[16]), **FAST)
    model.learn(80)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    model.load_replay_buffer(tmp_path / "buffer.pkl")
    assert isinstance(model.replay_buffer, DictReplayBuffer) and model.replay_buffer.pos == 80


def test_get_and_set_parameters():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]), seed=0, **FAST)
    other = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16]), seed=1, **FAST)
    parameters = model.get_parameters()
    assert {"policy", "actor.optimizer", "critic.optimizer"} <= parameters.keys()
    assert not th.equal(model.actor.mu[0].weight, other.actor.mu[0].weight)
    other.set_parameters(parameters)
    for key, tensor in model.policy.state_dict().items():
        assert th.equal(tensor, other.policy.state_dict()[key]), key
    # Partial, non-exact updates: only the actor's first layer.
    changed = {"policy": {"actor.mu.0.weight": th.zeros_like(model.actor.mu[0].weight)}}
    other.set_parameters(changed, exact_match=False)
    assert th.count_nonzero(other.actor.mu[0].weight) == 0
