"""The fast backend of the update's network side: MLPs (ReLU or ELU, LayerNorm, BatchRenorm) and SimBa networks, by hand."""

import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, ReplayBufferSamples

from sb3_ddpg_ext.common import lean_simba
from sb3_ddpg_ext.common.lean_mlp import BufferPool, LeanPasses
from sb3_ddpg_ext.common.lean_simba import lean_network
from sb3_ddpg_ext.common.networks import NormalizedFlattenExtractor
from sb3_ddpg_ext.common.optimizer_step import OptimizerStep
from sb3_ddpg_ext.ddpg_ext.actor import Actor
from sb3_ddpg_ext.ddpg_ext.critics import Critic, CriticLoss
from sb3_ddpg_ext.ddpg_ext.policies import DDPGExtPolicy
from sb3_ddpg_ext.ddpg_ext.update import TargetSmoothing


class FastUpdate:
    """
    :class:`~sb3_ddpg_ext.ddpg_ext.update.UpdateBackend` with the passes of
    :class:`~sb3_ddpg_ext.common.lean_mlp.LeanMLP` (hand-derived gradients, feature-major activations) instead of
    autograd: no graph is recorded, no gradient is zeroed or accumulated, the critic's parameter gradients are never
    formed in the actor step; the optimizers step on the gradients written by hand. The maths that is not about the
    networks (TD targets, losses, priorities, the losses' gradients with respect to the outputs) is the critic type's
    own, as in the specification (:class:`~sb3_ddpg_ext.ddpg_ext.update.AutogradUpdate`), which the tests compare it
    with.

    :meth:`build` makes one for the networks SB3 builds by default and DDPGExt's normalised ones (flattened Box
    observations, optionally normalised by SimBa's running statistics; ReLU or ELU MLPs, LayerNorm after hidden
    layers and BatchRenorm before linear layers allowed, or SimBa's residual networks; with or without target
    networks: CrossQ's joint pass of both batches; the actor ascending the first critic or the mean of all, TD7's;
    optimizers over exactly the networks' parameters). SALE's networks have their own backend
    (:class:`~sb3_ddpg_ext.ddpg_ext.fast_sale.FastSaleUpdate`); other policies (CNNs, other layers) run the
    specification.
    """

    def __init__(self, policy: DDPGExtPolicy, smoothing: TargetSmoothing):
        self.policy = policy
        self.smoothing = smoothing
        self.target_networks = policy.target_networks
        # A smaller working set makes the products faster. Inside critic_outputs the target passes run one after
        # another, forward only, and then the first critic's: they share activations (the first critic's are kept for
        # step_critics). Every backward pass shares the hidden-layer gradients, which live only inside it. Without
        # target networks every critic keeps its own activations.
        first: BufferPool | None = {} if self.target_networks else None
        gradients: BufferPool = {}
        self.actor_target: LeanPasses | None = None
        self.critic_targets: list[LeanPasses] = []
        if self.target_networks:
            assert policy.actor_target is not None and policy.critic_target is not None
            self.actor_target = lean_network(policy.actor_target.mu, first, gradients)
            self.critic_targets = [lean_network(network, first, gradients) for network in policy.critic_target.q_networks]
        self.critics = [
            lean_network(network, first if index == 0 else None, gradients)
            for index, network in enumerate(policy.critic.q_networks)
        ]
        self.actor = lean_network(policy.actor.mu, gradient_pool=gradients)
        # SimBa's running observation statistics, which actor, critics and targets share (read, never updated, here).
        self.normalizer = policy.observation_norm if policy.normalize_observations else None
        critic_parameters = [tensor for critic in self.critics for tensor in critic.parameters]
        critic_gradients = [tensor for critic in self.critics for tensor in critic.gradients]
        self.critic_step = OptimizerStep(policy.critic.optimizer, critic_parameters, critic_gradients)
        self.actor_step = OptimizerStep(policy.actor.optimizer, self.actor.parameters, self.actor.gradients)
        self.action_rows = slice(self.critics[0].linears[0].in_features - self.actor.linears[-1].out_features, None)
        self._critic_activations: list[list[th.Tensor]] = []
        self._features: tuple[PyTorchObs | None, th.Tensor | None] = (None, None)

    @classmethod
    def build(cls, policy: DDPGExtPolicy, smoothing: TargetSmoothing) -> "FastUpdate | None":
        """A fast backend for ``policy``, or None when its networks need autograd (see the class docstring)."""
        actor, critic = policy.actor, policy.critic
        if (
            policy.sale is not None  # TD7's embeddings: FastSaleUpdate
            or not isinstance(policy.observation_space, spaces.Box)
            or is_image_space(policy.observation_space)
            or not _flat_features(policy)
        ):
            return None
        networks = [actor.mu, *critic.q_networks]
        if policy.target_networks:
            assert policy.actor_target is not None and policy.critic_target is not None
            networks += [policy.actor_target.mu, *policy.critic_target.q_networks]
        if not all(lean_simba.supports(network) for network in networks) or not runs_as_written(type(actor), type(critic)):
            return None
        # The optimizers must hold exactly the parameters the passes produce gradients for.
        critic_parameters = [tensor for network in critic.q_networks for tensor in network.parameters()]
        optimizers_match = OptimizerStep.matches(critic.optimizer, critic_parameters) and OptimizerStep.matches(
            actor.optimizer, list(actor.mu.parameters())
        )
        return cls(policy, smoothing) if optimizers_match else None

    @staticmethod
    def _feature_rows(observations: PyTorchObs) -> th.Tensor:
        """Observations feature-major, ``(features, batch)``, float32 (FlattenExtractor on a non-image Box space)."""
        assert isinstance(observations, th.Tensor)
        rows = (observations if observations.dim() == 2 else observations.flatten(1)).t()
        return rows if rows.dtype == th.float32 else rows.float()

    def _features_of(self, observations: PyTorchObs) -> th.Tensor:
        """What the networks read, feature-major: the flattened observations, normalised where the policy does."""
        rows = self._feature_rows(observations)
        return rows if self.normalizer is None else self.normalizer(rows.t()).t()

    @staticmethod
    def _stacked(outputs: list[th.Tensor]) -> th.Tensor:
        """Feature-major outputs of the critics as ``(batch, n_critics, n_outputs)`` (a view for one critic)."""
        if len(outputs) == 1:
            return outputs[0].t().unsqueeze(1)
        return th.stack([output.t() for output in outputs], dim=1)

    # The modes of the specification inside DDPGExt.train (the policy in training mode, its targets in evaluation
    # mode): they matter to BatchRenorm layers only.
    def critic_outputs(self, batch: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor]:
        next_features = self._features_of(batch.next_observations)
        if not self.target_networks:
            return self._joint_critic_outputs(batch, next_features)
        assert self.actor_target is not None
        next_actions = self.actor_target.forward(next_features, training=False)[0]
        if self.smoothing.enabled:
            next_actions = self.smoothing(next_actions.t()).t()
        next_inputs = th.cat([next_features, next_actions])
        next_outputs = self._stacked([critic.forward(next_inputs, training=False)[0] for critic in self.critic_targets])

        # Contiguous: the first layer's weight gradient is faster then (the result is the same).
        inputs = th.cat([self._features_of(batch.observations), batch.actions.t()])
        self._features = (batch.observations, inputs[: -batch.actions.shape[1]])  # the actor step reads them again
        passes = [critic.forward(inputs, training=True) for critic in self.critics]
        self._critic_activations = [activations for _, activations in passes]
        return self._stacked([outputs for outputs, _ in passes]), next_outputs

    def _joint_critic_outputs(self, batch: ReplayBufferSamples, next_features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """CrossQ: ``(s, a)`` and ``(s', mu(s'))`` side by side in one training pass of each critic, the target
        actions from the actor in evaluation mode."""
        next_actions = self.actor.forward(next_features, training=False)[0]
        if self.smoothing.enabled:
            next_actions = self.smoothing(next_actions.t()).t()
        batch_size = batch.actions.shape[0]
        features = self._features_of(batch.observations)
        inputs = th.cat([th.cat([features, batch.actions.t()]), th.cat([next_features, next_actions])], dim=1)
        passes = [critic.forward(inputs, training=True) for critic in self.critics]
        self._critic_activations = [activations for _, activations in passes]
        outputs = self._stacked([outputs[:, :batch_size] for outputs, _ in passes])
        return outputs, self._stacked([outputs[:, batch_size:] for outputs, _ in passes])

    def step_critics(self, loss: CriticLoss) -> None:
        if not self._critic_activations:  # the backward passes need the activations of this update's critic_outputs
            raise RuntimeError("step_critics() needs a critic_outputs() of the same update before it")
        output_gradients = self.policy.critic.loss_gradients(loss)
        for index, critic in enumerate(self.critics):
            gradient = output_gradients[:, index].t()
            if not self.target_networks:  # the (s', mu(s')) half is not differentiated, but its statistics are
                gradient = th.cat([gradient, th.zeros_like(gradient)], dim=1)
            critic.backward(self._critic_activations[index], gradient)
        self._critic_activations = []
        self.critic_step.step()

    def step_actor(self, observations: PyTorchObs) -> th.Tensor:
        cached_observations, features = self._features
        self._features = (None, None)
        self._critic_activations = []  # the critics' passes below overwrite them
        if features is None or cached_observations is not observations:
            features = self._features_of(observations).contiguous()
        actions, actor_activations = self.actor.forward(features, training=True)
        readout = self.policy.critic
        critics = self.critics[: 1 if readout.actor_q == "first" else len(self.critics)]  # TD7: all of them
        inputs = th.cat([features, actions])
        # Without target networks the critic runs on its running statistics here (see AutogradUpdate.actor_loss).
        passes = [critic.forward(inputs, training=self.target_networks) for critic in critics]
        q_outputs = self._stacked([outputs for outputs, _ in passes])  # (batch, critics, n_outputs)
        actor_loss = -readout.q_values(q_outputs).mean()
        output_gradients = readout.q_value_gradients(q_outputs, -1.0 / (q_outputs.shape[0] * len(critics)))
        # Only the critics' action inputs are differentiated, not their parameters.
        action_gradients: th.Tensor | None = None
        for index, (critic, (_, activations)) in enumerate(zip(critics, passes, strict=True)):
            gradient = critic.backward(
                activations, output_gradients[:, index].t(), input_rows=self.action_rows, parameter_gradients=False
            )
            assert gradient is not None
            action_gradients = gradient if action_gradients is None else action_gradients.add_(gradient)
        assert action_gradients is not None
        self.actor.backward(actor_activations, action_gradients)
        self.actor_step.step()
        return actor_loss


def _flat_features(policy: DDPGExtPolicy) -> bool:
    """Whether actor and critic read flattened observations (SB3's extractor, or SimBa's with shared statistics)."""
    extractors = (policy.actor.features_extractor, policy.critic.features_extractor)
    if all(type(extractor) is FlattenExtractor for extractor in extractors):
        return True
    return policy.normalize_observations and all(
        type(extractor) is NormalizedFlattenExtractor and extractor.normalizer is policy.observation_norm
        for extractor in extractors
    )


def _defined_in(cls: type, name: str) -> type:
    """The class of ``cls``'s MRO that defines the attribute ``name``."""
    return next(klass for klass in cls.__mro__ if name in vars(klass))


def runs_as_written(actor_class: type, critic_class: type) -> bool:
    """
    Whether the passes written here compute what these classes compute: their forward passes are the base classes'
    (a subclass that overrides one would be bypassed), and a critic type that redefines its loss or its Q-values
    redefines their gradients with them (else this backend would follow the inherited gradients).
    """
    bases = ((actor_class, Actor, "forward"), (critic_class, Critic, "forward"), (critic_class, Critic, "q1_forward"))
    passes_as_written = all(_defined_in(cls, name) is base for cls, base, name in bases)
    pairs = (("loss", "loss_gradients"), ("q_values", "q_value_gradients"))
    gradients_with_their_maths = all(_defined_in(critic_class, a) is _defined_in(critic_class, b) for a, b in pairs)
    return passes_as_written and gradients_with_their_maths
