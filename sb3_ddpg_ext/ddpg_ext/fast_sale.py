"""
The fast backend for TD7's SALE networks (Fujimoto et al. 2023, https://arxiv.org/abs/2306.02451): the actor
``mu([AvgL1Norm(E s), zs])`` and the critics ``Q_k([AvgL1Norm(W_k [s, a]), zsa, zs])`` with ``zs = AvgL1Norm(f(s))``
and ``zsa = g([zs, a])`` from the fixed encoder (the targets: from the fixed-target one), passes and gradients
derived by hand (:class:`~sb3_ddpg_ext.common.lean_mlp.LeanMLP`, :class:`~sb3_ddpg_ext.common.lean_norms.LeanAvgL1Norm`).
"""

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_action_dim, is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, ReplayBufferSamples
from torch import nn

from sb3_ddpg_ext.common.lean_mlp import BufferPool, LeanMLP
from sb3_ddpg_ext.common.lean_norms import LeanAvgL1Norm
from sb3_ddpg_ext.common.optimizer_step import OptimizerStep
from sb3_ddpg_ext.ddpg_ext.critics import CriticLoss
from sb3_ddpg_ext.ddpg_ext.encoders import AvgL1Norm, SaleEncoder
from sb3_ddpg_ext.ddpg_ext.fast_update import FastUpdate, runs_as_written
from sb3_ddpg_ext.ddpg_ext.policies import DDPGExtPolicy
from sb3_ddpg_ext.ddpg_ext.update import TargetSmoothing


class _Encoder:
    """A SALE encoder's passes (no parameter gradients: actor and critics read a fixed copy)."""

    def __init__(self, encoder: SaleEncoder, gradient_pool: BufferPool):
        layers = list(encoder.state_encoder)
        assert isinstance(layers[-1], AvgL1Norm)
        self.state = LeanMLP(nn.Sequential(*layers[:-1]), gradient_pool=gradient_pool)
        self.state_norm = LeanAvgL1Norm()
        self.state_action = LeanMLP(encoder.state_action_encoder, gradient_pool=gradient_pool)
        self.action_rows = slice(encoder.embedding_dim, None)
        self._activations: list[th.Tensor] = []
        self._state_activations: list[th.Tensor] = []

    @staticmethod
    def supports(encoder: SaleEncoder) -> bool:
        layers = list(encoder.state_encoder)
        return (
            type(layers[-1]) is AvgL1Norm
            and LeanMLP.supports(nn.Sequential(*layers[:-1]))
            and LeanMLP.supports(encoder.state_action_encoder)
        )

    def zs(self, features: th.Tensor) -> th.Tensor:
        outputs, self._state_activations = self.state.forward(features)
        return self.state_norm.forward(outputs)

    def zsa(self, zs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """``g([zs, a])``; its activations are kept for :meth:`action_gradients`."""
        outputs, self._activations = self.state_action.forward(th.cat([zs, actions]))
        return outputs

    @property
    def parts(self) -> list[LeanMLP]:
        return [self.state, self.state_action]

    def train_pass(self, features: th.Tensor, actions: th.Tensor, next_features: th.Tensor) -> th.Tensor:
        """
        SALE's dynamics loss ``mean (g([f(s), a]) - f(s'))^2`` (``f(s')`` fixed) and its parameter gradients, written
        into the parts' gradients; returns the loss.
        """
        next_zs = self.zs(next_features)  # first: the passes below keep what the backward needs
        zs = self.zs(features)
        error = self.zsa(zs, actions).sub_(next_zs)
        loss = error.square().mean()
        zs_gradients = self.state_action.backward(
            self._activations, error.mul_(2.0 / error.numel()), input_rows=slice(0, self.action_rows.start)
        )
        assert zs_gradients is not None
        self.state.backward(self._state_activations, self.state_norm.backward(zs_gradients))
        return loss

    def action_gradients(self, zsa_gradients: th.Tensor) -> th.Tensor:
        """The gradient with respect to the actions of the last :meth:`zsa`, given the one of ``zsa``."""
        gradients = self.state_action.backward(
            self._activations, zsa_gradients, input_rows=self.action_rows, parameter_gradients=False
        )
        assert gradients is not None
        return gradients


class _Embedded:
    """``net([AvgL1Norm(E x), extra])``: TD7's actor (``extra = zs``) and each of its critics (``[zsa, zs]``)."""

    def __init__(self, embedding: nn.Linear, network: nn.Module, gradient_pool: BufferPool):
        self.embedding = LeanMLP(nn.Sequential(embedding), gradient_pool=gradient_pool)
        self.norm = LeanAvgL1Norm()
        self.network = LeanMLP(network, gradient_pool=gradient_pool)
        self.width = embedding.out_features
        self._activations: tuple[list[th.Tensor], list[th.Tensor]] = ([], [])

    @staticmethod
    def supports(embedding: nn.Module, network: nn.Module) -> bool:
        return type(embedding) is nn.Linear and embedding.bias is not None and LeanMLP.supports(network)

    @property
    def parts(self) -> list[LeanMLP]:
        return [self.embedding, self.network]

    def forward(self, inputs: th.Tensor, extra: th.Tensor) -> th.Tensor:
        embedded, embedding_activations = self.embedding.forward(inputs)
        outputs, network_activations = self.network.forward(th.cat([self.norm.forward(embedded), extra]))
        self._activations = (embedding_activations, network_activations)
        return outputs

    def backward(
        self,
        output_gradients: th.Tensor,
        parameter_gradients: bool = True,
        input_rows: slice | None = None,
        extra_rows: slice | None = None,
    ) -> tuple[th.Tensor | None, th.Tensor | None]:
        """
        :param input_rows: return the gradient with respect to these rows of ``inputs``
        :param extra_rows: return the gradient with respect to these rows of ``extra``
        :return: those gradients (None where not asked for)
        """
        embedding_activations, network_activations = self._activations
        end = self.width if extra_rows is None else self.width + extra_rows.stop
        gradients = self.network.backward(network_activations, output_gradients, slice(0, end), parameter_gradients)
        assert gradients is not None
        embedded_gradients = self.norm.backward(gradients[: self.width])
        input_gradients = self.embedding.backward(embedding_activations, embedded_gradients, input_rows, parameter_gradients)
        extra_gradients = None if extra_rows is None else gradients[self.width + extra_rows.start : end]
        return input_gradients, extra_gradients


def _holds_exactly(optimizer: th.optim.Optimizer, modules: list[nn.Module]) -> bool:
    """Whether ``optimizer`` has one parameter group of exactly the parameters of ``modules`` (in any order)."""
    groups = optimizer.param_groups
    expected = [id(tensor) for module in modules for tensor in module.parameters()]
    held = [id(tensor) for tensor in groups[0]["params"]] if len(groups) == 1 else []
    return len(groups) == 1 and sorted(held) == sorted(expected)


def _optimizer_step(optimizer: th.optim.Optimizer, parts: list[LeanMLP]) -> OptimizerStep:
    """A step of ``optimizer`` (see :func:`_holds_exactly`) on the gradients of ``parts``, in its parameters' order."""
    gradient_of = {
        id(tensor): gradient for part in parts for tensor, gradient in zip(part.parameters, part.gradients, strict=True)
    }
    parameters = list(optimizer.param_groups[0]["params"])
    return OptimizerStep(optimizer, parameters, [gradient_of[id(tensor)] for tensor in parameters])


class FastSaleUpdate:
    """
    :class:`~sb3_ddpg_ext.ddpg_ext.update.UpdateBackend` for policies with SALE (TD7), the counterpart of
    :class:`~sb3_ddpg_ext.ddpg_ext.fast_update.FastUpdate`: the same passes as the specification
    (:class:`~sb3_ddpg_ext.ddpg_ext.update.AutogradUpdate`, which the tests compare it with) without autograd, and
    ``zs(s)`` computed once per update for the critics and the actor step; and the encoder's own training step
    (:meth:`train_encoder`, the counterpart of ``policy.train_encoder``).

    :meth:`build` makes one for flattened ``Box`` observations, MLPs that ``LeanMLP`` runs, and optimizers over
    exactly the actor's and the critics' parameters; other policies run the specification.
    """

    def __init__(self, policy: DDPGExtPolicy, smoothing: TargetSmoothing):
        sale, critic, critic_target = policy.sale, policy.critic, policy.critic_target
        assert sale is not None and policy.actor_target is not None and critic_target is not None
        self.policy = policy
        self.smoothing = smoothing
        gradients: BufferPool = {}
        self.encoder, self.target_encoder = _Encoder(sale.fixed, gradients), _Encoder(sale.fixed_target, gradients)
        self.trained_encoder = _Encoder(sale.encoder, gradients)
        self.encoder_step = _optimizer_step(sale.optimizer, self.trained_encoder.parts)
        self.actor = _Embedded(policy.actor.state_embedding, policy.actor.mu, gradients)
        self.actor_target = _Embedded(policy.actor_target.state_embedding, policy.actor_target.mu, gradients)
        self.critics = [_Embedded(e, q, gradients) for e, q in zip(critic.input_embeddings, critic.q_networks, strict=True)]
        self.critic_targets = [
            _Embedded(e, q, gradients) for e, q in zip(critic_target.input_embeddings, critic_target.q_networks, strict=True)
        ]
        self.critic_step = _optimizer_step(critic.optimizer, [part for network in self.critics for part in network.parts])
        self.actor_step = _optimizer_step(policy.actor.optimizer, self.actor.parts)
        self.action_rows = slice(critic.input_embeddings[0].in_features - get_action_dim(policy.action_space), None)
        self._cache: tuple[PyTorchObs | None, th.Tensor | None, th.Tensor | None] = (None, None, None)
        self._differentiable = False

    @classmethod
    def build(cls, policy: DDPGExtPolicy, smoothing: TargetSmoothing) -> "FastSaleUpdate | None":
        """A fast backend for ``policy`` (which has SALE), or None when its networks need autograd."""
        actor, critic, sale = policy.actor, policy.critic, policy.sale
        if (
            sale is None
            or policy.actor_target is None
            or policy.critic_target is None
            or not isinstance(policy.observation_space, spaces.Box)
            or is_image_space(policy.observation_space)
            or type(actor.features_extractor) is not FlattenExtractor
            or type(critic.features_extractor) is not FlattenExtractor
            or not runs_as_written(type(actor), type(critic))
            or not all(_Encoder.supports(encoder) for encoder in (sale.encoder, sale.fixed, sale.fixed_target))
            or not _holds_exactly(sale.optimizer, [sale.encoder])
        ):
            return None
        pairs: list[tuple[nn.Module, nn.Module]] = [
            (actor.state_embedding, actor.mu),
            (policy.actor_target.state_embedding, policy.actor_target.mu),
        ]
        for network in (critic, policy.critic_target):
            pairs += list(zip(network.input_embeddings, network.q_networks, strict=True))
        if not all(_Embedded.supports(embedding, network) for embedding, network in pairs):
            return None
        if not (
            _holds_exactly(critic.optimizer, [*critic.input_embeddings, *critic.q_networks])
            and _holds_exactly(actor.optimizer, [actor.state_embedding, actor.mu])
        ):
            return None
        return cls(policy, smoothing)

    def train_encoder(self, batch: ReplayBufferSamples) -> th.Tensor:
        """One optimizer step of SALE's trained encoder on the batch (``policy.train_encoder``'s); returns the loss."""
        features, next_features = (
            FastUpdate._feature_rows(batch.observations),
            FastUpdate._feature_rows(batch.next_observations),
        )
        loss = self.trained_encoder.train_pass(features, batch.actions.t(), next_features)
        self.encoder_step.step()
        return loss

    def critic_outputs(self, batch: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor]:
        features = FastUpdate._feature_rows(batch.observations)
        next_features = FastUpdate._feature_rows(batch.next_observations)
        # The targets: the fixed-target encoder, target actor and critics (forward only).
        next_zs = self.target_encoder.zs(next_features)
        next_actions = self.actor_target.forward(next_features, next_zs)
        if self.smoothing.enabled:
            next_actions = self.smoothing(next_actions.t()).t()
        next_embeddings = th.cat([self.target_encoder.zsa(next_zs, next_actions), next_zs])
        next_inputs = th.cat([next_features, next_actions])
        next_outputs = [critic.forward(next_inputs, next_embeddings) for critic in self.critic_targets]
        # The critics, on the fixed encoder's embeddings.
        zs = self.encoder.zs(features)
        embeddings = th.cat([self.encoder.zsa(zs, batch.actions.t()), zs])
        inputs = th.cat([features, batch.actions.t()])
        outputs = [critic.forward(inputs, embeddings) for critic in self.critics]
        self._cache = (batch.observations, features, zs)  # the actor step reads them again
        self._differentiable = True
        return FastUpdate._stacked(outputs), FastUpdate._stacked(next_outputs)

    def step_critics(self, loss: CriticLoss) -> None:
        if not self._differentiable:
            raise RuntimeError("step_critics() needs a critic_outputs() of the same update before it")
        output_gradients = self.policy.critic.loss_gradients(loss)
        for index, critic in enumerate(self.critics):
            critic.backward(output_gradients[:, index].t())
        self._differentiable = False
        self.critic_step.step()

    def step_actor(self, observations: PyTorchObs) -> th.Tensor:
        cached_observations, features, zs = self._cache
        self._cache = (None, None, None)
        self._differentiable = False  # the critics' passes below overwrite what step_critics needs
        if features is None or zs is None or cached_observations is not observations:
            features = FastUpdate._feature_rows(observations)
            zs = self.encoder.zs(features)
        actions = self.actor.forward(features, zs)
        readout = self.policy.critic
        critics = self.critics[: 1 if readout.actor_q == "first" else len(self.critics)]
        embeddings = th.cat([self.encoder.zsa(zs, actions), zs])
        inputs = th.cat([features, actions])
        q_outputs = FastUpdate._stacked([critic.forward(inputs, embeddings) for critic in critics])
        actor_loss = -readout.q_values(q_outputs).mean()
        output_gradients = readout.q_value_gradients(q_outputs, -1.0 / (q_outputs.shape[0] * len(critics)))
        # Only the action inputs are differentiated: directly, and through zsa = g([zs, a]).
        zsa_rows = slice(0, self.encoder.action_rows.start)
        action_gradients, zsa_gradients = None, None
        for index, critic in enumerate(critics):
            direct, through_zsa = critic.backward(
                output_gradients[:, index].t(), parameter_gradients=False, input_rows=self.action_rows, extra_rows=zsa_rows
            )
            assert direct is not None and through_zsa is not None
            action_gradients = direct if action_gradients is None else action_gradients.add_(direct)
            # Rows of a gradient this backward made (nothing else reads it): summed into in place.
            zsa_gradients = through_zsa if zsa_gradients is None else zsa_gradients.add_(through_zsa)
        assert action_gradients is not None and zsa_gradients is not None
        action_gradients.add_(self.encoder.action_gradients(zsa_gradients))
        self.actor.backward(action_gradients)
        self.actor_step.step()
        return actor_loss
