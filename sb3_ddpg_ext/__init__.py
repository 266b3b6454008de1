"""sb3-ddpg-ext: DDPG and its modern extensions as a drop-in Stable-Baselines3 algorithm."""

from sb3_ddpg_ext import presets
from sb3_ddpg_ext.common.buffers import (
    NStepDictReplayBuffer,
    PrioritizedDictReplayBuffer,
    PrioritizedReplayBuffer,
    UniformReplayBuffer,
)
from sb3_ddpg_ext.common.noise import AdaptiveParamNoise, ScheduledActionNoise
from sb3_ddpg_ext.ddpg_ext import CnnPolicy, DDPGExt, DDPGExtPolicy, MlpPolicy, MultiInputPolicy
from sb3_ddpg_ext.version import __version__

__all__ = [
    "AdaptiveParamNoise",
    "CnnPolicy",
    "DDPGExt",
    "DDPGExtPolicy",
    "MlpPolicy",
    "MultiInputPolicy",
    "NStepDictReplayBuffer",
    "PrioritizedDictReplayBuffer",
    "PrioritizedReplayBuffer",
    "ScheduledActionNoise",
    "UniformReplayBuffer",
    "__version__",
    "presets",
]
