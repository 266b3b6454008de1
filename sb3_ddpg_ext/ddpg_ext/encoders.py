"""
TD7's SALE (Fujimoto et al. 2023, "For SALE: State-Action Representation Learning for Deep Reinforcement Learning",
https://arxiv.org/abs/2306.02451): learned state and state-action embeddings that actor and critics take beside
their usual inputs.
"""

from typing import Any

import torch as th
from stable_baselines3.common.torch_layers import create_mlp
from torch import nn
from torch.nn import functional as F


def avg_l1_norm(x: th.Tensor, eps: float = 1e-8) -> th.Tensor:
    """TD7's AvgL1Norm: ``x`` divided by the mean of its absolute values over the last dimension (at least ``eps``)."""
    return x / x.abs().mean(dim=-1, keepdim=True).clamp(min=eps)


class AvgL1Norm(nn.Module):
    """:func:`avg_l1_norm` as a layer: it keeps the scale of an embedding fixed, whatever the network learns."""

    def forward(self, x: th.Tensor) -> th.Tensor:
        return avg_l1_norm(x)


class SaleEncoder(nn.Module):
    """
    The state encoder ``zs = AvgL1Norm(f(s))`` and the state-action encoder ``zsa = g(zs, a)``, trained so that
    ``zsa`` predicts the next state's embedding: ``loss = mean (g(f(s), a) - f(s'))^2``, with ``f(s')`` held fixed.

    DDPGExt keeps three of them (:class:`SaleEncoders`): this one trained at every update; a *fixed* copy whose
    embeddings actor and critics take; a *fixed-target* copy for the target networks. The copies change only at
    target updates.

    :param features_dim: number of (flattened) observation features
    :param action_dim: number of action dimensions
    :param embedding_dim: size of ``zs`` and ``zsa`` (TD7: 256)
    :param net_arch: hidden layers of ``f`` and of ``g`` (TD7: ``[256, 256]``)
    :param activation_fn: their activation (TD7: ELU)
    """

    def __init__(
        self,
        features_dim: int,
        action_dim: int,
        embedding_dim: int = 256,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ELU,
    ):
        super().__init__()
        net_arch = [256, 256] if net_arch is None else net_arch
        self.embedding_dim = embedding_dim
        self.state_encoder = nn.Sequential(*create_mlp(features_dim, embedding_dim, net_arch, activation_fn), AvgL1Norm())
        self.state_action_encoder = nn.Sequential(
            *create_mlp(embedding_dim + action_dim, embedding_dim, net_arch, activation_fn)
        )

    def zs(self, features: th.Tensor) -> th.Tensor:
        """The state embedding of flattened observation features, ``(batch, embedding_dim)``."""
        return self.state_encoder(features)

    def zsa(self, zs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """The state-action embedding, ``(batch, embedding_dim)``."""
        return self.state_action_encoder(th.cat([zs, actions], dim=1))

    def embeddings(self, features: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """``[zsa, zs]``, what a critic takes beside its own embedding of ``(s, a)``."""
        zs = self.zs(features)
        return th.cat([self.zsa(zs, actions), zs], dim=1)

    def loss(self, features: th.Tensor, actions: th.Tensor, next_features: th.Tensor) -> th.Tensor:
        """The dynamics loss: the mean squared error between ``zsa`` and the next state's (fixed) ``zs``."""
        with th.no_grad():
            next_zs = self.zs(next_features)
        return F.mse_loss(self.zsa(self.zs(features), actions), next_zs)


class SaleEncoders(nn.Module):
    """
    The trained encoder, its fixed copy (for actor and critics) and its fixed-target copy (for the target networks),
    with the trained one's optimizer. :meth:`refresh` at each target update: fixed-target <- fixed <- trained, so
    the embeddings the critics regress on stay still between target updates.

    :param optimizer_class: the optimizer of the trained encoder
    :param learning_rate: its initial learning rate (the algorithm schedules it with the others)
    :param optimizer_kwargs: its keyword arguments
    (other parameters: see :class:`SaleEncoder`)
    """

    def __init__(
        self,
        features_dim: int,
        action_dim: int,
        optimizer_class: type[th.optim.Optimizer],
        learning_rate: float,
        optimizer_kwargs: dict[str, Any] | None = None,
        **encoder_kwargs: Any,
    ):
        super().__init__()
        self.encoder = SaleEncoder(features_dim, action_dim, **encoder_kwargs)
        self.fixed = SaleEncoder(features_dim, action_dim, **encoder_kwargs)
        self.fixed_target = SaleEncoder(features_dim, action_dim, **encoder_kwargs)
        for copy in (self.fixed, self.fixed_target):
            copy.load_state_dict(self.encoder.state_dict())
            copy.requires_grad_(False)
        self.optimizer = optimizer_class(self.encoder.parameters(), lr=learning_rate, **(optimizer_kwargs or {}))  # type: ignore[call-arg]

    def train_step(self, features: th.Tensor, actions: th.Tensor, next_features: th.Tensor) -> th.Tensor:
        """One optimizer step of the trained encoder on :meth:`SaleEncoder.loss`; returns the loss (no graph)."""
        loss = self.encoder.loss(features, actions, next_features)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    @th.no_grad()
    def refresh(self) -> None:
        """At a target update: the fixed-target copy takes the fixed one's weights, the fixed copy the trained one's."""
        self.fixed_target.load_state_dict(self.fixed.state_dict())
        self.fixed.load_state_dict(self.encoder.state_dict())
