"""Sample types of the prioritized buffers: SB3's replay fields plus importance weights and slots."""

from typing import NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.type_aliases import TensorDict


class PrioritizedReplayBufferSamples(NamedTuple):
    """
    SB3's ``ReplayBufferSamples`` fields, then ``weights`` (importance weights, shape ``(batch, 1)``,
    largest 1) and ``indices`` (the sampled slots, to pass back to ``update_priorities``).
    """

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor | None
    weights: th.Tensor
    indices: np.ndarray


class PrioritizedDictReplayBufferSamples(NamedTuple):
    """Like :class:`PrioritizedReplayBufferSamples`, for ``Dict`` observations."""

    observations: TensorDict
    actions: th.Tensor
    next_observations: TensorDict
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor | None
    weights: th.Tensor
    indices: np.ndarray
