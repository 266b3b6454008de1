"""
Critics of DDPGExt: an ensemble of Q-networks with a scalar or a categorical output.

Each critic type owns its maths: the TD target, the per-sample loss and priority, the loss's gradient with respect to
its outputs (for the fast update) and the name of its logged error metric. The algorithm calls them without knowing
the type, so a new critic type is one new class here and a name in :data:`CRITIC_TYPES`.
"""

import math
from typing import Any, ClassVar, NamedTuple

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs
from torch import nn
from torch.nn import functional as F

from sb3_ddpg_ext.common.distributional import categorical_projection, expected_value
from sb3_ddpg_ext.common.networks import build_network
from sb3_ddpg_ext.common.validation import InvalidValueError, check_int, check_range
from sb3_ddpg_ext.ddpg_ext.encoders import SaleEncoder, avg_l1_norm


class CriticLoss(NamedTuple):
    """
    What a critic's :meth:`Critic.loss` gives: the loss to minimise and what the algorithm reads from it.

    :param loss: the (importance-weighted) mean over the batch of the per-sample loss, with its graph when the
        outputs have one
    :param errors: each sample's error per critic (``|TD error|``, or the cross-entropy), shape
        ``(batch, n_critics)``, no graph: the raw priorities of prioritized replay (its rule reduces them)
    :param error_mean: the mean of those errors (logged as the critic's metric)
    :param q_values: the critics' Q-values, shape ``(batch, n_critics)``, no graph
    :param outputs: the critics' outputs the loss was computed from, ``(batch, n_critics, n_outputs)``
    :param target: the TD target, see :meth:`Critic.td_target`
    :param weights: the importance weights, shape ``(batch, 1)``, or None (uniform replay)
    :param huber_threshold: the Huber loss's threshold the loss was computed with, or None (squared errors)
    """

    loss: th.Tensor
    errors: th.Tensor
    error_mean: th.Tensor
    q_values: th.Tensor
    outputs: th.Tensor
    target: th.Tensor
    weights: th.Tensor | None
    huber_threshold: float | None = None


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
    :param network: ``"mlp"``, or ``"simba"`` (SimBa's residual network; ``net_arch`` lists its blocks)
    :param sale: TD7's SALE: each Q-network takes ``[AvgL1Norm(W_k [s, a]), zsa, zs]`` from this encoder (a fixed
        copy, held by the policy and not a parameter of the critic), with ``W_k`` as wide as ``net_arch[0]``
    :param actor_q: what the actor ascends: ``"first"``, the first Q-network (TD3, SB3), or ``"mean"``, the mean over
        all of them (TD7)
    """

    sale: SaleEncoder | None
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
        network: str = "mlp",
        sale: SaleEncoder | None = None,
        actor_q: str = "first",
    ):
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.share_features_extractor = share_features_extractor
        self.n_critics = n_critics
        self.actor_q = actor_q
        self.use_encoder(sale)
        input_dim = features_dim + get_action_dim(self.action_space)
        # SALE: each network embeds (s, a) itself, then sees that embedding beside the encoder's [zsa, zs].
        self.input_embeddings = [nn.Linear(input_dim, net_arch[0]) for _ in range(n_critics)] if sale else []
        for index, embedding in enumerate(self.input_embeddings):
            self.add_module(f"qf{index}_embedding", embedding)
        if sale is not None:
            input_dim = net_arch[0] + 2 * sale.embedding_dim
        self.q_networks: list[nn.Module] = []
        for index in range(n_critics):
            q_network = build_network(
                network,
                input_dim,
                n_outputs,
                net_arch,
                activation_fn,
                pre_linear_modules=pre_linear_modules,
                post_linear_modules=post_linear_modules,
            )
            self.add_module(f"qf{index}", q_network)
            self.q_networks.append(q_network)

    def use_encoder(self, sale: SaleEncoder | None) -> None:
        """Take SALE's embeddings from ``sale`` (the policy's fixed or fixed-target encoder): held, not registered."""
        object.__setattr__(self, "sale", sale)  # not a submodule: its weights are the policy's, in no optimizer

    def forward(self, obs: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        """Each Q-network's output, shape ``(batch, n_outputs)``."""
        # With a shared features extractor, only the actor loss trains it.
        with th.set_grad_enabled(not self.share_features_extractor):
            features = self.extract_features(obs, self.features_extractor)
        return self._outputs(features, actions, len(self.q_networks))

    def q1_forward(self, obs: PyTorchObs, actions: th.Tensor) -> th.Tensor:
        """The first Q-network's output, with gradients flowing to the actions only (for the actor loss)."""
        with th.no_grad():
            features = self.extract_features(obs, self.features_extractor)
        return self._outputs(features, actions, 1)[0]

    def actor_q_outputs(self, obs: PyTorchObs, actions: th.Tensor) -> th.Tensor:
        """The outputs the actor ascends (see ``actor_q``), ``(batch, n_critics or 1, n_outputs)``."""
        if self.actor_q == "first":
            return self.q1_forward(obs, actions).unsqueeze(1)
        with th.no_grad():
            features = self.extract_features(obs, self.features_extractor)
        return th.stack(self._outputs(features, actions, len(self.q_networks)), dim=1)

    def _outputs(self, features: th.Tensor, actions: th.Tensor, count: int) -> tuple[th.Tensor, ...]:
        """The outputs of the first ``count`` Q-networks."""
        q_input = th.cat([features, actions], dim=1)
        if self.sale is None:
            return tuple(q_network(q_input) for q_network in self.q_networks[:count])
        embeddings = self.sale.embeddings(features, actions)
        return tuple(
            q_network(th.cat([avg_l1_norm(embedding(q_input)), embeddings], dim=1))
            for embedding, q_network in zip(self.input_embeddings[:count], self.q_networks[:count], strict=True)
        )

    # The name of the logged mean of the per-sample error (``train/<name>``).
    metric_name: ClassVar[str] = "td_error_mean"
    # The keyword arguments of this critic type that the policy takes, with their defaults.
    option_defaults: ClassVar[dict[str, Any]] = {}
    # Whether loss() takes a Huber threshold (LAP), and whether the outputs are the Q-values (TD7's value clipping
    # clips the target critics' outputs, hence min_k Q'_k: clipping commutes with the minimum).
    supports_huber_loss: ClassVar[bool] = True
    supports_value_clipping: ClassVar[bool] = True

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The critic type's options, defaults filled in, checked (a clear error names a bad one)."""
        return {**cls.option_defaults, **options}

    def q_values(self, outputs: th.Tensor) -> th.Tensor:
        """
        Q-values of stacked outputs.

        :param outputs: outputs of one or more Q-networks, shape ``(..., n_outputs)``
        :return: shape ``(...)``
        """
        return outputs.squeeze(-1)

    def td_target(self, next_outputs: th.Tensor, rewards: th.Tensor, bootstrap_discounts: th.Tensor) -> th.Tensor:
        """
        The regression target ``y = r + discount * (1 - done) * min_k Q'_k(s', a')``: clipped double Q over the
        target critics (TD3), the plain bootstrap for one.

        :param next_outputs: the target critics' outputs for ``(s', a')``, shape ``(batch, n_critics, n_outputs)``
        :param rewards: (n-step) rewards, shape ``(batch, 1)``
        :param bootstrap_discounts: ``gamma^m (1 - done)``, shape ``(batch, 1)``
        :return: shape ``(batch, 1)``
        """
        next_q = self.q_values(next_outputs)
        lowest_q = next_q if next_q.shape[1] == 1 else next_q.amin(dim=1, keepdim=True)
        return th.addcmul(rewards, bootstrap_discounts, lowest_q)

    def loss(
        self, outputs: th.Tensor, target: th.Tensor, weights: th.Tensor | None = None, huber_threshold: float | None = None
    ) -> CriticLoss:
        """
        Per sample the sum over critics of the squared TD error (as SB3's TD3/DDPG), or of its Huber loss
        ``delta^2 / 2`` for ``|delta| <= k``, ``k (|delta| - k / 2)`` above (LAP, with ``k = huber_threshold``); the
        loss is its mean over the batch, weighted by the importance weights when given. The errors are
        ``|TD error|`` per critic.

        :param outputs: the critics' outputs for ``(s, a)``, shape ``(batch, n_critics, 1)``
        :param target: from :meth:`td_target`
        :param weights: importance weights, shape ``(batch, 1)``, or None
        :param huber_threshold: ``k``, or None for squared errors
        """
        q_values = self.q_values(outputs)
        td_errors = q_values - target
        if huber_threshold is None:
            per_critic = td_errors.square()
        else:
            per_critic = F.huber_loss(q_values, target.expand_as(q_values), reduction="none", delta=huber_threshold)
        per_sample = per_critic.sum(dim=1)
        loss = per_sample.mean() if weights is None else (per_sample * weights.view(-1)).mean()
        errors = td_errors.detach().abs()
        return CriticLoss(loss, errors, errors.mean(), q_values.detach(), outputs, target, weights, huber_threshold)

    def loss_gradients(self, loss: CriticLoss) -> th.Tensor:
        """
        The derivative of :meth:`loss` with respect to the critics' outputs: ``2 w_i (Q_ik - y_i) / B`` (``w = 1``
        without importance weights), ``w_i clip(Q_ik - y_i, -k, k) / B`` with the Huber loss.

        :return: shape ``(batch, n_critics, n_outputs)``
        """
        gradients = loss.q_values - loss.target
        if loss.huber_threshold is None:
            scale = 2.0 / loss.q_values.shape[0]
        else:
            scale = 1.0 / loss.q_values.shape[0]
            gradients = gradients.clamp_(-loss.huber_threshold, loss.huber_threshold)
        gradients = gradients.mul_(scale) if loss.weights is None else gradients.mul_(loss.weights * scale)
        return gradients.unsqueeze(-1)

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

    metric_name: ClassVar[str] = "cross_entropy_mean"
    option_defaults: ClassVar[dict[str, Any]] = {"n_atoms": 51, "v_min": -10.0, "v_max": 10.0}
    # A distribution has no Huber loss, and its support bounds its values already.
    supports_huber_loss: ClassVar[bool] = False
    supports_value_clipping: ClassVar[bool] = False

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        options = super().check_options(options)
        check_int("n_atoms", options["n_atoms"], 2)
        check_range("v_min", options["v_min"])
        check_range("v_max", options["v_max"])
        if not -math.inf < options["v_min"] < options["v_max"] < math.inf:
            raise InvalidValueError(
                f"`v_min` < `v_max` must be finite, got v_min={options['v_min']} and v_max={options['v_max']}"
            )
        return options

    def q_values(self, outputs: th.Tensor) -> th.Tensor:
        return expected_value(outputs, self.atoms)

    def td_target(self, next_outputs: th.Tensor, rewards: th.Tensor, bootstrap_discounts: th.Tensor) -> th.Tensor:
        """
        The bootstrap distribution of the target critic with the lowest mean (D4PG with clipped double Q), shifted
        by ``r``, scaled by ``gamma^m (1 - done)`` and projected onto the support.

        :return: target distributions, shape ``(batch, n_atoms)``
        """
        next_q = self.q_values(next_outputs)
        lowest = next_outputs[th.arange(next_q.shape[0]), next_q.argmin(dim=1)]
        return categorical_projection(th.softmax(lowest, dim=-1), rewards, bootstrap_discounts, self.atoms)

    def loss(
        self, outputs: th.Tensor, target: th.Tensor, weights: th.Tensor | None = None, huber_threshold: float | None = None
    ) -> CriticLoss:
        """
        Per sample the sum over critics of the cross-entropy to the target distribution (the errors: it per critic).
        """
        if huber_threshold is not None:
            raise InvalidValueError("a categorical critic's loss is a cross-entropy: no `huber_threshold`")
        per_critic = -(target.unsqueeze(1) * th.log_softmax(outputs, dim=-1)).sum(dim=-1)
        per_sample = per_critic.sum(dim=1)
        loss = per_sample.mean() if weights is None else (per_sample * weights.view(-1)).mean()
        errors = per_critic.detach()
        q_values = self.q_values(outputs.detach())
        return CriticLoss(loss, errors, errors.mean(), q_values, outputs, target, weights)

    def loss_gradients(self, loss: CriticLoss) -> th.Tensor:
        """``w_i (softmax(x_ik) - y_i) / B``: the cross-entropy's derivative (the target sums to 1)."""
        scale = 1.0 / loss.outputs.shape[0]
        gradients = th.softmax(loss.outputs.detach(), dim=-1).sub_(loss.target.unsqueeze(1))
        return gradients.mul_(scale) if loss.weights is None else gradients.mul_(loss.weights.view(-1, 1, 1) * scale)

    def q_value_gradients(self, outputs: th.Tensor, scale: float = 1.0) -> th.Tensor:
        # Q = sum_j softmax(x)_j z_j, so dQ/dx_j = p_j (z_j - Q).
        probabilities = th.softmax(outputs, dim=-1)
        return (probabilities * (self.atoms - (probabilities @ self.atoms).unsqueeze(-1))).mul_(scale)


def check_loss_settings(critic_class: type[Critic], huber_threshold: float | None, value_clipping: bool) -> None:
    """Refuse, at construction, a Huber loss (LAP's) or TD7's value clipping for a critic type without them."""
    if huber_threshold is not None and not critic_class.supports_huber_loss:
        raise InvalidValueError(
            f"`replay_buffer_kwargs=dict(priority='lap')` trains the critic with a Huber loss, which the critic type "
            f"{critic_class.__name__} does not have: use priority='proportional' or a scalar critic"
        )
    if value_clipping and not critic_class.supports_value_clipping:
        raise InvalidValueError(
            f"`target_value_clipping=True` clips scalar bootstrap values, which the critic type "
            f"{critic_class.__name__} does not have"
        )


# The critic types a policy can be built with (``policy_kwargs=dict(critic=NAME)``): one line per type.
CRITIC_TYPES: dict[str, type[Critic]] = {"plain": Critic, "categorical": CategoricalCritic}
