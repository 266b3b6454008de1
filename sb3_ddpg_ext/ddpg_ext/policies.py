"""Actor-critic policies of DDPGExt: a deterministic actor, one or more Q critics and their targets."""

from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    NatureCNN,
)
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.td3.policies import TD3Policy
from torch import nn


class DDPGExtPolicy(TD3Policy):
    """
    Policy of DDPGExt: a deterministic actor ``mu(s)`` squashed by tanh, ``n_critics`` Q-networks
    ``Q_k(s, a)``, and a target copy of each (SB3's TD3 actor and ``ContinuousCritic``).

    Unlike SB3's ``TD3Policy`` the default is one critic: DDPG (Lillicrap et al. 2016).

    :param observation_space: Observation space
    :param action_space: Action space (a bounded ``Box``)
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: Hidden layer sizes: a list shared by actor and critic, or a dict with keys ``pi``
        (actor) and ``qf`` (critic). Default: ``[400, 300]`` (``[256, 256]`` after a CNN), as in the DDPG paper.
    :param activation_fn: Activation function of the hidden layers
    :param features_extractor_class: Features extractor (default: the class's ``default_features_extractor_class``)
    :param features_extractor_kwargs: Keyword arguments for the features extractor
    :param normalize_images: Whether to divide image observations by 255
    :param optimizer_class: Optimizer of actor and critic (``th.optim.Adam`` by default)
    :param optimizer_kwargs: Keyword arguments for the optimizer, the learning rate excluded
    :param n_critics: Number of Q-networks; the TD target uses the minimum over them (clipped double Q)
    :param share_features_extractor: Whether actor and critic share one features extractor
        (then it is trained by the actor loss only)
    """

    default_features_extractor_class: ClassVar[type[BaseFeaturesExtractor]] = FlattenExtractor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] | None = None,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 1,
        share_features_extractor: bool = False,
    ):
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=net_arch,
            activation_fn=activation_fn,
            features_extractor_class=features_extractor_class or self.default_features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            n_critics=n_critics,
            share_features_extractor=share_features_extractor,
        )


MlpPolicy = DDPGExtPolicy


class CnnPolicy(DDPGExtPolicy):
    """DDPGExt policy for image observations: NatureCNN features extractor (see :class:`DDPGExtPolicy`)."""

    default_features_extractor_class = NatureCNN


class MultiInputPolicy(DDPGExtPolicy):
    """DDPGExt policy for ``Dict`` observations: SB3's ``CombinedExtractor`` (see :class:`DDPGExtPolicy`)."""

    default_features_extractor_class = CombinedExtractor
