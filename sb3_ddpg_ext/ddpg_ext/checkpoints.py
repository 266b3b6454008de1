"""
TD7's policy checkpoints (Fujimoto et al. 2023, https://arxiv.org/abs/2306.02451, section 5), on SB3's training loop.

The policy is held fixed while it is assessed over training episodes; the assessment ends after ``max_episodes``
episodes, or as soon as one of them returns less than the best checkpoint's minimum (it cannot beat it then). An
assessment that ends without such an episode makes this policy the checkpoint (its minimum return becomes the bar);
then the updates deferred during the assessment run, as many as SB3 asked for meanwhile. Early in training the
assessment is one episode; after ``steps_before_checkpointing`` updates it grows to ``max_episodes`` and the bar is
lowered by ``reset_weight`` (TD7's schedule).

With several envs, an episode counts only if it ran entirely under the assessed policy; its steps count for the
updates either way.
"""

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from sb3_ddpg_ext.common.torch_utils import evaluation_mode
from sb3_ddpg_ext.common.validation import (
    InvalidTypeError,
    accepted_keyword_arguments,
    check_int,
    check_known_keys,
    check_range,
)
from sb3_ddpg_ext.ddpg_ext.actor import Actor
from sb3_ddpg_ext.ddpg_ext.encoders import SaleEncoder

if TYPE_CHECKING:
    from sb3_ddpg_ext.ddpg_ext.policies import DDPGExtPolicy


class PolicyCheckpoints:
    """
    The assessment of the current policy and the decision to checkpoint it. Its state is plain numbers, saved and
    loaded with the model.

    :param max_episodes: episodes per assessment once ``steps_before_checkpointing`` updates are done (TD7: 20)
    :param steps_before_checkpointing: updates with one-episode assessments first (TD7: 750,000)
    :param reset_weight: factor on the best minimum return when the assessments grow (TD7: 0.9)
    """

    def __init__(self, max_episodes: int = 20, steps_before_checkpointing: int = 750_000, reset_weight: float = 0.9):
        check_int("max_episodes", max_episodes, 1)
        check_int("steps_before_checkpointing", steps_before_checkpointing, 0)
        check_range("reset_weight", reset_weight, low=0.0, high=1.0)
        self.max_episodes = max_episodes
        self.steps_before_checkpointing = steps_before_checkpointing
        self.reset_weight = reset_weight
        self.episodes_per_assessment = 1 if steps_before_checkpointing > 0 else max_episodes
        self.best_min_return = -math.inf
        self.min_return = math.inf
        self.episodes = 0
        self.deferred_updates = 0
        self.checkpoints_taken = 0
        self._version = 0
        self._returns: np.ndarray | None = None
        self._lengths: np.ndarray | None = None
        self._started_in: np.ndarray | None = None  # the policy version each env's current episode started under

    def record(self, rewards: np.ndarray, dones: np.ndarray, from_policy: bool) -> None:
        """
        One env step of every env: add the rewards to the running episode returns; an episode that ends counts in
        the assessment when all its steps were taken by the assessed policy.

        :param rewards: the envs' (unnormalised) rewards
        :param dones: whether their episodes ended
        :param from_policy: whether the actions came from the policy (not SB3's random warm-up)
        """
        rewards, dones = np.asarray(rewards, dtype=np.float64).reshape(-1), np.asarray(dones, dtype=bool).reshape(-1)
        if self._returns is None or self._returns.shape != rewards.shape:
            self._returns = np.zeros_like(rewards)
            self._lengths = np.zeros(rewards.shape, dtype=np.int64)
            self._started_in = np.full(rewards.shape, -1)
        assert self._lengths is not None and self._started_in is not None
        self._started_in[self._lengths == 0] = self._version
        if not from_policy:
            self._started_in[:] = -1
        self._returns += rewards
        self._lengths += 1
        for env in np.flatnonzero(dones):
            if self._started_in[env] == self._version:
                self.episodes += 1
                self.min_return = min(self.min_return, float(self._returns[env]))
            self._returns[env], self._lengths[env] = 0.0, 0

    def cut_episodes(self) -> None:
        """The envs' running episodes ended without their last steps (a resumed run restarts its envs): none counts."""
        if self._returns is not None and self._lengths is not None:
            self._returns[:] = 0.0
            self._lengths[:] = 0

    @property
    def assessment_over(self) -> bool:
        """An episode fell below the bar, or the assessment has its episodes."""
        return self.min_return < self.best_min_return or self.episodes >= self.episodes_per_assessment

    def defer(self, gradient_steps: int) -> int:
        """
        SB3 asks for ``gradient_steps`` updates: keep them while the assessment runs (0 now), or release all of them
        when it is over (then call :meth:`conclude` first, with the policy that was assessed).
        """
        self.deferred_updates += gradient_steps
        if not self.assessment_over:
            return 0
        released, self.deferred_updates = self.deferred_updates, 0
        return released

    def updates_to_run(self, gradient_steps: int, policy: "DDPGExtPolicy") -> int:
        """
        The updates to run now of the ``gradient_steps`` SB3 asks for: none while the assessment runs; at its end all
        the deferred ones, after the assessed policy became ``policy``'s checkpoint if it earned it.
        """
        released = self.defer(gradient_steps)
        if released and self.conclude():
            policy.checkpoint.take(policy.actor)
        return released

    def conclude(self) -> bool:
        """End the assessment; whether the assessed policy becomes the checkpoint."""
        better = self.min_return >= self.best_min_return and self.episodes >= self.episodes_per_assessment
        if better:
            self.best_min_return = self.min_return
            self.checkpoints_taken += 1
        self.min_return, self.episodes = math.inf, 0
        self._version += 1  # the episodes running now started under the assessed policy: they no longer count
        return better

    def after_updates(self, n_updates_before: int, n_updates: int) -> None:
        """TD7's schedule: past ``steps_before_checkpointing`` updates, longer assessments and a lowered bar."""
        if n_updates_before < self.steps_before_checkpointing <= n_updates:
            self.best_min_return *= self.reset_weight
            self.episodes_per_assessment = self.max_episodes


def make_policy_checkpoints(setting: bool | dict[str, Any]) -> PolicyCheckpoints | None:
    """``policy_checkpoints``: False (none), True (TD7's schedule) or a dict of :class:`PolicyCheckpoints` arguments."""
    if isinstance(setting, bool):
        return PolicyCheckpoints() if setting else None
    if isinstance(setting, dict):
        check_known_keys("policy_checkpoints", setting, accepted_keyword_arguments(PolicyCheckpoints))
        return PolicyCheckpoints(**setting)
    raise InvalidTypeError(f"`policy_checkpoints` must be a bool or a dict, got {setting!r}")


class CheckpointActor(nn.Module):
    """
    The checkpoint policy: a copy of the actor (with SALE, of the fixed encoder too), always in evaluation mode and
    never trained. :meth:`take` copies the assessed policy into it; until then :attr:`taken` is False and the policy
    acts with its current actor.

    :param actor: a new actor of the policy's kind, to hold the copy
    :param encoder: a new SALE encoder for it, or None without SALE
    """

    taken: th.Tensor

    def __init__(self, actor: Actor, encoder: SaleEncoder | None = None):
        super().__init__()
        self.actor = actor
        self.encoder = encoder
        actor.use_encoder(encoder)
        self.requires_grad_(False)
        self.register_buffer("taken", th.tensor(False))

    @th.no_grad()
    def take(self, actor: Actor) -> None:
        """Copy ``actor`` (and the fixed encoder it reads) into the checkpoint."""
        self.actor.load_state_dict(actor.state_dict())
        if self.encoder is not None:
            assert actor.sale is not None
            self.encoder.load_state_dict(actor.sale.state_dict())
        self.taken.fill_(True)

    def forward(self, observations: PyTorchObs) -> th.Tensor:
        with evaluation_mode(self.actor):
            return self.actor(observations)
