"""Critics of DDPGExt: an ensemble of Q-networks with a scalar or a categorical output."""

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, create_mlp
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn

from sb3_ddpg_ext.common.distributional import expected_value


class Critic(BaseModel):
    """
    ``n_critics`` Q-networks ``Q_k(s, a)`` on shared features, each an MLP over ``[features, action]``.

    Built like SB3's ``ContinuousCritic`` (same module names and initialisation order, so the same seed
    gives the same weights), with an output size that subclasses choose.

    :param observation_space: Observation space
    :param action_space: Action space
    :param net_arch: Hidden layer sizes of each Q-network
    :param features_extractor: Network to extract features
    :param features_dim: Number of features
    :param activation_fn: Activation function
    :param normalize_images: Whether to divide image observations by 255
    :param n_critics: Number of Q-networks
    :param share_features_extractor: Whether the features extractor is shared with the actor
        (then the critic loss does not train it)
    :param n_outputs: Output size of each Q-network (1: a scalar Q-value)
    :param pre_linear_modules: module classes put before each linear layer (e.g. BatchRenorm), as in SB3's
        ``create_mlp``
    :param post_linear_modules: module classes put after each hidden linear layer (e.g. LayerNorm)
    """

    features_extractor: BaseFeaturesExtractor

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        net_arch: list[int],
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        n_critics: int = 1,
        share_features_extractor: bool = True,
        n_outputs: int = 1,
        pre_linear_modules: list[Any] | None = None,
        post_linear_modules: list[Any] | None = None,
    ):
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.share_features_extractor = share_features_extractor
        self.n_critics = n_critics
        input_dim = features_dim + get_action_dim(self.action_space)
        self.q_networks: list[nn.Module] = []
        for index in range(n_critics):
            layers = create_mlp(
                input_dim,
                n_outputs,
                net_arch,
                activation_fn,
                pre_linear_modules=pre_linear_modules,
                post_linear_modules=post_linear_modules,
            )
            q_network = nn.Sequential(*layers)
            self.add_module(f"qf{index}", q_network)
            self.q_networks.append(q_network)

    def forward(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        """Each Q-network's output, shape ``(batch, n_outputs)``."""
        # With a shared features extractor, only the actor loss trains it.
        with th.set_grad_enabled(not self.share_features_extractor):
            features = self.extract_features(obs, self.features_extractor)
        q_input = th.cat([features, actions], dim=1)
        return tuple(q_network(q_input) for q_network in self.q_networks)

    def q1_forward(self, obs: PyTorchObs, actions: th.Tensor) -> th.Tensor:
        """The first Q-network's output, with gradients flowing to the actions only (for the actor loss)."""
        with th.no_grad():
            features = self.extract_features(obs, self.features_extractor)
        return self.q_networks[0](th.cat([features, actions], dim=1))

    def q_values(self, outputs: th.Tensor) -> th.Tensor:
        """
        Q-values of stacked outputs.

        :param outputs: outputs of one or more Q-networks, shape ``(..., n_outputs)``
        :return: shape ``(...)``
        """
        return outputs.squeeze(-1)

    def q_value_gradients(self, outputs: th.Tensor, scale: float = 1.0) -> th.Tensor:
        """
        The derivative of each Q-value with respect to the outputs it is read from (for gradients derived by hand).

        :param outputs: shape ``(..., n_outputs)``
        :param scale: a factor applied to the result (e.g. ``-1 / batch_size`` for the loss ``-mean Q``)
        :return: ``scale * dQ / d outputs``, the same shape (here a constant: outputs in any layout will do)
        """
        return th.full_like(outputs, scale)


class CategoricalCritic(Critic):
    """
    Distributional critic (D4PG): each Q-network outputs logits over ``n_atoms`` fixed atoms evenly
    spaced in ``[v_min, v_max]``; its Q-value is the distribution's mean.

    :param n_atoms: number of atoms of the support
    :param v_min: smallest return the support represents
    :param v_max: largest return the support represents
    (other parameters: see :class:`Critic`)
    """

    atoms: th.Tensor

    def __init__(self, *args: Any, n_atoms: int = 51, v_min: float = -10.0, v_max: float = 10.0, **kwargs: Any):
        super().__init__(*args, n_outputs=n_atoms, **kwargs)  # type: ignore[misc]
        # A buffer: saved with the weights, moved with .to(device), never trained or Polyak-averaged.
        self.register_buffer("atoms", th.linspace(v_min, v_max, n_atoms))

    def q_values(self, outputs: th.Tensor) -> th.Tensor:
        return expected_value(outputs, self.atoms)

    def q_value_gradients(self, outputs: th.Tensor, scale: float = 1.0) -> th.Tensor:
        # Q = sum_j softmax(x)_j z_j, so dQ/dx_j = p_j (z_j - Q).
        probabilities = th.softmax(outputs, dim=-1)
        return (probabilities * (self.atoms - (probabilities @ self.atoms).unsqueeze(-1))).mul_(scale)
