"""sb3-ddpg-ext: DDPG and its modern extensions as a drop-in Stable-Baselines3 algorithm."""

from sb3_ddpg_ext.common.buffers import (
    NStepDictReplayBuffer,
    PrioritizedDictReplayBuffer,
    PrioritizedReplayBuffer,
    UniformReplayBuffer,
)
from sb3_ddpg_ext.ddpg_ext import CnnPolicy, DDPGExt, DDPGExtPolicy, MlpPolicy, MultiInputPolicy
from sb3_ddpg_ext.version import __version__

__all__ = [
    "CnnPolicy",
    "DDPGExt",
    "DDPGExtPolicy",
    "MlpPolicy",
    "MultiInputPolicy",
    "NStepDictReplayBuffer",
    "PrioritizedDictReplayBuffer",
    "PrioritizedReplayBuffer",
    "UniformReplayBuffer",
    "__version__",
]
