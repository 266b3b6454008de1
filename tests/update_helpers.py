"""The update's specification, called piece by piece on one batch (as DDPGExt.train calls it)."""

import torch as th

from sb3_ddpg_ext import DDPGExt
from sb3_ddpg_ext.ddpg_ext.critics import CriticLoss
from sb3_ddpg_ext.ddpg_ext.update import AutogradUpdate, TargetSmoothing


def specification(model: DDPGExt) -> AutogradUpdate:
    return AutogradUpdate(model.policy, TargetSmoothing(model.target_policy_noise, model.target_noise_clip))


def outputs_target_and_loss(model: DDPGExt, batch) -> tuple[th.Tensor, th.Tensor, th.Tensor, CriticLoss]:
    """The critics' outputs, the target critics' outputs, the TD target and the critic loss of ``batch``."""
    outputs, next_outputs = specification(model).critic_outputs(batch)
    target = model.critic.td_target(next_outputs, batch.rewards, model._bootstrap_discounts(batch))
    return outputs, next_outputs, target, model.critic.loss(outputs, target, getattr(batch, "weights", None))
