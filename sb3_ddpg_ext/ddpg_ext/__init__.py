from sb3_ddpg_ext.ddpg_ext.ddpg_ext import DDPGExt
from sb3_ddpg_ext.ddpg_ext.policies import CnnPolicy, DDPGExtPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["CnnPolicy", "DDPGExt", "DDPGExtPolicy", "MlpPolicy", "MultiInputPolicy"]
