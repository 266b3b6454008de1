"""The deterministic actor of DDPGExt: SB3's TD3 actor, optionally with normalisation layers or a SimBa network."""

from typing import Any

from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.td3.policies import Actor as TD3Actor
from torch import nn

from sb3_ddpg_ext.common.networks import build_network


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
    """

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
    ):
        super().__init__(
            observation_space, action_space, net_arch, features_extractor, features_dim, activation_fn, normalize_images
        )
        self.pre_linear_modules = pre_linear_modules
        self.post_linear_modules = post_linear_modules
        self.network = network
        if pre_linear_modules or post_linear_modules or network != "mlp":
            # Rebuilt; the plain network above keeps SB3's initialisation order (the same seed, the same weights).
            self.mu = build_network(
                network,
                features_dim,
                get_action_dim(self.action_space),
                net_arch,
                activation_fn,
                squash_output=True,
                pre_linear_modules=pre_linear_modules,
                post_linear_modules=post_linear_modules,
            )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {
            **super()._get_constructor_parameters(),
            "pre_linear_modules": self.pre_linear_modules,
            "post_linear_modules": self.post_linear_modules,
            "network": self.network,
        }
