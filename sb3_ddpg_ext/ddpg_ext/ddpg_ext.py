"""DDPGExt: DDPG as an SB3 off-policy algorithm, with each later improvement a switch."""

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import maybe_make_env
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, ReplayBufferSamples, Schedule

from sb3_ddpg_ext.common.buffer_setup import make_replay_buffer
from sb3_ddpg_ext.common.buffers import PrioritizedSampling, truncate_newest
from sb3_ddpg_ext.common.noise import AdaptiveParamNoise, scheduled_noises
from sb3_ddpg_ext.common.validation import (
    check_bounded_box_action_space,
)
from sb3_ddpg_ext.ddpg_ext.actor import Actor
from sb3_ddpg_ext.ddpg_ext.arguments import check_arguments, check_parts_fit, check_policy
from sb3_ddpg_ext.ddpg_ext.checkpoints import make_policy_checkpoints
from sb3_ddpg_ext.ddpg_ext.critics import Critic
from sb3_ddpg_ext.ddpg_ext.fast_sale import FastSaleUpdate
from sb3_ddpg_ext.ddpg_ext.fast_update import FastUpdate
from sb3_ddpg_ext.ddpg_ext.policies import CnnPolicy, DDPGExtPolicy, MlpPolicy, MultiInputPolicy
from sb3_ddpg_ext.ddpg_ext.target_values import TargetValueRange
from sb3_ddpg_ext.ddpg_ext.train_stats import TrainStats
from sb3_ddpg_ext.ddpg_ext.update import AutogradUpdate, TargetAveraging, TargetSmoothing, UpdateBackend

SelfDDPGExt = TypeVar("SelfDDPGExt", bound="DDPGExt")


class _UpdateSetup(NamedTuple):
    """What train() runs with: chosen for the objects in ``key``, and chosen again when one of them changes."""

    key: tuple[Any, ...]
    backend: UpdateBackend
    # The fast backend records no graph: in inference mode every tensor op skips autograd's dispatch layers.
    inference_mode: bool
    target_averaging: TargetAveraging
    # TD7's SALE: one optimizer step of the encoder on a batch, returning its loss (None without SALE).
    encoder_step: Callable[[ReplayBufferSamples], th.Tensor] | None


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
    :param target_update_interval: update the target networks every that many critic updates instead, by
        ``tau`` (``tau=1``: TD7's hard copies, every 250); None: with the actor, every ``policy_delay``
    :param target_value_clipping: TD7's value clipping: bootstrap values clipped to the range of the TD targets seen
        before the last target update (:class:`~sb3_ddpg_ext.ddpg_ext.target_values.TargetValueRange`)
    :param policy_checkpoints: TD7's policy checkpoints (:mod:`~sb3_ddpg_ext.ddpg_ext.checkpoints`): True for TD7's
        schedule, or a dict of :class:`~sb3_ddpg_ext.ddpg_ext.checkpoints.PolicyCheckpoints`' arguments. The updates
        wait while the current policy is assessed over training episodes (they need episodes that end); ``predict``
        (and so ``evaluate_policy``, ``EvalCallback``) acts with the best policy checkpointed so far, collection with
        the current actor; the model saves and loads both
    :param target_policy_noise: standard deviation of the Gaussian noise added to the target action
        (TD3's target policy smoothing; 0 switches it off)
    :param target_noise_clip: absolute limit of that noise (clipping only when > 0)
    :param param_noise: adaptive parameter-space noise (Plappert et al. 2018): collect with a perturbed copy
        of the actor, re-perturbed at each episode end (alone or together with ``action_noise``)
    :param lean_update: run the update's network passes on the fast backend
        (:class:`~sb3_ddpg_ext.ddpg_ext.fast_update.FastUpdate`, gradients derived by hand: the same update with less
        work) where it supports the policy (ReLU or ELU MLPs with LayerNorm or BatchRenorm, CrossQ's joint pass,
        SimBa's residual networks, TD7's SALE networks: :class:`~sb3_ddpg_ext.ddpg_ext.fast_sale.FastSaleUpdate`,
        on flattened observations); other policies, or False, run the specification
        (:class:`~sb3_ddpg_ext.ddpg_ext.update.AutogradUpdate`). Replacing
        a network or an optimizer after construction takes effect at the next ``train()``: the backend is chosen
        again for the new objects.
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
    _update_setup: _UpdateSetup | None = None  # derived from the policy in train(): never saved

    policy: DDPGExtPolicy

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
        target_update_interval: int | None = None,
        target_value_clipping: bool = False,
        policy_checkpoints: bool | dict[str, Any] = False,
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
        check_policy(policy, self.policy_aliases)
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
        self.target_update_interval = target_update_interval
        self.target_value_clipping = target_value_clipping
        self._value_range = TargetValueRange() if target_value_clipping is True else None
        self.policy_checkpoints = policy_checkpoints
        self._checkpoints = make_policy_checkpoints(policy_checkpoints)
        self.target_policy_noise = target_policy_noise
        self.target_noise_clip = target_noise_clip
        self.param_noise = param_noise
        self.lean_update = lean_update
        check_arguments(self)

        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ construction

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        if self.replay_buffer is None:
            # Also for a custom class, n_steps/gamma are handed over (SB3 ignores n_steps there).
            self.replay_buffer = make_replay_buffer(self)
        checkpoint = self._checkpoints is not None  # the policy keeps the checkpoint actor (and saves it)
        policy_kwargs = {**self.policy_kwargs, "checkpoint": True} if checkpoint else self.policy_kwargs
        policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule, **policy_kwargs)
        self.policy = policy.to(self.device)  # type: ignore[assignment]
        self._convert_train_freq()
        check_parts_fit(self)

    # SB3's names for the networks (as TD3's aliases), read from the policy: replacing one there is seen here.
    @property
    def actor(self) -> Actor:  # type: ignore[override]
        return self.policy.actor

    @property
    def critic(self) -> Critic:
        return self.policy.critic

    @property
    def actor_target(self) -> Actor | None:
        """None without target networks (CrossQ)."""
        return self.policy.actor_target

    @property
    def critic_target(self) -> Critic | None:
        """None without target networks (CrossQ)."""
        return self.policy.critic_target

    # ------------------------------------------------------------------ the update

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        """
        ``gradient_steps`` updates, each in the order of DDPG (Lillicrap et al. 2016) and TD3 (Fujimoto et al. 2018):
        a batch; the critics' TD targets from the target networks; one critic step, whose per-sample errors are the
        new priorities of prioritized replay; every ``policy_delay`` updates one actor step on the deterministic
        policy gradient; the target networks' Polyak averaging with it, or every ``target_update_interval`` updates,
        where TD7's value range and SALE's fixed encoders are renewed too (and, with ``target_update_interval``, LAP's
        maximum priority).
        """
        assert self.replay_buffer is not None
        if self._checkpoints is not None:  # TD7: no update while the current policy is assessed
            gradient_steps = self._checkpoints.updates_to_run(gradient_steps, self.policy)
            if gradient_steps == 0:
                return
        n_updates_before = self._n_updates
        self.policy.set_training_mode(True)
        self._update_learning_rate(list(self.policy.optimizers().values()))
        setup = self._current_update_setup()
        prioritized = self.replay_buffer if isinstance(self.replay_buffer, PrioritizedSampling) else None
        if prioritized is not None:
            prioritized.set_progress(1.0 - self._current_progress_remaining)

        huber_threshold = None if prioritized is None else prioritized.huber_threshold
        targets_every = self.policy_delay if self.target_update_interval is None else self.target_update_interval
        value_range = self._value_range
        stats = TrainStats()
        with th.inference_mode(setup.inference_mode):
            for _ in range(gradient_steps):
                self._n_updates += 1
                batch = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
                weights = getattr(batch, "weights", None)
                if setup.encoder_step is not None:  # TD7: the encoder first, on the same batch
                    stats.add("encoder_loss", setup.encoder_step(batch))

                outputs, next_outputs = setup.backend.critic_outputs(batch)
                if value_range is not None:
                    next_outputs = value_range.clip(next_outputs)
                target = self.critic.td_target(next_outputs, batch.rewards, self._bootstrap_discounts(batch))
                loss = self.critic.loss(outputs, target, weights, huber_threshold=huber_threshold)
                setup.backend.step_critics(loss)
                if prioritized is not None:
                    prioritized.update_priorities(batch.indices, loss.errors)  # type: ignore[attr-defined]
                    if prioritized.beta is not None:
                        stats.add("is_weight_mean", weights.mean())  # type: ignore[union-attr]
                if value_range is not None:
                    value_range.observe(target)

                if self._n_updates % self.policy_delay == 0:
                    stats.add("actor_loss", setup.backend.step_actor(batch.observations))
                if self._n_updates % targets_every == 0:
                    self._update_targets(setup.target_averaging, prioritized)
                if self.param_noise is not None and self._n_updates % self.param_noise.adaptation_interval == 0:
                    self.param_noise.adapt(self.actor, batch.observations)

                stats.add("critic_loss", loss.loss.detach())
                stats.add(self.critic.metric_name, loss.error_mean)
                stats.add("q_mean", loss.q_values.mean())
        stats.record(self.logger, self._n_updates, self.param_noise, prioritized, self._checkpoints)
        if self._checkpoints is not None:
            self._checkpoints.after_updates(n_updates_before, self._n_updates)

    def _update_targets(self, averaging: TargetAveraging, prioritized: PrioritizedSampling | None) -> None:
        """The target networks' averaging, and what TD7 renews with it: encoders, value range, LAP's max priority
        (at periodic target updates only: with Polyak averaging at every update it would scan the buffer each time)."""
        averaging.update(self.tau)
        self.policy.refresh_encoders()
        if self._value_range is not None:
            self._value_range.roll()
        if prioritized is not None and self.target_update_interval is not None:  # TD7's periodic targets only
            prioritized.reset_max_priority()

    def _bootstrap_discounts(self, batch: ReplayBufferSamples) -> th.Tensor:
        """``gamma^m (1 - done)`` per sample: the buffer's ``gamma^m`` for n-step samples, else ``gamma``."""
        discounts = batch.discounts
        return (1.0 - batch.dones) * (self.gamma if discounts is None else discounts)

    def _current_update_setup(self) -> _UpdateSetup:
        """The backend and target lists for the policy's current networks and optimizers (chosen again on a change)."""
        policy = self.policy
        optimizers = tuple(policy.optimizers().values())
        sizes = tuple(sum(len(group["params"]) for group in optimizer.param_groups) for optimizer in optimizers)
        networks = (policy, policy.actor, policy.critic, policy.actor_target, policy.critic_target)
        moves = policy.__dict__.get("_moves", 0)  # .to(device/dtype) replaces the tensors the fast backend holds
        key = (*networks, moves, *optimizers, *sizes, self.lean_update, self.target_policy_noise, self.target_noise_clip)
        setup = self._update_setup
        if setup is None or setup.key != key:  # modules and optimizers compare by identity
            setup = self._update_setup = self._choose_update(key)
        return setup

    def _choose_update(self, key: tuple[Any, ...]) -> _UpdateSetup:
        """The one place where the update's backend is chosen: the fast one where it supports the policy."""
        smoothing = TargetSmoothing(self.target_policy_noise, self.target_noise_clip)
        fast_backend = FastUpdate if self.policy.sale is None else FastSaleUpdate  # SALE's networks are TD7's own
        fast = fast_backend.build(self.policy, smoothing) if self.lean_update else None
        backend: UpdateBackend = fast if fast is not None else AutogradUpdate(self.policy, smoothing)
        encoder_step = None
        if self.policy.sale is not None:
            encoder_step = fast.train_encoder if isinstance(fast, FastSaleUpdate) else self.policy.train_encoder
        return _UpdateSetup(key, backend, fast is not None, TargetAveraging(self.policy), encoder_step)

    # ------------------------------------------------------------------ exploration

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """SB3's random actions before ``learning_starts``, then the policy's exploration actions."""
        if self.num_timesteps < learning_starts:
            return super()._sample_action(learning_starts, action_noise, n_envs)
        assert self._last_obs is not None
        return self.policy.exploration_actions(self._last_obs, action_noise, self.param_noise, self._episode_num)

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: Any,
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        if self._checkpoints is not None:  # the episode returns TD7 judges policies by (before VecNormalize)
            original = reward if self._vec_normalize_env is None else self._vec_normalize_env.get_original_reward()
            from_policy = self.num_timesteps - self.n_envs >= self.learning_starts  # SB3 counted this step already
            self._checkpoints.record(original, dones, from_policy)
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)

    def _on_step(self) -> None:
        # Called after each environment step, once the progress is updated and _last_obs holds the new observations.
        for noise in scheduled_noises(self.action_noise):
            noise.set_progress_remaining(self._current_progress_remaining)
        self.policy.observe(self._last_obs)  # type: ignore[arg-type]

    def cut_running_episodes(self) -> None:
        """
        The envs' running episodes end now without their last steps (a run resumed from a checkpoint restarts its
        envs): the buffer's newest transitions become truncations and policy checkpoints do not count those episodes.
        """
        if self.replay_buffer is not None and self.replay_buffer.size() > 0:
            truncate_newest(self.replay_buffer)
        if self._checkpoints is not None:
            self._checkpoints.cut_episodes()

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
        return [*super()._excluded_save_params(), "_update_setup"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", *self.policy.optimizers()], []
