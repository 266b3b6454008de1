"""DDPGExt: DDPG as an SB3 off-policy algorithm, with each later improvement a switch."""

import contextlib
from collections import defaultdict
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import get_parameters_by_name
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer
from stable_baselines3.td3.policies import Actor as TD3Actor
from stable_baselines3.td3.policies import TD3Policy

from sb3_ddpg_ext.common.action_scaling import rescaled_actions
from sb3_ddpg_ext.common.buffers import NStepDictReplayBuffer, PrioritizedSampling, UniformReplayBuffer
from sb3_ddpg_ext.common.distributional import categorical_projection
from sb3_ddpg_ext.common.noise import AdaptiveParamNoise, scheduled_noises
from sb3_ddpg_ext.common.squared_td import squared_td_step
from sb3_ddpg_ext.common.torch_utils import concatenate_observations, evaluation_mode, without_graph
from sb3_ddpg_ext.common.validation import (
    InvalidTypeError,
    InvalidValueError,
    accepted_keyword_arguments,
    check_bounded_box_action_space,
    check_int,
    check_known_keys,
    check_range,
)
from sb3_ddpg_ext.ddpg_ext.actor import Actor
from sb3_ddpg_ext.ddpg_ext.critics import CategoricalCritic, Critic
from sb3_ddpg_ext.ddpg_ext.lean_update import LeanUpdate
from sb3_ddpg_ext.ddpg_ext.policies import CnnPolicy, DDPGExtPolicy, MlpPolicy, MultiInputPolicy

SelfDDPGExt = TypeVar("SelfDDPGExt", bound="DDPGExt")

# Arguments the algorithm passes to the policy itself; they are not for ``policy_kwargs``.
_POLICY_ARGUMENTS_SET_BY_ALGORITHM = ("observation_space", "action_space", "lr_schedule")
_BUFFER_ARGUMENTS_SET_BY_ALGORITHM = (
    "buffer_size",
    "observation_space",
    "action_space",
    "device",
    "n_envs",
    "optimize_memory_usage",
    "env",
)


class DDPGExt(OffPolicyAlgorithm):
    """
    DDPG with extensions, a drop-in replacement for SB3's ``DDPG``.

    With no extension switched on, this is the DDPG update of Lillicrap et al. (2016) as SB3 runs it:
    one critic regressed on ``r + gamma^n (1 - done) Q'(s', mu'(s'))`` and an actor that ascends
    ``Q(s, mu(s))``, both followed by Polyak-averaged target networks.

    DDPG paper: https://arxiv.org/abs/1509.02971
    TD3 paper (``n_critics``, ``policy_delay``, target policy smoothing): https://arxiv.org/abs/1802.09477

    :param policy: The policy model to use (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``) or a policy class
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: learning rate for the Adam optimizers of actor and critic;
        it can be a function of the current progress remaining (from 1 to 0)
    :param buffer_size: size of the replay buffer
    :param learning_starts: how many steps of the model to collect transitions for before learning starts
    :param batch_size: Minibatch size for each gradient update
    :param tau: the soft update coefficient ("Polyak update", in (0, 1])
    :param gamma: the discount factor, in [0, 1]
    :param train_freq: Update the model every ``train_freq`` steps. Alternatively pass a tuple of frequency and unit
        like ``(5, "step")`` or ``(2, "episode")``.
    :param gradient_steps: How many gradient steps to do after each rollout (see ``train_freq``);
        ``-1`` means as many gradient steps as steps done in the environment during the rollout.
    :param action_noise: the action noise added for exploration (None by default),
        cf ``stable_baselines3.common.noise``
    :param replay_buffer_class: Replay buffer class to use (for instance ``HerReplayBuffer``).
        If ``None``, it is selected from the observation space and ``n_steps``.
    :param replay_buffer_kwargs: Keyword arguments to pass to the replay buffer on creation.
    :param optimize_memory_usage: Enable a memory efficient variant of the replay buffer
        at a cost of more complexity.
        See https://github.com/DLR-RM/stable-baselines3/issues/37#issuecomment-637501195
    :param n_steps: n-step returns when > 1. Unlike SB3, it is also applied to a custom ``replay_buffer_class``
        that accepts ``n_steps``/``gamma`` (and a clear error is raised for one that does not).
    :param policy_delay: update the actor and the target networks once every ``policy_delay`` critic updates
        (TD3 uses 2; DDPG 1)
    :param target_policy_noise: standard deviation of the Gaussian noise added to the target action
        (TD3's target policy smoothing; 0 switches it off)
    :param target_noise_clip: absolute limit of that noise (clipping only when > 0)
    :param param_noise: adaptive parameter-space noise (Plappert et al. 2018): collect with a perturbed copy
        of the actor, re-perturbed at each episode end (alone or together with ``action_noise``)
    :param lean_update: compute the gradients of plain networks by hand instead of with autograd: the same
        update, with less work (see :class:`~sb3_ddpg_ext.ddpg_ext.lean_update.LeanUpdate`). Policies it
        cannot run (normalisation layers, activations other than ReLU, features extractors other than
        flattening, no target networks) use autograd whatever this says; False forces autograd.
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation, see :class:`DDPGExtPolicy`
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }
    # Lists of tensors derived from the policy in _create_aliases: rebuilt on load, never saved.
    _derived_attributes = (
        "_actor_params",
        "_online_params",
        "_target_params",
        "_online_running_stats",
        "_target_running_stats",
        "_lean",
        "_acts_through_mu",
        "_rescales_compiled",
    )

    _perturbed_at_episode = -1

    policy: DDPGExtPolicy
    actor: Actor
    critic: Critic
    # None in CrossQ mode (policy_kwargs batch_norm=True), which has no target networks.
    actor_target: Actor | None
    critic_target: Critic | None

    def __init__(
        self,
        policy: str | type[DDPGExtPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        policy_delay: int = 1,
        target_policy_noise: float = 0.0,
        target_noise_clip: float = 0.0,
        param_noise: AdaptiveParamNoise | None = None,
        lean_update: bool = True,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        self._check_policy(policy)
        if env is not None:
            # Made here rather than in SB3's constructor, whose action-space check is an assertion.
            env = maybe_make_env(env, verbose)
            check_bounded_box_action_space(env.action_space)
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Box,),
            support_multi_env=True,
        )
        self.policy_delay = policy_delay
        self.target_policy_noise = target_policy_noise
        self.target_noise_clip = target_noise_clip
        self.param_noise = param_noise
        self.lean_update = lean_update
        self._check_arguments()

        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ construction

    @classmethod
    def _check_policy(cls, policy: Any) -> None:
        if isinstance(policy, str):
            if policy not in cls.policy_aliases:
                raise InvalidValueError(
                    f"`policy` must be one of {sorted(cls.policy_aliases)} or a policy class, got {policy!r}"
                )
        elif not (isinstance(policy, type) and issubclass(policy, DDPGExtPolicy)):
            # SB3's TD3 policies (DDPG's MlpPolicy class) lack the critic readout the update uses; the alias works.
            raise InvalidTypeError(
                f"`policy` must be a policy alias string ({', '.join(sorted(cls.policy_aliases))}) or a DDPGExtPolicy "
                f"subclass, got {policy!r}"
            )

    def _check_arguments(self) -> None:
        """Raise a clear error for any invalid constructor argument, before anything is built."""
        if not callable(self.learning_rate):
            check_range("learning_rate", self.learning_rate, low=0.0, low_inclusive=False)
        check_int("buffer_size", self.buffer_size, 1)
        check_int("learning_starts", self.learning_starts, 0)
        check_int("batch_size", self.batch_size, 1)
        check_range("tau", self.tau, low=0.0, high=1.0, low_inclusive=False)
        check_range("gamma", self.gamma, low=0.0, high=1.0)
        check_int("gradient_steps", self.gradient_steps, -1)
        check_int("n_steps", self.n_steps, 1)
        check_int("policy_delay", self.policy_delay, 1)
        check_range("target_policy_noise", self.target_policy_noise, low=0.0)
        check_range("target_noise_clip", self.target_noise_clip, low=0.0)
        if self.action_noise is not None and not isinstance(self.action_noise, ActionNoise):
            raise InvalidTypeError(f"`action_noise` must be None or an ActionNoise instance, got {self.action_noise!r}")
        if self.param_noise is not None and not isinstance(self.param_noise, AdaptiveParamNoise):
            raise InvalidTypeError(f"`param_noise` must be None or an AdaptiveParamNoise instance, got {self.param_noise!r}")
        if not isinstance(self.lean_update, bool):
            raise InvalidTypeError(f"`lean_update` must be a bool, got {self.lean_update!r}")
        check_known_keys(
            "policy_kwargs",
            self.policy_kwargs,
            accepted_keyword_arguments(self.policy_class, skip=_POLICY_ARGUMENTS_SET_BY_ALGORITHM),
        )

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        if self.replay_buffer is None:
            self.replay_buffer = self._make_replay_buffer()
        policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule, **self.policy_kwargs)
        self.policy = policy.to(self.device)  # type: ignore[assignment]
        self._convert_train_freq()
        self._create_aliases()

    def _make_replay_buffer(self) -> ReplayBuffer:
        """
        Build the replay buffer. ``n_steps`` is handed to any buffer class that takes it (SB3 drops it
        silently for a custom class); a class that cannot do n-step returns is an error, not a no-op.
        """
        if self.replay_buffer_class is None:
            if isinstance(self.observation_space, spaces.Dict):
                self.replay_buffer_class = NStepDictReplayBuffer if self.n_steps > 1 else DictReplayBuffer
            else:
                self.replay_buffer_class = UniformReplayBuffer
        handed_over = self._pass_n_steps_to_buffer(self.replay_buffer_class)
        check_known_keys(
            "replay_buffer_kwargs",
            self.replay_buffer_kwargs,
            accepted_keyword_arguments(self.replay_buffer_class, skip=_BUFFER_ARGUMENTS_SET_BY_ALGORITHM),
        )
        # A local copy: the env must not be pickled with the kwargs when using HerReplayBuffer.
        replay_buffer_kwargs = self.replay_buffer_kwargs.copy()
        if issubclass(self.replay_buffer_class, HerReplayBuffer):
            assert self.env is not None, "You must pass an environment when using `HerReplayBuffer`"
            replay_buffer_kwargs["env"] = self.env
        try:
            return self.replay_buffer_class(
                self.buffer_size,
                self.observation_space,
                self.action_space,
                device=self.device,
                n_envs=self.n_envs,
                optimize_memory_usage=self.optimize_memory_usage,
                **replay_buffer_kwargs,
            )
        except TypeError as error:
            if not handed_over or not any(f"'{key}'" in str(error) for key in handed_over):
                raise
            # A buffer taking **kwargs that does not compute n-step returns after all.
            raise InvalidTypeError(
                f"n-step returns hand {handed_over} to `replay_buffer_class={self.replay_buffer_class.__name__}`, "
                f"which cannot take them ({error}); use a buffer that computes n-step returns, or n_steps=1"
            ) from error

    def _pass_n_steps_to_buffer(self, buffer_class: type[ReplayBuffer]) -> list[str]:
        """
        With n-step returns (``n_steps > 1`` here, or in ``replay_buffer_kwargs`` as SB3 documents for custom
        buffers), give ``n_steps`` and ``gamma`` to the buffer, so that its returns are discounted as the
        algorithm's; refuse a contradiction, or a buffer that cannot take them. With 1-step returns nothing is
        handed over (as SB3, which passes them to its own ``NStepReplayBuffer`` only).

        :return: the keys added to ``replay_buffer_kwargs``
        """
        given = self.replay_buffer_kwargs
        n_steps = self.n_steps if self.n_steps > 1 else given.get("n_steps", 1)
        for key, value in (("n_steps", n_steps), ("gamma", self.gamma)):
            # A contradicting gamma is refused even where it would go unused: nothing is silently ignored.
            if given.get(key, value) != value:
                raise InvalidValueError(f"`replay_buffer_kwargs['{key}']={given[key]!r}` contradicts `{key}={value!r}`")
        if n_steps == 1:
            return []
        accepted = accepted_keyword_arguments(buffer_class)
        if accepted is not None and not {"n_steps", "gamma"} <= accepted:
            raise InvalidValueError(
                f"`n_steps={n_steps}` needs a replay buffer that computes n-step returns, but "
                f"`replay_buffer_class={buffer_class.__name__}` takes no `n_steps`/`gamma` arguments"
            )
        added = [key for key in ("n_steps", "gamma") if key not in given]
        # A new dict: the caller's stays untouched.
        self.replay_buffer_kwargs = {**given, "n_steps": n_steps, "gamma": self.gamma}
        return added

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.actor_target = self.policy.actor_target
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target
        # Resolved once: walking the module tree on every update costs more than the update of a small net.
        self._actor_params: list[th.Tensor] = list(self.actor.parameters())
        self._online_params: list[th.Tensor] = []
        self._target_params: list[th.Tensor] = []
        self._online_running_stats: list[th.Tensor] = []
        self._target_running_stats: list[th.Tensor] = []
        for online, target in ((self.critic, self.critic_target), (self.actor, self.actor_target)):
            if target is not None:  # CrossQ has no target networks
                self._online_params += online.parameters()
                self._target_params += target.parameters()
                self._online_running_stats += get_parameters_by_name(online, ["running_"])
                self._target_running_stats += get_parameters_by_name(target, ["running_"])
        self._lean: LeanUpdate | None = LeanUpdate.build(self.policy) if self.lean_update else None
        # predict() for these policies is the actor's MLP on the flattened observations, unscaled (TD3's code).
        self._acts_through_mu = (
            self._lean is not None
            and self.policy.squash_output
            and type(self.policy)._predict is TD3Policy._predict
            and type(self.actor).forward is TD3Actor.forward
        )
        # ... and its rescaling (predict's unscale, _sample_action's scale, the env action's unscale) is SB3's code on
        # a float32 Box: one compiled call without action noise.
        self._rescales_compiled = (
            self._acts_through_mu
            and isinstance(self.action_space, spaces.Box)
            and self.action_space.dtype == np.float32
            and len(self.action_space.shape) == 1
            and type(self.policy).scale_action is BasePolicy.scale_action
            and type(self.policy).unscale_action is BasePolicy.unscale_action
        )

    # ------------------------------------------------------------------ the update

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        assert self.replay_buffer is not None
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])

        prioritized = self.replay_buffer if isinstance(self.replay_buffer, PrioritizedSampling) else None
        if prioritized is not None:
            prioritized.set_progress(1.0 - self._current_progress_remaining)

        stats: dict[str, list[th.Tensor]] = defaultdict(list)
        # The lean update records no graph: in inference mode every tensor op skips autograd's dispatch layers
        # (~12% of a small network's update). The tensors it keeps across updates are made outside it.
        with th.inference_mode(self._lean is not None):
            for _ in range(gradient_steps):
                self._gradient_step(batch_size, prioritized, stats)
        self._record_train_stats(stats, prioritized)

    def _gradient_step(
        self, batch_size: int, prioritized: PrioritizedSampling | None, stats: dict[str, list[th.Tensor]]
    ) -> None:
        """One critic update on a fresh batch, then the actor and targets every ``policy_delay`` updates."""
        assert self.replay_buffer is not None
        self._n_updates += 1
        batch = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)

        critic_loss, priorities, priority_mean, q_mean = self._update_critic(batch)
        if prioritized is not None:
            prioritized.update_priorities(batch.indices, priorities)  # type: ignore[attr-defined]
            stats["is_weight_mean"].append(batch.weights.mean())  # type: ignore[attr-defined]

        if self._n_updates % self.policy_delay == 0:
            stats["actor_loss"].append(self._update_actor(batch.observations))
            self._update_target_networks()
        if self.param_noise is not None and self._n_updates % self.param_noise.adaptation_interval == 0:
            self.param_noise.adapt(self.actor, batch.observations)

        stats["critic_loss"].append(without_graph(critic_loss))
        stats["cross_entropy_mean" if isinstance(self.critic, CategoricalCritic) else "td_error_mean"].append(priority_mean)
        stats["q_mean"].append(q_mean)

    def _update_critic(self, batch: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """
        One optimizer step of the critics on :meth:`_critic_loss`.

        :return: the loss, each sample's priority, the priorities' mean and the mean Q-value
        """
        if self._lean is not None:
            return self._update_critic_lean(batch)
        outputs, next_outputs = self._critic_outputs(batch)
        target = self._td_target(batch, next_outputs)
        critic_loss, priorities, current_q = self._critic_loss(batch, outputs, target)
        self._optimize(self.critic.optimizer, critic_loss)
        return critic_loss, priorities, priorities.mean(), current_q.mean()

    def _update_critic_lean(self, batch: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """The same step with the lean update's passes and the gradient of :meth:`_critic_loss` written out."""
        assert self._lean is not None
        smooth = self._smooth_target_actions if self.target_policy_noise > 0 else None
        next_outputs = self._lean.target_outputs(batch.next_observations, smooth)
        outputs, activations = self._lean.critic_outputs(batch.observations, batch.actions)
        if type(self.critic) is Critic and outputs.device.type == "cpu":
            # Scalar critics: _td_target, _critic_loss and their gradient in one compiled pass (the same arithmetic).
            step = squared_td_step(
                next_outputs, outputs, batch.rewards, batch.dones, self.gamma, batch.discounts, getattr(batch, "weights", None)
            )
            self._lean.step_critics(activations, step.output_gradients)
            return step.loss, step.priorities, step.priority_mean, step.q_mean
        target = self._td_target(batch, next_outputs)
        critic_loss, priorities, current_q = self._critic_loss(batch, outputs, target)
        self._lean.step_critics(activations, self._critic_loss_gradients(batch, outputs, target, current_q))
        return critic_loss, priorities, priorities.mean(), current_q.mean()

    def _critic_loss_gradients(
        self, batch: ReplayBufferSamples, outputs: th.Tensor, target: th.Tensor, current_q: th.Tensor
    ) -> th.Tensor:
        """
        The derivative of :meth:`_critic_loss` with respect to the critics' outputs: per sample ``i`` and critic
        ``k``, ``w_i / B`` times ``2 (Q_ik - y_i)`` (squared TD error) or ``softmax(x_ik) - y_i`` (cross-entropy
        to the target distribution ``y_i``, which sums to 1); ``w = 1`` without prioritization.

        :return: shape ``(batch_size, n_critics, n_outputs)``
        """
        weights = getattr(batch, "weights", None)
        scale = 1.0 / outputs.shape[0]
        if isinstance(self.critic, CategoricalCritic):
            gradients = th.softmax(outputs, dim=-1).sub_(target.unsqueeze(1))
            return gradients.mul_(scale) if weights is None else gradients.mul_(weights.view(-1, 1, 1) * scale)
        gradients = current_q - target
        gradients = gradients.mul_(2.0 * scale) if weights is None else gradients.mul_(weights * (2.0 * scale))
        return gradients.unsqueeze(-1)

    def _update_actor(self, observations: PyTorchObs) -> th.Tensor:
        """One optimizer step of the actor on :meth:`_actor_loss`; returns the loss."""
        if self._lean is not None:
            return self._lean.step_actor(observations)
        actor_loss = self._actor_loss(observations)
        # Gradients for the actor's parameters only: the critic's weight gradients would be
        # computed through the actor loss and thrown away (one large matmul per critic layer).
        self._optimize(self.actor.optimizer, actor_loss, inputs=self._actor_params)
        return actor_loss.detach()

    def _critic_outputs(self, batch: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor]:
        """
        The critics' outputs for ``(s, a)``, with gradients, and the target critics' for ``(s', a')``,
        without; ``a'`` is the target actor's action (smoothed by clipped noise when
        ``target_policy_noise > 0``). CrossQ has no target networks: the critic evaluates both batches
        in one forward pass, in training mode, so that its BatchRenorm statistics describe their mixture.

        :param batch: replay samples
        :return: two tensors of shape ``(batch_size, n_critics, n_outputs)``
        """
        with th.no_grad():
            next_actions = self._target_actions(batch.next_observations)
        if self.critic_target is not None:
            outputs = th.stack(self.critic(batch.observations, batch.actions), dim=1)
            with th.no_grad():
                next_outputs = th.stack(self.critic_target(batch.next_observations, next_actions), dim=1)
            return outputs, next_outputs
        joint_observations = concatenate_observations(batch.observations, batch.next_observations)
        joint_outputs = th.stack(self.critic(joint_observations, th.cat([batch.actions, next_actions])), dim=1)
        outputs, next_outputs = joint_outputs.split(batch.actions.shape[0])
        return outputs, next_outputs.detach()

    def _target_actions(self, next_observations: PyTorchObs) -> th.Tensor:
        if self.actor_target is not None:
            actions = self.actor_target(next_observations)
        else:
            with evaluation_mode(self.actor):  # CrossQ: the actor itself, its statistics left as they are
                actions = self.actor(next_observations)
        return self._smooth_target_actions(actions)

    def _smooth_target_actions(self, actions: th.Tensor) -> th.Tensor:
        """TD3's target policy smoothing: clipped Gaussian noise on the target actions (when switched on)."""
        if self.target_policy_noise > 0:
            # Drawn in (batch, action) order whatever the layout of `actions` (the lean update's is transposed).
            noise = th.randn(actions.shape, dtype=actions.dtype, device=actions.device) * self.target_policy_noise
            if self.target_noise_clip > 0:
                noise = noise.clamp(-self.target_noise_clip, self.target_noise_clip)
            actions = (actions + noise).clamp(-1.0, 1.0)
        return actions

    def _td_target(self, batch: ReplayBufferSamples, next_outputs: th.Tensor) -> th.Tensor:
        """
        The critic's regression target. Plain critics: ``y = r + discount * (1 - done) * min_k Q'_k(s', a')``
        (clipped double Q over the ``n_critics`` target critics). Categorical critics: the bootstrap
        distribution of the target critic with the lowest mean, shifted by ``r``, scaled by
        ``discount * (1 - done)`` and projected onto the support. For n-step samples the buffer gives
        the n-step reward sum and the matching ``discount = gamma^m``; otherwise ``discount = gamma``.

        :param batch: replay samples
        :param next_outputs: the target critics' outputs for ``(s', a')``, see :meth:`_critic_outputs`
        :return: TD targets, shape ``(batch_size, 1)``, or target distributions, shape ``(batch_size, n_atoms)``
        """
        not_done = 1.0 - batch.dones
        next_q = self.critic.q_values(next_outputs)  # (batch, n_critics)
        if isinstance(self.critic, CategoricalCritic):
            bootstrap_discounts = not_done * (batch.discounts if batch.discounts is not None else self.gamma)
            lowest = next_outputs[th.arange(next_q.shape[0]), next_q.argmin(dim=1)]
            return categorical_projection(th.softmax(lowest, dim=-1), batch.rewards, bootstrap_discounts, self.critic.atoms)
        lowest_q = next_q if next_q.shape[1] == 1 else next_q.amin(dim=1, keepdim=True)
        if batch.discounts is None:  # r + (gamma * (1 - done)) * Q: the same rounding as the line below, one op less
            return th.addcmul(batch.rewards, not_done, lowest_q, value=self.gamma)
        return th.addcmul(batch.rewards, not_done * batch.discounts, lowest_q)

    def _critic_loss(
        self, batch: ReplayBufferSamples, outputs: th.Tensor, target: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        Per sample: the sum over critics of the squared TD error (plain, as SB3's TD3/DDPG) or of the
        cross-entropy to the target distribution (categorical). The loss is their mean over the batch,
        weighted by the importance weights when the samples are prioritized.

        :param batch: replay samples (with ``weights`` when prioritized)
        :param outputs: the critics' outputs for ``(s, a)``, see :meth:`_critic_outputs`
        :param target: output of :meth:`_td_target`
        :return: the loss; each sample's priority, shape ``(batch_size,)``: the mean over critics of the
            absolute TD error (plain) or of the cross-entropy (categorical); the critics' current
            Q-values, shape ``(batch_size, n_critics)``
        """
        if isinstance(self.critic, CategoricalCritic):
            per_critic_loss = -(target.unsqueeze(1) * th.log_softmax(outputs, dim=-1)).sum(dim=-1)
            priorities = per_critic_loss.detach().mean(dim=1)
            q_values = self.critic.q_values(outputs.detach())
        else:
            q_values = self.critic.q_values(outputs)
            td_errors = q_values - target
            per_critic_loss = td_errors.square()
            priorities = without_graph(td_errors).abs().mean(dim=1)
        per_sample_loss = per_critic_loss.sum(dim=1)
        weights = getattr(batch, "weights", None)
        loss = per_sample_loss.mean() if weights is None else (per_sample_loss * weights.view(-1)).mean()
        return loss, priorities, without_graph(q_values)

    def _actor_loss(self, observations: PyTorchObs) -> th.Tensor:
        """Deterministic policy gradient: maximise the first critic's ``Q(s, mu(s))``."""
        actions = self.actor(observations)
        # CrossQ evaluates the critic with its running statistics here, as sb3-contrib's CrossQ does.
        with evaluation_mode(self.critic) if self.critic_target is None else contextlib.nullcontext():
            return -self.critic.q_values(self.critic.q1_forward(observations, actions)).mean()

    @staticmethod
    def _optimize(optimizer: th.optim.Optimizer, loss: th.Tensor, inputs: list[th.Tensor] | None = None) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=inputs)
        optimizer.step()

    @th.no_grad()
    def _update_target_networks(self) -> None:
        if not self._target_params:  # CrossQ
            return
        # One fused call over all tensors: target <- target + tau * (online - target).
        th._foreach_lerp_(self._target_params, self._online_params, self.tau)
        if self._online_running_stats:
            # Running statistics (BatchNorm) are copied, not averaged, see SB3 issue #996.
            th._foreach_copy_(self._target_running_stats, self._online_running_stats)

    def _record_train_stats(self, stats: dict[str, list[th.Tensor]], prioritized: PrioritizedSampling | None) -> None:
        # One device sync per statistic and train() call instead of one per gradient step.
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        means = [values[0] if len(values) == 1 else th.stack(values).mean() for values in stats.values()]
        for name, mean in zip(stats, th.stack(means).tolist(), strict=True):  # one device sync, not one per statistic
            self.logger.record(f"train/{name}", mean)
        if self.param_noise is not None:
            self.logger.record("train/param_noise_std", self.param_noise.std)
            self.logger.record("train/param_noise_distance", self.param_noise.last_distance)
        if prioritized is not None:
            self.logger.record("train/beta", prioritized.beta)
            self.logger.record("train/priority_mean", prioritized.priority_mean)
            self.logger.record("train/priority_max", prioritized.max_priority)

    # ------------------------------------------------------------------ exploration

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.num_timesteps < learning_starts or (self.param_noise is None and not self._acts_through_mu):
            return super()._sample_action(learning_starts, action_noise, n_envs)
        if self.param_noise is None:
            return self._sample_action_through_mu(action_noise, n_envs)
        # One perturbation per episode (the first env's episodes when several run), as in the paper.
        if self.param_noise.perturbed_actor is None or self._perturbed_at_episode != self._episode_num:
            self.param_noise.perturb(self.actor)
            self._perturbed_at_episode = self._episode_num
        assert self.param_noise.perturbed_actor is not None and self._last_obs is not None
        observations, _ = self.policy.obs_to_tensor(self._last_obs)
        with th.no_grad():
            scaled_action = self.param_noise.perturbed_actor(observations).cpu().numpy()
        assert isinstance(self.action_space, spaces.Box)
        return self._noisy_actions(scaled_action.reshape((n_envs, *self.action_space.shape)), action_noise)

    def _sample_action_through_mu(self, action_noise: ActionNoise | None, n_envs: int) -> tuple[np.ndarray, np.ndarray]:
        """
        SB3's ``_sample_action`` after ``learning_starts`` for the policies the lean update runs (flattened Box
        observations, a plain MLP actor, TD3's ``predict``), with the actor's layers called directly (the lean update's
        :meth:`~sb3_ddpg_ext.ddpg_ext.lean_update.LeanUpdate.act`): the same actions, without ``predict``'s per-call
        input checks and mode switches and without module calls (a 400-300 actor on this CPU: ~70 instead of ~200 us).
        """
        assert self._lean is not None and isinstance(self._last_obs, np.ndarray) and isinstance(self.action_space, spaces.Box)
        with th.inference_mode():
            actor_outputs = self._lean.act(self._last_obs).reshape((n_envs, *self.action_space.shape))
        if action_noise is None and self._rescales_compiled:
            return rescaled_actions(actor_outputs, self.action_space.low, self.action_space.high)
        # Through the env's action scale and back, as SB3 does (predict unscales, _sample_action rescales):
        # the buffer then holds the same floats.
        return self._noisy_actions(self.policy.scale_action(self.policy.unscale_action(actor_outputs)), action_noise)

    def _noisy_actions(self, scaled_action: np.ndarray, action_noise: ActionNoise | None) -> tuple[np.ndarray, np.ndarray]:
        """SB3's tail of ``_sample_action``: the action noise added and clipped in [-1, 1]; (env action, buffer action)."""
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        return self.policy.unscale_action(scaled_action), scaled_action

    def _on_step(self) -> None:
        # Called after each environment step, once the progress is updated.
        for noise in scheduled_noises(self.action_noise):
            noise.set_progress_remaining(self._current_progress_remaining)

    # ------------------------------------------------------------------ SB3 plumbing

    def learn(
        self: SelfDDPGExt,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "DDPGExt",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDDPGExt:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "actor",
            "critic",
            "actor_target",
            "critic_target",
            *self._derived_attributes,
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "actor.optimizer", "critic.optimizer"], []
