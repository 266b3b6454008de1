"""
Replay buffers: uniform (SB3's draws, lean gather), prioritized (Box and Dict), all n-step capable.

They subclass SB3's ``ReplayBuffer``/``DictReplayBuffer`` and keep their storage, ``add`` and pickling;
they change only which transitions a batch holds and how its targets are gathered. A transition is
addressed by its *slot* ``row * n_envs + env``: one priority tree spans every env of a vectorised buffer.
"""

from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from sb3_ddpg_ext.common.n_step import n_step_targets
from sb3_ddpg_ext.common.priorities import Priorities, make_priorities
from sb3_ddpg_ext.common.type_aliases import PrioritizedDictReplayBufferSamples, PrioritizedReplayBufferSamples
from sb3_ddpg_ext.common.validation import InvalidValueError, check_int, check_range


def take_slots(array: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """
    Rows of a ``(buffer_size, n_envs, ...)`` array at flat ``slots``, in one gather (no per-env indexing).

    :param array: a buffer's storage array
    :param slots: flat indices ``row * n_envs + env``
    """
    return array.reshape(-1, *array.shape[2:]).take(slots, axis=0)  # the method: np.take adds two Python calls


def truncate_newest(buffer: ReplayBuffer) -> None:
    """
    End each env's episode at its newest transition, as when a run resumed from a checkpoint restarts its envs:
    a timeout there (the target bootstraps, n-step sums stop), or a termination in SB3's memory-saving layout,
    whose next observation the next transition overwrites. HER's buffer drops its unfinished episodes instead.
    """
    if isinstance(buffer, HerReplayBuffer):
        buffer.truncate_last_trajectory()
        return
    row = (buffer.pos - 1) % buffer.buffer_size
    if buffer.optimize_memory_usage:
        buffer.dones[row] = 1.0
    else:
        buffer.timeouts[row] = 1.0


class _TargetsMixin(ReplayBuffer):
    """Gathers sampled transitions with their 1-step or n-step targets (SB3's storage, SB3's random draws)."""

    uniform_samples_class: ClassVar[type[ReplayBufferSamples] | type[DictReplayBufferSamples]] = ReplayBufferSamples

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        n_steps: int = 1,
        gamma: float = 0.99,
    ):
        check_int("n_steps", n_steps, 1)
        check_range("gamma", gamma, low=0.0, high=1.0)
        if n_steps > 1 and optimize_memory_usage:
            raise InvalidValueError(f"`n_steps={n_steps}` cannot be combined with `optimize_memory_usage=True`")
        super().__init__(
            buffer_size, observation_space, action_space, device, n_envs, optimize_memory_usage, handle_timeout_termination
        )
        self.n_steps = n_steps
        self.gamma = gamma

    def sample(  # type: ignore[override]
        self, batch_size: int, env: VecNormalize | None = None
    ) -> ReplayBufferSamples | DictReplayBufferSamples:
        if self.optimize_memory_usage:  # SB3's memory-saving layout: SB3's draw
            return super().sample(batch_size, env=env)
        # SB3's draw, np.random.randint on the global generator (which SB3's `seed` seeds): the same batches for a seed.
        return self._get_samples(np.random.randint(0, self.buffer_size if self.full else self.pos, size=batch_size), env=env)

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> ReplayBufferSamples | DictReplayBufferSamples:
        if self.optimize_memory_usage:  # SB3's memory-saving layout: SB3's gather
            return super()._get_samples(batch_inds, env)
        # The same draw as SB3's buffers, so that a seed gives the same batches (with one env SB3 draws from
        # randint(0, 1), which consumes no random numbers: zeros without the call).
        if self.n_envs == 1:
            envs = np.zeros(len(batch_inds), dtype=batch_inds.dtype)
        else:
            envs = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        return self.uniform_samples_class(**self._transitions(batch_inds, envs, env))

    def _targets(
        self, rows: np.ndarray, envs: np.ndarray, slots: np.ndarray, env: VecNormalize | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """
        :return: ``next_slots`` (where the bootstrap observation is), rewards, dones (terminations only)
            and discounts (``None`` for 1-step returns, where the algorithm uses ``gamma``)
        """
        if self.n_steps == 1:
            dones = take_slots(self.dones, slots) * (1.0 - take_slots(self.timeouts, slots))
            return slots, self._normalize_reward(take_slots(self.rewards, slots), env), dones, None
        scale_rewards = None if env is None else env.normalize_reward
        targets = n_step_targets(self, rows, envs, self.n_steps, self.gamma, scale_rewards)
        return targets.last_rows * self.n_envs + envs, targets.rewards, targets.dones, targets.discounts

    def _transitions(self, rows: np.ndarray, envs: np.ndarray, env: VecNormalize | None) -> dict[str, Any]:
        """SB3's sample fields of the transitions at ``(rows, envs)``, as keyword arguments."""
        slots = rows if self.n_envs == 1 else rows * self.n_envs + envs
        next_slots, rewards, dones, discounts = self._targets(rows, envs, slots, env)
        return dict(
            observations=self._observations_at(self.observations, slots, env),
            actions=self._tensor(take_slots(self.actions, slots)),
            next_observations=self._observations_at(self.next_observations, next_slots, env),
            dones=self._column(dones),
            rewards=self._column(rewards),
            discounts=None if discounts is None else self._column(discounts),
        )

    def _observations_at(self, array: np.ndarray, slots: np.ndarray, env: VecNormalize | None) -> th.Tensor:
        observations = self._normalize_obs(take_slots(array, slots), env)
        assert isinstance(observations, np.ndarray)
        return self._tensor(observations)

    def _tensor(self, array: np.ndarray) -> th.Tensor:
        # from_numpy shares the freshly gathered (contiguous) array: no second copy on CPU.
        tensor = th.from_numpy(array)
        return tensor if self.device.type == "cpu" else tensor.to(self.device)

    def _column(self, array: np.ndarray) -> th.Tensor:
        return self._tensor(array.astype(np.float32, copy=False).reshape(-1, 1))


class UniformReplayBuffer(_TargetsMixin):
    """
    SB3's ``ReplayBuffer`` (same storage, same random draws, so the same batches for the same seed) whose
    batches are gathered with one ``np.take`` per field and handed to torch without a copy; n-step capable
    with SB3's ``NStepReplayBuffer`` semantics. DDPGExt's default buffer for non-``Dict`` observations.

    :param buffer_size: Max number of transitions, over all envs (as in SB3)
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: SB3's memory-saving layout (then batches are gathered by SB3's code;
        not with ``n_steps > 1``)
    :param handle_timeout_termination: Handle timeout termination (due to timelimit) separately
    :param n_steps: the ``n`` of n-step returns (1: one-step TD targets)
    :param gamma: discount factor of the n-step returns
    """


class PrioritizedSampling(_TargetsMixin):
    """
    Prioritized sampling over every (row, env) slot, shared by the Box and Dict buffers; the priority rule
    (:mod:`sb3_ddpg_ext.common.priorities`) is chosen by ``priority``. The positional arguments and ``n_steps``,
    ``gamma``, ``device``, ``n_envs``, ``handle_timeout_termination`` are SB3's ``ReplayBuffer``'s (and n-step's).
    """

    priorities: Priorities
    samples_class: ClassVar[type[PrioritizedReplayBufferSamples] | type[PrioritizedDictReplayBufferSamples]]

    def __init__(
        self,
        *args: Any,
        priority: str = "proportional",
        alpha: float | None = None,
        beta: float | None = None,
        final_beta: float | None = None,
        eps: float | None = None,
        min_priority: float | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        if self.optimize_memory_usage:
            raise InvalidValueError(
                f"{type(self).__name__} does not support `optimize_memory_usage=True`: "
                "with a prioritized buffer the next observation cannot be read from the following row safely"
            )
        options = dict(alpha=alpha, beta=beta, final_beta=final_beta, eps=eps, min_priority=min_priority)
        self.priorities = make_priorities(priority, self.buffer_size * self.n_envs, **options)

    @property
    def alpha(self) -> float:
        return self.priorities.alpha

    @property
    def beta(self) -> float | None:
        """The current importance-sampling exponent (annealed by :meth:`set_progress`); None without weights (LAP)."""
        return getattr(self.priorities, "beta", None)

    @property
    def huber_threshold(self) -> float | None:
        """The Huber loss threshold this buffer's sampling is meant for (LAP's ``min_priority``), or None."""
        return self.priorities.huber_threshold

    @property
    def n_stored(self) -> int:
        """Number of transitions stored (over all envs)."""
        return (self.buffer_size if self.full else self.pos) * self.n_envs

    @property
    def priority_mean(self) -> float:
        """Mean of ``p^alpha`` over the stored transitions."""
        return self.priorities.tree.total / max(self.n_stored, 1)

    @property
    def max_priority(self) -> float:
        """The running maximum of the priorities (before ``alpha``): new transitions get it."""
        return self.priorities.max_priority

    def add(self, *args: Any, **kwargs: Any) -> None:
        row = self.pos
        super().add(*args, **kwargs)
        self.priorities.add(row * self.n_envs, (row + 1) * self.n_envs)

    def set_progress(self, progress: float) -> None:
        """
        Anneal ``beta`` towards ``final_beta``; DDPGExt calls this with its training progress.

        :param progress: fraction of training done, in [0, 1]
        """
        self.priorities.set_progress(progress)

    def update_priorities(self, indices: np.ndarray | th.Tensor, priorities: np.ndarray | th.Tensor) -> None:
        """
        :param indices: the ``indices`` of a batch returned by :meth:`sample`
        :param priorities: raw priorities, e.g. ``|TD error|``, shape ``(batch,)``, or ``(batch, n_critics)`` with
            one column per critic (reduced by the rule: mean for ``proportional``, max for ``lap``); the rule's
            ``eps`` or ``min_priority`` and ``alpha`` are applied here
        """
        self.priorities.update(indices, priorities)

    def reset_max_priority(self) -> None:
        """At a target update: LAP's running maximum becomes the largest stored priority (PER: nothing)."""
        self.priorities.reset_max_priority(self.n_stored)

    def sample(  # type: ignore[override]
        self, batch_size: int, env: VecNormalize | None = None
    ) -> PrioritizedReplayBufferSamples | PrioritizedDictReplayBufferSamples:
        """
        :param batch_size: number of transitions
        :param env: the ``VecNormalize`` wrapper, if any, to normalise observations and rewards
        :return: SB3's sample fields (with ``discounts`` for n-step), ``weights`` and ``indices``
        """
        if self.n_stored == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        slots, weights = self.priorities.sample(batch_size, self.n_stored)
        rows, envs = np.divmod(slots, self.n_envs)
        return self.samples_class(**self._transitions(rows, envs, env), weights=self._column(weights), indices=slots)


class PrioritizedReplayBuffer(PrioritizedSampling):
    """
    Prioritized replay, n-step capable: proportional (PER, Schaul et al. 2016, https://arxiv.org/abs/1511.05952) or
    loss-adjusted (LAP, Fujimoto et al. 2020, https://arxiv.org/abs/2007.06049).

    Use it the SB3 way: ``DDPGExt(..., replay_buffer_class=PrioritizedReplayBuffer,
    replay_buffer_kwargs=dict(alpha=0.6, beta=0.4))``, or ``dict(priority="lap")`` for LAP; DDPGExt passes its
    ``n_steps`` and ``gamma``.
    See :mod:`sb3_ddpg_ext.common.priorities` for the formulas.

    :param buffer_size: Max number of transitions, over all envs (as in SB3)
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: not supported (must be False)
    :param handle_timeout_termination: Handle timeout termination (due to timelimit)
        separately and treat the task as infinite horizon task.
        https://github.com/DLR-RM/stable-baselines3/issues/284
    :param priority: the priority rule: ``"proportional"`` (PER) or ``"lap"`` (LAP, Fujimoto et al. 2020: priority
        ``max(|delta|, min_priority)^alpha``, no importance weights, meant for a Huber loss, which DDPGExt then uses)
    :param alpha: prioritization exponent (0: uniform); default 0.6 (proportional), 0.4 (lap)
    :param beta: proportional only: initial importance-sampling exponent (default 0.4)
    :param final_beta: proportional only: importance-sampling exponent reached at the end of training (default 1)
    :param eps: proportional only: added to raw priorities so that every transition can be drawn (default 1e-6)
    :param min_priority: lap only: the smallest priority and the Huber loss's threshold (default 1)
    :param n_steps: the ``n`` of n-step returns (1: one-step TD targets)
    :param gamma: discount factor of the n-step returns
    """

    samples_class = PrioritizedReplayBufferSamples


class _DictTargetsMixin(_TargetsMixin, DictReplayBuffer):  # type: ignore[misc]
    """Gathers ``Dict`` observations at slots."""

    uniform_samples_class = DictReplayBufferSamples

    observations: dict[str, np.ndarray]
    next_observations: dict[str, np.ndarray]

    def _observations_at(  # type: ignore[override]
        self, arrays: dict[str, np.ndarray], slots: np.ndarray, env: VecNormalize | None
    ) -> dict[str, th.Tensor]:
        gathered = self._normalize_obs({key: take_slots(array, slots) for key, array in arrays.items()}, env)
        assert isinstance(gathered, dict)
        return {key: self._tensor(array) for key, array in gathered.items()}


class PrioritizedDictReplayBuffer(PrioritizedSampling, _DictTargetsMixin):  # type: ignore[misc]
    """
    :class:`PrioritizedReplayBuffer` for ``Dict`` observations (n-step capable, which SB3's Dict buffer is not),
    with the same parameters (``observation_space`` a ``Dict``).
    """

    samples_class = PrioritizedDictReplayBufferSamples


class NStepDictReplayBuffer(_DictTargetsMixin):
    """
    Uniform replay with n-step returns for ``Dict`` observations (SB3's ``NStepReplayBuffer`` is Box-only).

    :param buffer_size: Max number of transitions, over all envs (as in SB3)
    :param observation_space: Observation space (a ``Dict``)
    :param action_space: Action space
    :param device: PyTorch device
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: not supported (must be False)
    :param handle_timeout_termination: Handle timeout termination (due to timelimit) separately
    :param n_steps: the ``n`` of n-step returns
    :param gamma: discount factor of the n-step returns
    """

    def __init__(self, *args: Any, n_steps: int = 3, **kwargs: Any):
        super().__init__(*args, n_steps=n_steps, **kwargs)  # type: ignore[misc]


__all__ = [
    "NStepDictReplayBuffer",
    "PrioritizedDictReplayBuffer",
    "PrioritizedReplayBuffer",
    "UniformReplayBuffer",
    "take_slots",
]
