"""The networks' side of DDPGExt's update for plain ReLU MLPs: forward passes and steps without autograd."""

from collections.abc import Callable

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs

from sb3_ddpg_ext.common.lean_mlp import BufferPool, LeanMLP
from sb3_ddpg_ext.common.optimizer_step import OptimizerStep
from sb3_ddpg_ext.ddpg_ext.critics import CategoricalCritic, Critic
from sb3_ddpg_ext.ddpg_ext.policies import DDPGExtPolicy


class LeanUpdate:
    """
    Forward passes and optimizer steps of DDPG/TD3's critic and actor updates, with gradients derived by hand
    (:class:`~sb3_ddpg_ext.common.lean_mlp.LeanMLP`) instead of autograd. The algorithm keeps the maths
    that is not about the networks (targets, losses, priorities); this class does the passes, which are
    where an update spends its time: no graph is recorded, no gradient is zeroed or accumulated, the
    critic's parameter gradients are never formed in the actor update, and Adam's fused kernel is called
    without the optimizer's per-call Python.

    Built by :meth:`build` for the networks SB3 builds by default (flattened Box observations, ReLU MLPs,
    target networks), with scalar or categorical (D4PG) critics; other policies take the autograd path.
    """

    def __init__(self, policy: DDPGExtPolicy):
        assert policy.actor_target is not None and policy.critic_target is not None
        # Hidden-layer buffers shared by passes whose results are never needed at the same time, given the order
        # of an update (target_outputs, critic_outputs, step_critics, step_actor): the target passes and the first
        # critic share activations, the actor and the second critic share activations, every backward pass shares
        # the activation gradients. A smaller working set (two sets of activations instead of four for DDPG, 1.4 MB
        # less for 400-300 networks): updates 1-2% faster than with a pool per network in six side-by-side runs in one
        # process (a difference the size of this VM's noise, but in the same direction each time).
        first: BufferPool = {}
        second: BufferPool = {}
        gradients: BufferPool = {}
        self.actor_target = LeanMLP(policy.actor_target.mu, first, gradients)
        self.critic_targets = [LeanMLP(network, first, gradients) for network in policy.critic_target.q_networks]
        self.critics = [
            LeanMLP(network, first if index == 0 else second if index == 1 else {}, gradients)
            for index, network in enumerate(policy.critic.q_networks)
        ]
        self.actor = LeanMLP(policy.actor.mu, second, gradients)
        self.readout = policy.critic  # Q-values of the outputs and their derivative (scalar or categorical)
        self._critic_activations_pending = False  # between critic_outputs and step_critics
        self._observation_features: tuple[PyTorchObs | None, th.Tensor] = (None, th.empty(0))
        self._inputs = self.critics[0].linears[0].weight.new_empty(0)  # see _critic_inputs
        self.action_rows = slice(self.critics[0].linears[0].in_features - self.actor.linears[-1].out_features, None)
        self.critic_step = OptimizerStep(
            policy.critic.optimizer,
            [tensor for critic in self.critics for tensor in critic.parameters],
            [tensor for critic in self.critics for tensor in critic.gradients],
        )
        self.actor_step = OptimizerStep(policy.actor.optimizer, self.actor.parameters, self.actor.gradients)

    @classmethod
    def build(cls, policy: DDPGExtPolicy) -> "LeanUpdate | None":
        """A lean update for ``policy``, or None when its networks need autograd (see the class docstring)."""
        actor, critic = policy.actor, policy.critic
        if (
            policy.actor_target is None
            or policy.critic_target is None
            or type(critic) not in (Critic, CategoricalCritic)
            or not isinstance(policy.observation_space, spaces.Box)
            or is_image_space(policy.observation_space)
            or type(actor.features_extractor) is not FlattenExtractor
            or type(critic.features_extractor) is not FlattenExtractor
        ):
            return None
        networks = [actor.mu, policy.actor_target.mu, *critic.q_networks, *policy.critic_target.q_networks]
        if not all(LeanMLP.supports(network) for network in networks):
            return None
        # The optimizers must hold exactly the parameters the lean passes produce gradients for.
        critic_parameters = [tensor for network in critic.q_networks for tensor in network.parameters()]
        optimizers_match = OptimizerStep.matches(critic.optimizer, critic_parameters) and OptimizerStep.matches(
            actor.optimizer, list(actor.mu.parameters())
        )
        return cls(policy) if optimizers_match else None

    @staticmethod
    def _observation_rows(observations: PyTorchObs) -> th.Tensor:
        """
        The observations feature-major, ``(features, batch)``, as a view (FlattenExtractor on a non-image Box space;
        its preprocessing, a cast to float, is left to the copy that reads them).
        """
        assert isinstance(observations, th.Tensor)
        return (observations if observations.dim() == 2 else observations.flatten(1)).t()

    @staticmethod
    def _stacked(outputs: list[th.Tensor]) -> th.Tensor:
        """Feature-major outputs of the critics as ``(batch, n_critics, n_outputs)`` (a view for one critic)."""
        if len(outputs) > 1:
            return th.stack([output.t() for output in outputs], dim=1)
        output = outputs[0]
        return output.view(-1, 1, 1) if output.shape[0] == 1 else output.t().unsqueeze(1)

    def _critic_inputs(self, observation_rows: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """``[s; a]`` feature-major and contiguous, in a buffer every update reuses: cast, transposed, joined in one copy."""
        shape = (self.critics[0].linears[0].in_features, observation_rows.shape[1])
        if self._inputs.shape != shape:
            with th.inference_mode(False):  # it outlives an update run in inference mode
                self._inputs = self._inputs.new_empty(shape)
        return th.cat([observation_rows, actions.t()], out=self._inputs)

    def act(self, observations: np.ndarray) -> np.ndarray:
        """The actor's outputs (actions scaled to [-1, 1]) for a batch of observations, ``(batch, actions)``."""
        # Cast and flattened by NumPy (the same rounding as torch's float()): cheaper than two tensor ops here.
        inputs = th.from_numpy(np.asarray(observations, dtype=np.float32).reshape(len(observations), -1))
        device = self.actor.parameters[0].device
        if device.type != "cpu":
            return self.actor.predict(inputs.to(device)).cpu().numpy()
        return self.actor.predict(inputs).numpy()

    def target_outputs(
        self, next_observations: PyTorchObs, smooth: Callable[[th.Tensor], th.Tensor] | None = None
    ) -> th.Tensor:
        """
        The target critics' outputs for ``(s', smooth(mu'(s')))``, shape ``(batch, n_critics, n_outputs)``; call it
        before :meth:`critic_outputs` (they share buffers).

        :param smooth: target policy smoothing, given the actions as ``(batch, actions)`` (a view of the feature-major
            output: it must not rely on their memory layout); None for none
        """
        if self._critic_activations_pending:
            raise RuntimeError(
                "target_outputs() must come before critic_outputs(): the first critic reuses the targets' buffers"
            )
        features = self._observation_rows(next_observations)
        if features.dtype != th.float32:
            features = features.float()
        next_actions = self.actor_target.forward(features)[0]
        if smooth is not None:
            next_actions = smooth(next_actions.t()).t()
        inputs = th.cat([features, next_actions])
        return self._stacked([critic.forward(inputs)[0] for critic in self.critic_targets])

    def critic_outputs(self, observations: PyTorchObs, actions: th.Tensor) -> tuple[th.Tensor, list[list[th.Tensor]]]:
        """The critics' outputs for ``(s, a)``, shape ``(batch, n_critics, n_outputs)``, and what the backward passes need."""
        rows = self._observation_rows(observations)
        inputs = self._critic_inputs(rows, actions)
        features = inputs[: rows.shape[0]]
        self._observation_features = (observations, features)  # the actor step of this update reads them again
        passes = [critic.forward(inputs) for critic in self.critics]
        self._critic_activations_pending = True
        return self._stacked([outputs for outputs, _ in passes]), [activations for _, activations in passes]

    def step_critics(self, activations: list[list[th.Tensor]], output_gradients: th.Tensor) -> None:
        """
        One optimizer step of the critics.

        :param activations: from :meth:`critic_outputs`
        :param output_gradients: gradient of the critic loss with respect to the outputs, shape
            ``(batch, n_critics, n_outputs)``
        """
        for index, critic in enumerate(self.critics):
            critic.backward(activations[index], output_gradients[:, index].t())
        self._critic_activations_pending = False
        self.critic_step.step()

    def step_actor(self, observations: PyTorchObs) -> th.Tensor:
        """
        One optimizer step of the actor on the deterministic policy gradient, ``-mean Q_1(s, mu(s))``.

        :return: the actor loss
        """
        cached_observations, features = self._observation_features
        if cached_observations is not observations:  # contiguous: the first layer's weight gradient is faster then
            features = self._observation_rows(observations).to(th.float32, memory_format=th.contiguous_format)
        self._observation_features = (None, features)
        actions, actor_activations = self.actor.forward(features)
        critic = self.critics[0]
        outputs, critic_activations = critic.forward(th.cat([features, actions]))
        actor_loss, output_gradients = self._actor_loss_and_gradients(outputs)
        # Only the critic's action inputs are differentiated, not its parameters.
        action_gradients = critic.backward(
            critic_activations, output_gradients, input_rows=self.action_rows, parameter_gradients=False
        )
        assert action_gradients is not None
        self.actor.backward(actor_activations, action_gradients)
        self.actor_step.step()
        return actor_loss

    def _actor_loss_and_gradients(self, outputs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``-mean Q`` over the batch and its gradient with respect to the critic's feature-major ``outputs``."""
        scale = -1.0 / outputs.shape[1]
        if type(self.readout) is Critic:  # Q is the output itself, and its derivative elementwise: no transposes
            return -outputs.mean(), self.readout.q_value_gradients(outputs, scale)
        q_outputs = outputs.t()
        return -self.readout.q_values(q_outputs).mean(), self.readout.q_value_gradients(q_outputs, scale).t()
