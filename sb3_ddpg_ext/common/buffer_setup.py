"""How DDPGExt builds its replay buffer: the class for the observation space, and n-step returns handed over."""

import inspect
from typing import Any

from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from sb3_ddpg_ext.common.buffers import NStepDictReplayBuffer, UniformReplayBuffer
from sb3_ddpg_ext.common.validation import (
    InvalidTypeError,
    InvalidValueError,
    accepted_keyword_arguments,
    check_known_keys,
)

# Arguments the algorithm gives the buffer itself; they are not for ``replay_buffer_kwargs``.
BUFFER_ARGUMENTS_SET_BY_ALGORITHM = (
    "buffer_size",
    "observation_space",
    "action_space",
    "device",
    "n_envs",
    "optimize_memory_usage",
    "env",
)


def default_buffer_class(observation_space: spaces.Space, n_steps: int) -> type[ReplayBuffer]:
    """:class:`UniformReplayBuffer` (n-step capable), or for ``Dict`` observations SB3's or our n-step one."""
    if isinstance(observation_space, spaces.Dict):
        return NStepDictReplayBuffer if n_steps > 1 else DictReplayBuffer
    return UniformReplayBuffer


def _default_n_steps(buffer_class: type[ReplayBuffer]) -> int:
    """The ``n_steps`` a buffer class uses when given none (SB3's ``NStepReplayBuffer``: 3), 1 when it takes none."""
    parameter = inspect.signature(buffer_class).parameters.get("n_steps")
    default = None if parameter is None else parameter.default
    return default if isinstance(default, int) else 1


def n_step_buffer_kwargs(
    buffer_class: type[ReplayBuffer], buffer_kwargs: dict[str, Any], n_steps: int, gamma: float
) -> tuple[dict[str, Any], list[str]]:
    """
    With n-step returns (``n_steps > 1``, or in ``buffer_kwargs`` as SB3 documents for custom buffers), the
    buffer's keyword arguments with ``n_steps`` and the algorithm's ``gamma``, so that its returns are discounted
    as the algorithm's. With 1-step returns nothing is added (as SB3, which hands them to its own
    ``NStepReplayBuffer`` only); a contradicting value is refused either way.

    :return: the keyword arguments (a new dict) and the keys added to them
    :raises InvalidValueError: a contradiction, or n-step returns for a buffer that takes no ``n_steps``/``gamma``
    """
    n_steps = n_steps if n_steps > 1 else buffer_kwargs.get("n_steps", _default_n_steps(buffer_class))
    for key, value in (("n_steps", n_steps), ("gamma", gamma)):
        # A contradicting gamma is refused even where it would go unused: nothing is silently ignored.
        if buffer_kwargs.get(key, value) != value:
            raise InvalidValueError(f"`replay_buffer_kwargs['{key}']={buffer_kwargs[key]!r}` contradicts `{key}={value!r}`")
    if n_steps == 1:
        return dict(buffer_kwargs), []
    accepted = accepted_keyword_arguments(buffer_class)
    if accepted is not None and not {"n_steps", "gamma"} <= accepted:
        raise InvalidValueError(
            f"`n_steps={n_steps}` needs a replay buffer that computes n-step returns, but "
            f"`replay_buffer_class={buffer_class.__name__}` takes no `n_steps`/`gamma` arguments"
        )
    added = [key for key in ("n_steps", "gamma") if key not in buffer_kwargs]
    return {**buffer_kwargs, "n_steps": n_steps, "gamma": gamma}, added


def make_replay_buffer(algorithm: OffPolicyAlgorithm) -> ReplayBuffer:
    """
    The buffer of an off-policy algorithm (SB3's ``_setup_model`` arguments): its ``replay_buffer_class`` is chosen
    for the observation space unless given, and its ``replay_buffer_kwargs`` get ``n_steps``/``gamma`` for n-step
    returns (see :func:`n_step_buffer_kwargs`); both are stored back on the algorithm, which saves them. Unknown
    ``replay_buffer_kwargs`` keys are refused by name.
    """
    if algorithm.replay_buffer_class is None:
        algorithm.replay_buffer_class = default_buffer_class(algorithm.observation_space, algorithm.n_steps)
    buffer_class = algorithm.replay_buffer_class
    algorithm.replay_buffer_kwargs, added = n_step_buffer_kwargs(
        buffer_class, algorithm.replay_buffer_kwargs, algorithm.n_steps, algorithm.gamma
    )
    check_known_keys(
        "replay_buffer_kwargs",
        algorithm.replay_buffer_kwargs,
        accepted_keyword_arguments(buffer_class, skip=BUFFER_ARGUMENTS_SET_BY_ALGORITHM),
    )
    kwargs = dict(algorithm.replay_buffer_kwargs)  # the env is not stored in the saved kwargs
    if issubclass(buffer_class, HerReplayBuffer):
        assert algorithm.env is not None, "You must pass an environment when using `HerReplayBuffer`"
        kwargs["env"] = algorithm.env
    try:
        return buffer_class(
            algorithm.buffer_size,
            algorithm.observation_space,
            algorithm.action_space,
            device=algorithm.device,
            n_envs=algorithm.n_envs,
            optimize_memory_usage=algorithm.optimize_memory_usage,
            **kwargs,
        )
    except TypeError as error:
        if not any(f"'{key}'" in str(error) for key in added):
            raise
        # A buffer taking **kwargs that does not compute n-step returns after all.
        raise InvalidTypeError(
            f"n-step returns hand {added} to `replay_buffer_class={buffer_class.__name__}`, which cannot take them "
            f"({error}); use a buffer that computes n-step returns, or n_steps=1"
        ) from error
