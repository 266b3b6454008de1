"""DDPGExt runs everywhere SB3's DDPG runs: policies, spaces, VecEnvs, wrappers, buffers, logging."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import HerReplayBuffer
from stable_baselines3.common.buffers import NStepReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import BitFlippingEnv, FakeImageEnv, SimpleMultiObsEnv
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecNormalize

from sb3_ddpg_ext import DDPGExt, UniformReplayBuffer

TINY = dict(net_arch=[32, 32])
FAST = dict(learning_starts=50, batch_size=32, buffer_size=2_000)


def test_mlp_learn_and_predict_are_deterministic_and_in_bounds():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=TINY, seed=0, **FAST)
    model.learn(200)
    assert model._n_updates > 0
    obs = model.env.observation_space.sample()
    action, _ = model.predict(obs, deterministic=True)
    again, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(action, again)
    assert model.action_space.contains(action.astype(np.float32))


def test_default_is_one_critic_with_targets_and_400_300_networks():
    model = DDPGExt("MlpPolicy", "Pendulum-v1")
    assert model.critic.n_critics == 1
    assert [layer.out_features for layer in model.actor.mu if isinstance(layer, th.nn.Linear)] == [400, 300, 1]
    for online, target in ((model.actor, model.actor_target), (model.critic, model.critic_target)):
        for p, q in zip(online.parameters(), target.parameters(), strict=True):
            assert th.equal(p, q) and p is not q
    assert (model.learning_rate, model.batch_size, model.tau, model.gamma, model.learning_starts) == (
        1e-3,
        256,
        0.005,
        0.99,
        100,
    )


def test_policy_device_is_resolved_once_and_reset_when_the_policy_is_moved():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=TINY, **FAST)
    policy = model.policy
    assert policy.device == th.device("cpu")
    assert policy.__dict__["_first_parameter"] is next(policy.parameters())
    policy.to(th.float64)  # _apply: the cached parameter is dropped, the next call resolves it again
    assert "_first_parameter" not in policy.__dict__
    assert policy.device == th.device("cpu") and policy.__dict__["_first_parameter"].dtype == th.float64
    assert "_first_parameter" not in policy.state_dict()


def test_action_bounds_other_than_unit_are_respected():
    env = gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), min_action=np.float32(-0.5), max_action=np.float32(3.0))
    model = DDPGExt(
        "MlpPolicy", env, policy_kwargs=TINY, seed=1, action_noise=NormalActionNoise(np.zeros(1), np.ones(1)), **FAST
    )
    model.learn(150)
    actions = model.replay_buffer.actions[: model.replay_buffer.pos, 0]
    # The buffer stores actions scaled to [-1, 1]; predict() returns them in the env's bounds.
    assert actions.min() >= -1.0 and actions.max() <= 1.0
    predicted = np.array([model.predict(env.observation_space.sample(), deterministic=True)[0] for _ in range(50)])
    assert predicted.min() >= -0.5 and predicted.max() <= 3.0


@pytest.mark.parametrize("vec_env_cls", [DummyVecEnv, SubprocVecEnv])
def test_multiple_envs(vec_env_cls):
    env = make_vec_env("Pendulum-v1", n_envs=2, vec_env_cls=vec_env_cls, seed=0)
    model = DDPGExt(
        "MlpPolicy", env, policy_kwargs=TINY, action_noise=OrnsteinUhlenbeckActionNoise(np.zeros(1), np.ones(1) * 0.1), **FAST
    )
    model.learn(200)
    assert model.num_timesteps >= 200
    assert model.replay_buffer.n_envs == 2
    env.close()


def test_vec_normalize_stores_raw_observations_and_trains():
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0), gamma=0.99)
    model = DDPGExt("MlpPolicy", env, policy_kwargs=TINY, **FAST)
    model.learn(200)
    stored = model.replay_buffer.observations[: model.replay_buffer.pos].reshape(-1, 3)
    # Pendulum's raw observation is (cos, sin, angular velocity): the buffer keeps it unnormalised.
    np.testing.assert_allclose(stored[:, 0] ** 2 + stored[:, 1] ** 2, 1.0, rtol=1e-5)
    assert model._vec_normalize_env is env


def test_dict_observations_with_multi_input_policy():
    env = SimpleMultiObsEnv(random_start=False, discrete_actions=False)
    model = DDPGExt("MultiInputPolicy", env, policy_kwargs=TINY, **FAST)
    model.learn(150)
    action, _ = model.predict(env.observation_space.sample(), deterministic=True)
    assert action.shape == env.action_space.shape


def test_image_observations_with_cnn_policy():
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=1, discrete=False)
    model = DDPGExt(
        "CnnPolicy",
        env,
        policy_kwargs=dict(net_arch=[16], features_extractor_kwargs=dict(features_dim=16)),
        learning_starts=20,
        batch_size=8,
        buffer_size=200,
    )
    model.learn(40)
    assert model._n_updates > 0
    assert type(model.actor.features_extractor).__name__ == "NatureCNN"


@pytest.mark.parametrize("goal_selection_strategy", ["future", "final"])
def test_her_with_goal_conditioned_env(goal_selection_strategy):
    env = BitFlippingEnv(n_bits=4, continuous=True, max_steps=4)
    model = DDPGExt(
        "MultiInputPolicy",
        env,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs=dict(n_sampled_goal=2, goal_selection_strategy=goal_selection_strategy),
        policy_kwargs=TINY,
        **FAST,
    )
    model.learn(150)
    assert isinstance(model.replay_buffer, HerReplayBuffer)
    assert model._n_updates > 0


def test_n_steps_are_passed_to_the_default_buffer():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", n_steps=3, gamma=0.9, policy_kwargs=TINY, **FAST)
    assert isinstance(model.replay_buffer, UniformReplayBuffer)
    assert (model.replay_buffer.n_steps, model.replay_buffer.gamma) == (3, 0.9)
    model.learn(150)
    samples = model.replay_buffer.sample(64)
    assert samples.discounts is not None
    assert th.all(samples.discounts <= 0.9**1 + 1e-6) and th.all(samples.discounts >= 0.9**3 - 1e-6)


def test_n_steps_is_passed_to_a_custom_buffer_class_that_takes_it():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", n_steps=4, replay_buffer_class=NStepReplayBuffer, policy_kwargs=TINY, **FAST)
    assert model.replay_buffer.n_steps == 4


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        dict(net_arch=dict(pi=[16], qf=[32, 32])),
        dict(net_arch=[16], activation_fn=th.nn.Tanh, n_critics=2),
        dict(net_arch=[16], share_features_extractor=True),
        dict(net_arch=[16], normalize_images=False, optimizer_class=th.optim.AdamW, optimizer_kwargs=dict(weight_decay=0.01)),
    ],
)
def test_policy_kwargs(policy_kwargs):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs, **FAST)
    model.learn(100)
    if isinstance(policy_kwargs["net_arch"], dict):
        assert [m.out_features for m in model.actor.mu if isinstance(m, th.nn.Linear)] == [16, 1]
        assert [m.out_features for m in model.critic.qf0 if isinstance(m, th.nn.Linear)] == [32, 32, 1]
    if "n_critics" in policy_kwargs:
        assert len(model.critic.q_networks) == 2
    if "optimizer_class" in policy_kwargs:
        assert isinstance(model.actor.optimizer, th.optim.AdamW)
        assert model.critic.optimizer.defaults["weight_decay"] == 0.01


@pytest.mark.parametrize("train_freq,gradient_steps", [((1, "episode"), -1), (4, 2), (1, 0)])
def test_train_freq_and_gradient_steps(train_freq, gradient_steps):
    model = DDPGExt(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=TINY, train_freq=train_freq, gradient_steps=gradient_steps, **FAST
    )
    model.learn(400)
    if gradient_steps == -1:
        # One gradient step per env step of each finished 200-step episode after learning_starts.
        assert model._n_updates == 400
    elif gradient_steps == 2:
        assert model._n_updates == 2 * ((400 - 52) // 4 + 1)
    else:
        assert model._n_updates == 0


def test_learning_rate_schedule_is_applied():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=TINY, learning_rate=LinearSchedule(1e-3, 0.0, 1.0), **FAST)
    model.learn(200)
    for optimizer in (model.actor.optimizer, model.critic.optimizer):
        assert optimizer.param_groups[0]["lr"] < 1e-3 * 0.5


def test_progress_bar():
    model = DDPGExt("MlpPolicy", "Pendulum-v1", policy_kwargs=TINY, **FAST)
    model.learn(100, progress_bar=True)
    assert model.num_timesteps == 100


def test_optimize_memory_usage():
    # As in SB3, the memory-saving layout cannot tell timeouts apart.
    model = DDPGExt(
        "MlpPolicy",
        "Pendulum-v1",
        optimize_memory_usage=True,
        replay_buffer_kwargs=dict(handle_timeout_termination=False),
        policy_kwargs=TINY,
        **FAST,
    )
    model.learn(150)
    assert model.replay_buffer.optimize_memory_usage and not hasattr(model.replay_buffer, "next_observations")
    assert model._n_updates == 100
