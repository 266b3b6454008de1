"""
The networks' side of DDPGExt's update: the specification (autograd), and the interface a fast backend implements.

:meth:`DDPGExt.train <sb3_ddpg_ext.ddpg_ext.ddpg_ext.DDPGExt.train>` runs the algorithm in the paper's order and
leaves three things to an :class:`UpdateBackend`: the critics' outputs for ``(s, a)`` and the target critics' for
``(s', a')``, one optimizer step of the critics on a :class:`~sb3_ddpg_ext.ddpg_ext.critics.CriticLoss`, and one
optimizer step of the actor. :class:`AutogradUpdate` is the specification, as SB3's ``TD3.train`` writes it;
:class:`~sb3_ddpg_ext.ddpg_ext.fast_update.FastUpdate` computes the same with gradients derived by hand, and the tests
check that both give the same weights from the same batches.
"""

import contextlib
from dataclasses import dataclass
from typing import Protocol

import torch as th
from stable_baselines3.common.type_aliases import PyTorchObs, ReplayBufferSamples
from stable_baselines3.common.utils import get_parameters_by_name

from sb3_ddpg_ext.common.torch_kernels import lerp_
from sb3_ddpg_ext.common.torch_utils import concatenate_observations, evaluation_mode
from sb3_ddpg_ext.ddpg_ext.critics import CriticLoss
from sb3_ddpg_ext.ddpg_ext.policies import DDPGExtPolicy


@dataclass(frozen=True)
class TargetSmoothing:
    """
    TD3's target policy smoothing: ``clip(mu'(s') + clip(eps, -c, c), -1, 1)`` with ``eps ~ N(0, sigma^2)``.

    :param noise: ``sigma``; 0 switches smoothing off
    :param clip: ``c``; 0 means no clipping of the noise
    """

    noise: float = 0.0
    clip: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.noise > 0

    def __call__(self, actions: th.Tensor) -> th.Tensor:
        """
        :param actions: target actions, ``(batch, action_dim)``, scaled to [-1, 1]; the noise is drawn in that order
            whatever the tensor's memory layout, so that every backend draws the same noise for the same element
        """
        if not self.enabled:
            return actions
        noise = th.randn(actions.shape, dtype=actions.dtype, device=actions.device) * self.noise
        if self.clip > 0:
            noise = noise.clamp(-self.clip, self.clip)
        return (actions + noise).clamp(-1.0, 1.0)


class UpdateBackend(Protocol):
    """The network passes and optimizer steps of one gradient step, in the order :meth:`DDPGExt.train` calls them."""

    def critic_outputs(self, batch: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor]:
        """
        :return: the critics' outputs for ``(s, a)`` (with what :meth:`step_critics` needs to differentiate them)
            and the target critics' for ``(s', smoothed mu'(s'))``, without; both ``(batch, n_critics, n_outputs)``
        """
        ...

    def step_critics(self, loss: CriticLoss) -> None:
        """One optimizer step of the critics on ``loss`` (computed from the last :meth:`critic_outputs`)."""
        ...

    def step_actor(self, observations: PyTorchObs) -> th.Tensor:
        """One optimizer step of the actor on ``-mean Q_1(s, mu(s))``; returns that loss (no graph)."""
        ...


class AutogradUpdate:
    """
    The specification of the update's network side, with autograd (SB3's ``TD3.train``): it runs every policy.

    With target networks the critic sees ``(s, a)`` and the target critic ``(s', a')``. Without them (CrossQ, declared
    by the policy's ``target_networks=False``, which ``batch_norm=True`` implies) the critic evaluates both batches in
    one forward pass in training mode, so that its BatchRenorm statistics describe their mixture, and the target
    actions come from the actor itself in evaluation mode.

    The optimizers and parameters are read from the policy at each call: a replaced optimizer takes effect at once.

    :param policy: the algorithm's policy
    :param smoothing: TD3's target policy smoothing
    """

    def __init__(self, policy: DDPGExtPolicy, smoothing: TargetSmoothing):
        self.policy = policy
        self.smoothing = smoothing

    def critic_outputs(self, batch: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor]:
        policy = self.policy
        with th.no_grad():
            next_actions = self.smoothing(self._target_actions(batch.next_observations))
        if policy.target_networks:
            outputs = th.stack(policy.critic(batch.observations, batch.actions), dim=1)
            with th.no_grad():
                next_outputs = th.stack(policy.critic_target(batch.next_observations, next_actions), dim=1)
            return outputs, next_outputs
        joint_observations = concatenate_observations(batch.observations, batch.next_observations)
        joint_outputs = th.stack(policy.critic(joint_observations, th.cat([batch.actions, next_actions])), dim=1)
        outputs, next_outputs = joint_outputs.split(batch.actions.shape[0])
        return outputs, next_outputs.detach()

    def _target_actions(self, next_observations: PyTorchObs) -> th.Tensor:
        if self.policy.target_networks:
            return self.policy.actor_target(next_observations)
        with evaluation_mode(self.policy.actor):  # the actor itself, its statistics left as they are
            return self.policy.actor(next_observations)

    def step_critics(self, loss: CriticLoss) -> None:
        optimizer = self.policy.critic.optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.loss.backward()
        optimizer.step()

    def step_actor(self, observations: PyTorchObs) -> th.Tensor:
        actor_loss = self.actor_loss(observations)
        optimizer = self.policy.actor.optimizer
        optimizer.zero_grad(set_to_none=True)
        # Gradients for the actor's parameters only: the critic's weight gradients would be computed through the
        # actor loss and thrown away (one large product per critic layer).
        actor_loss.backward(inputs=[parameter for group in optimizer.param_groups for parameter in group["params"]])
        optimizer.step()
        return actor_loss.detach()

    def actor_loss(self, observations: PyTorchObs) -> th.Tensor:
        """The deterministic policy gradient's loss: ``-mean Q_1(s, mu(s))`` (TD7: the mean over all critics)."""
        critic = self.policy.critic
        actions = self.policy.actor(observations)
        # Without target networks (CrossQ) the critic is evaluated with its running statistics here, as sb3-contrib does.
        with contextlib.nullcontext() if self.policy.target_networks else evaluation_mode(critic):
            return -critic.q_values(critic.actor_q_outputs(observations, actions)).mean()


class TargetAveraging:
    """
    Polyak averaging of the target networks, ``target <- target + tau (online - target)``,
    with running statistics (BatchNorm/BatchRenorm) copied, not averaged (SB3 issue #996). Nothing to do without
    target networks.

    :param policy: the policy whose networks are paired now (build a new one when they are replaced)
    """

    def __init__(self, policy: DDPGExtPolicy):
        self.online: list[th.Tensor] = []
        self.targets: list[th.Tensor] = []
        self.online_statistics: list[th.Tensor] = []
        self.target_statistics: list[th.Tensor] = []
        if policy.target_networks:
            for network, target in ((policy.critic, policy.critic_target), (policy.actor, policy.actor_target)):
                self.online += network.parameters()
                self.targets += target.parameters()
                self.online_statistics += get_parameters_by_name(network, ["running_"])
                self.target_statistics += get_parameters_by_name(target, ["running_"])

    @th.no_grad()
    def update(self, tau: float) -> None:
        lerp_(self.targets, self.online, tau)
        for target, online in zip(self.target_statistics, self.online_statistics, strict=True):
            target.copy_(online)
