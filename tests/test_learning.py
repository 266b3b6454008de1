"""DDPGExt learns: short Pendulum runs go from random (about -1200) to a swing-up policy."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise

from sb3_ddpg_ext import DDPGExt, PrioritizedReplayBuffer

TD3 = dict(policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5)
CATEGORICAL = dict(critic="categorical", n_atoms=51, v_min=-1500.0, v_max=0.0)


@pytest.mark.parametrize(
    "n_envs,steps,extensions,policy_kwargs",
    [
        (1, 5_000, {}, {}),
        (1, 5_000, dict(replay_buffer_class=PrioritizedReplayBuffer, n_steps=3), {}),
        (2, 5_000, dict(replay_buffer_class=PrioritizedReplayBuffer, n_steps=3), {}),
        # The delayed actor of TD3 needs more steps (measured -860 after 5000, -131 after 8000).
        (1, 8_000, TD3, dict(n_critics=2)),
        (1, 5_000, {}, CATEGORICAL),
    ],
    ids=["ddpg", "per-nstep", "per-nstep-2envs", "td3", "categorical"],
)
def test_learns_pendulum_in_a_short_run(n_envs, steps, extensions, policy_kwargs):
    model = DDPGExt(
        "MlpPolicy",
        make_vec_env("Pendulum-v1", n_envs=n_envs, seed=0),
        policy_kwargs=dict(net_arch=[64, 64], **policy_kwargs),
        learning_starts=500,
        batch_size=128,
        gradient_steps=-1,  # one update per collected transition, whatever n_envs
        action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
        seed=0,
        **extensions,
    )
    model.learn(steps)
    eval_env = gym.wrappers.RecordEpisodeStatistics(gym.make("Pendulum-v1"))
    eval_env.reset(seed=123)
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=5)
    # Measured between -117 and -155 over 2-4 seeds for each setting; an agent that has not learned stays near -1200.
    assert mean_return > -300
