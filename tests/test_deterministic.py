"""The same seed gives the same result; another seed gives another."""

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.noise import NormalActionNoise

from sb3_ddpg_ext import DDPGExt


def _run(seed, n_envs=1, **kwargs):
    env = make_vec_env("Pendulum-v1", n_envs=n_envs)
    model = DDPGExt(
        "MlpPolicy",
        env,
        seed=seed,
        learning_starts=50,
        batch_size=32,
        policy_kwargs=dict(net_arch=[16]),
        action_noise=NormalActionNoise(np.zeros(1), 0.3 * np.ones(1)),
        **kwargs,
    )
    model.learn(250)
    observations = np.linspace(-1, 1, 30, dtype=np.float32).reshape(10, 3)
    return model.predict(observations, deterministic=True)[0], model.replay_buffer.rewards.copy()


@pytest.mark.parametrize(
    "kwargs", [dict(), dict(n_envs=2, n_steps=3, policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5)]
)
def test_same_seed_same_result(kwargs):
    actions, rewards = _run(seed=7, **kwargs)
    again, rewards_again = _run(seed=7, **kwargs)
    np.testing.assert_array_equal(actions, again)
    np.testing.assert_array_equal(rewards, rewards_again)
    other, _ = _run(seed=8, **kwargs)
    assert not np.array_equal(actions, other)
