"""
Exploration noise: action noise whose scale follows a schedule, and adaptive parameter-space noise.

Parameter-space noise (Plappert et al. 2018, https://arxiv.org/abs/1706.01905) explores with a copy of
the actor whose weights are perturbed by Gaussian noise of std ``sigma``. Because the effect of a weight
perturbation on actions is hard to predict, ``sigma`` adapts: the action-space distance
``d = sqrt(mean((mu(s) - mu~(s))^2))`` between the actor and a perturbed copy is measured on replayed
states, and ``sigma`` is multiplied by ``adaptation_coefficient`` when ``d`` is below ``target_distance``
and divided by it otherwise.
"""

import copy
from typing import Any

import numpy as np
import torch as th
from sb3_contrib.common.torch_layers import BatchRenorm
from stable_baselines3.common.noise import ActionNoise, VectorizedActionNoise
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.utils import FloatSchedule
from torch import nn

from sb3_ddpg_ext.common.torch_utils import evaluation_mode
from sb3_ddpg_ext.common.validation import check_int, check_range

# Normalisation layers keep their parameters: perturbing a scale or a shift is not exploring a policy.
# sb3-contrib's BatchRenorm (CrossQ's layer, the base of ours) derives from none of torch's norm classes.
NORMALIZATION_LAYERS: tuple[type[nn.Module], ...] = (
    nn.LayerNorm,
    nn.GroupNorm,
    nn.RMSNorm,
    nn.LocalResponseNorm,
    nn.modules.batchnorm._NormBase,
    BatchRenorm,
)


class ScheduledActionNoise(ActionNoise):
    """
    Another action noise multiplied by a schedule of the training progress, e.g. a linear decay:
    ``ScheduledActionNoise(NormalActionNoise(mean, sigma), LinearSchedule(1.0, 0.1, end_fraction=0.5))``.
    DDPGExt updates the progress after every environment step.

    :param noise: the action noise to scale (SB3's ``NormalActionNoise``, ``OrnsteinUhlenbeckActionNoise``, ...)
    :param schedule: scale as a function of the remaining progress (1 at the start, 0 at the end),
        as SB3's schedules take it
    """

    def __init__(self, noise: ActionNoise, schedule: Schedule | float):
        super().__init__()
        self.noise = noise
        self.schedule = FloatSchedule(schedule)
        self.scale = self.schedule(1.0)

    def set_progress_remaining(self, progress_remaining: float) -> None:
        """:param progress_remaining: 1 at the start of training, 0 at the end"""
        self.scale = self.schedule(progress_remaining)

    def __call__(self) -> np.ndarray:
        return self.scale * self.noise()

    def reset(self) -> None:
        self.noise.reset()

    def __repr__(self) -> str:
        return f"ScheduledActionNoise({self.noise!r}, {self.schedule!r}, scale={self.scale:g})"


def scheduled_noises(noise: ActionNoise | None) -> list[ScheduledActionNoise]:
    """The :class:`ScheduledActionNoise` in ``noise``, also inside SB3's ``VectorizedActionNoise``."""
    if isinstance(noise, ScheduledActionNoise):
        return [noise]
    if isinstance(noise, VectorizedActionNoise):
        return [member for member in noise.noises if isinstance(member, ScheduledActionNoise)]
    return []


class AdaptiveParamNoise:
    """
    Adaptive parameter-space noise; pass it as ``DDPGExt(..., param_noise=AdaptiveParamNoise())``.

    :param initial_std: initial std ``sigma`` of the weight perturbation
    :param target_distance: the action-space distance (in the [-1, 1] scaled action space) to keep
    :param adaptation_coefficient: factor by which ``sigma`` grows or shrinks at each adaptation
    :param adaptation_interval: adapt ``sigma`` once every this many gradient steps
    """

    def __init__(
        self,
        initial_std: float = 0.1,
        target_distance: float = 0.2,
        adaptation_coefficient: float = 1.01,
        adaptation_interval: int = 50,
    ):
        check_range("initial_std", initial_std, low=0.0, low_inclusive=False)
        check_range("target_distance", target_distance, low=0.0, low_inclusive=False)
        check_range("adaptation_coefficient", adaptation_coefficient, low=1.0, low_inclusive=False)
        check_int("adaptation_interval", adaptation_interval, 1)
        self.std = float(initial_std)
        self.target_distance = float(target_distance)
        self.adaptation_coefficient = float(adaptation_coefficient)
        self.adaptation_interval = adaptation_interval
        self.last_distance = float("nan")
        self.perturbed_actor: nn.Module | None = None
        self.perturbed_at_episode = -1

    def actions(self, actor: nn.Module, observations: PyTorchObs, episode: int) -> np.ndarray:
        """
        The perturbed actor's outputs for ``observations`` (scaled actions, in [-1, 1]), perturbed anew when
        ``episode`` (the training episode count) moved on since the last perturbation, or after loading.
        """
        if self.perturbed_actor is None or self.perturbed_at_episode != episode:
            self.perturb(actor)
            self.perturbed_at_episode = episode
        assert self.perturbed_actor is not None
        with th.no_grad():
            return self.perturbed_actor(observations).cpu().numpy()

    def perturb(self, actor: nn.Module) -> None:
        """Make :attr:`perturbed_actor` a copy of ``actor`` with Gaussian noise of std ``sigma`` on its weights."""
        self.perturbed_actor = perturbed_copy(actor, self.std, self.perturbed_actor)

    def adapt(self, actor: nn.Module, observations: PyTorchObs) -> float:
        """
        Measure the distance of a fresh perturbation on ``observations`` and adapt ``sigma``.

        :return: the measured distance
        """
        # Both in evaluation mode: measuring must not update the actor's running statistics (BatchRenorm), and
        # the probe, like the exploring copy, normalises with them.
        with th.no_grad(), evaluation_mode(actor):
            probe = perturbed_copy(actor, self.std)
            distance = th.sqrt(th.mean((actor(observations) - probe(observations)) ** 2)).item()
        if distance < self.target_distance:
            self.std *= self.adaptation_coefficient
        else:
            self.std /= self.adaptation_coefficient
        self.last_distance = distance
        return distance

    def __getstate__(self) -> dict[str, Any]:
        # The perturbed copy is rebuilt from the actor at the next perturbation: saving it would only
        # duplicate the actor's weights in every saved model.
        return {**self.__dict__, "perturbed_actor": None}

    def __repr__(self) -> str:
        return f"AdaptiveParamNoise(std={self.std:g}, target_distance={self.target_distance:g})"


def perturbed_copy(actor: nn.Module, std: float, out: nn.Module | None = None) -> nn.Module:
    """
    ``actor`` with ``N(0, std^2)`` added to every parameter outside normalisation layers.

    :param actor: the network to perturb (left unchanged)
    :param std: standard deviation of the perturbation
    :param out: a previous copy to overwrite instead of allocating a new one
    """
    if out is None:
        # SB3 hangs the optimizer on the network: the copy does not need one. A module the actor reads but does not
        # own (SALE's fixed encoder, renewed at target updates) is shared, so that the copy reads the live one.
        optimizer, encoder = getattr(actor, "optimizer", None), getattr(actor, "sale", None)
        memo = {id(held): shared for held, shared in ((optimizer, None), (encoder, encoder)) if held is not None}
        out = copy.deepcopy(actor, memo=memo)
    with th.no_grad():
        for source, target in zip(actor.modules(), out.modules(), strict=True):
            for name, parameter in source.named_parameters(recurse=False):
                perturbed = getattr(target, name)
                perturbed.copy_(parameter)
                if not isinstance(source, NORMALIZATION_LAYERS):
                    perturbed.add_(th.randn_like(parameter), alpha=std)
        for source_buffer, target_buffer in zip(actor.buffers(), out.buffers(), strict=True):
            target_buffer.copy_(source_buffer)
    out.train(False)
    for parameter in out.parameters():
        parameter.requires_grad_(False)
    return out
