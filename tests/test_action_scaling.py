"""The compiled rescaling gives the float32 numbers of SB3's unscale_action / scale_action."""

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy

from sb3_ddpg_ext.common.action_scaling import rescaled_actions


def test_the_same_floats_as_sb3s_numpy_operations():
    rng = np.random.default_rng(0)
    low = np.array([-1.0, -2.5, 0.1, -100.0, 3.0], dtype=np.float32)
    high = np.array([1.0, 0.7, 0.3, 250.0, 3.0001], dtype=np.float32)
    space = spaces.Box(low, high, dtype=np.float32)
    outputs = np.tanh(rng.normal(size=(1000, 5)) * 3).astype(np.float32)
    outputs[:4] = [[-1.0] * 5, [1.0] * 5, [0.0] * 5, [0.5] * 5]

    # SB3's methods, called on a stand-in that has just the action space they read.
    policy = type("Policy", (), {"action_space": space})()
    buffer_actions = BasePolicy.scale_action(policy, BasePolicy.unscale_action(policy, outputs))  # type: ignore[arg-type]
    env_actions = BasePolicy.unscale_action(policy, buffer_actions)  # type: ignore[arg-type]

    ours = rescaled_actions(outputs, low, high)
    np.testing.assert_array_equal(ours[1], buffer_actions)
    np.testing.assert_array_equal(ours[0], env_actions)
    assert ours[0].dtype == ours[1].dtype == np.float32 == buffer_actions.dtype
