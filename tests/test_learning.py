"""DDPGExt learns: short Pendulum runs go from random (about -1200) to a swing-up policy."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise

from sb3_ddpg_ext import DDPGExt, PrioritizedReplayBuffer


@pytest.mark.parametrize(
    "n_envs,extensions",
    [
        (1, {}),
        (1, dict(replay_buffer_class=PrioritizedReplayBuffer, n_steps=3)),
        (2, dict(replay_buffer_class=PrioritizedReplayBuffer, n_steps=3)),
    ],
    ids=["ddpg", "per-nstep", "per-nstep-2envs"],
)
def test_learns_pendulum_in_5000_steps(n_envs, extensions):
    model = DDPGExt(
        "MlpPolicy",
        make_vec_env("Pendulum-v1", n_envs=n_envs, seed=0),
        policy_kwargs=dict(net_arch=[64, 64]),
        learning_starts=500,
        batch_size=128,
        gradient_steps=-1,  # one update per collected transition, whatever n_envs
        action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
        seed=0,
        **extensions,
    )
    model.learn(5_000)
    eval_env = gym.wrappers.RecordEpisodeStatistics(gym.make("Pendulum-v1"))
    eval_env.reset(seed=123)
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=5)
    # Measured between -117 and -155 over 4 seeds for each setting; an agent that has not learned stays near -1200.
    assert mean_return > -300
