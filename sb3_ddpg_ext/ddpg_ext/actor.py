"""The deterministic actor of DDPGExt: SB3's TD3 actor, optionally with normalisation layers or a SimBa network."""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.td3.policies import Actor as TD3Actor
from torch import nn

from sb3_ddpg_ext.common.networks import build_network
from sb3_ddpg_ext.ddpg_ext.encoders import SaleEncoder, avg_l1_norm


class Actor(TD3Actor):
    """
    ``mu(s)``: an MLP over the features, squashed by tanh (SB3's TD3 actor), with optional
    normalisation layers before (e.g. BatchRenorm) or after (e.g. LayerNorm) each linear layer, or SimBa's
    residual network (:func:`~sb3_ddpg_ext.common.networks.simba_network`).

    :param observation_space: Observation space
    :param action_space: Action space
    :param net_arch: Hidden layer sizes
    :param features_extractor: Network to extract features
    :param features_dim: Number of features
    :param activation_fn: Activation function
    :param normalize_images: Whether to divide image observations by 255
    :param pre_linear_modules: module classes (called with the number of features) put before each linear
        layer, as in SB3's ``create_mlp``
    :param post_linear_modules: module classes put after each hidden linear layer, before the activation
    :param network: ``"mlp"``, or ``"simba"`` (then ``net_arch`` lists the residual blocks)
    :param sale: TD7's SALE: the network takes ``[AvgL1Norm(W s), zs]`` with ``zs`` from this encoder (a fixed copy,
        held by the policy and not a parameter of the actor) and ``W`` as wide as ``net_arch[0]``
    """

    sale: SaleEncoder | None

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: nn.Module,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        pre_linear_modules: list[Any] | None = None,
        post_linear_modules: list[Any] | None = None,
        network: str = "mlp",
        sale: SaleEncoder | None = None,
    ):
        super().__init__(
            observation_space, action_space, net_arch, features_extractor, features_dim, activation_fn, normalize_images
        )
        self.pre_linear_modules = pre_linear_modules
        self.post_linear_modules = post_linear_modules
        self.network = network
        self.use_encoder(sale)
        if sale is not None:
            self.state_embedding = nn.Linear(features_dim, net_arch[0])
        if pre_linear_modules or post_linear_modules or network != "mlp" or sale is not None:
            # Rebuilt; the plain network above keeps SB3's initialisation order (the same seed, the same weights).
            self.mu = build_network(
                network,
                features_dim if sale is None else net_arch[0] + sale.embedding_dim,
                get_action_dim(self.action_space),
                net_arch,
                activation_fn,
                squash_output=True,
                pre_linear_modules=pre_linear_modules,
                post_linear_modules=post_linear_modules,
            )

    def use_encoder(self, sale: SaleEncoder | None) -> None:
        """Take SALE's ``zs`` from ``sale`` (the policy's fixed or fixed-target encoder): held, not registered."""
        object.__setattr__(self, "sale", sale)  # not a submodule: its weights are the policy's, in no optimizer

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        features = self.extract_features(obs, self.features_extractor)
        if self.sale is None:
            return self.mu(features)
        return self.mu(th.cat([avg_l1_norm(self.state_embedding(features)), self.sale.zs(features)], dim=1))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            **super()._get_constructor_parameters(),
            "pre_linear_modules": self.pre_linear_modules,
            "post_linear_modules": self.post_linear_modules,
            "network": self.network,
        }
