"""Construction-time checks that name the parameter, the value and what is allowed."""

import inspect
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from gymnasium import spaces


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """
    Raise if ``value`` is not a real number inside the given interval.

    :param name: the parameter's name, as the user typed it
    :param value: the value to check
    :param low: lower bound (``None``: unbounded)
    :param high: upper bound (``None``: unbounded)
    :param low_inclusive: whether ``low`` itself is allowed
    :param high_inclusive: whether ``high`` itself is allowed
    """
    opening = "[" if low_inclusive and low is not None else "("
    closing = "]" if high_inclusive and high is not None else ")"
    interval = f"{opening}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{closing}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number in {interval}, got {value!r} of type {type(value).__name__}")
    too_low = low is not None and (value < low or (value == low and not low_inclusive))
    too_high = high is not None and (value > high or (value == high and not high_inclusive))
    if math.isnan(value) or too_low or too_high:
        raise ValueError(f"`{name}` must be in {interval}, got {value!r}")


def check_int(name: str, value: Any, minimum: int) -> None:
    """
    Raise if ``value`` is not an integer greater than or equal to ``minimum``.

    :param name: the parameter's name
    :param value: the value to check
    :param minimum: the smallest allowed value
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")


def check_bounded_box_action_space(action_space: spaces.Space) -> None:
    """
    DDPG's deterministic actor squashes its output with tanh and rescales it to the action bounds,
    so it needs a ``Box`` action space with finite bounds.

    :param action_space: the environment's action space
    """
    if not isinstance(action_space, spaces.Box):
        raise TypeError(
            f"`env.action_space` must be a gymnasium.spaces.Box (continuous actions), got {action_space}: "
            "DDPG-family agents need continuous actions; use DQN/PPO for discrete action spaces"
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise ValueError(
            f"`env.action_space` must have finite bounds, got low={action_space.low}, high={action_space.high}: "
            "the actor's tanh output is rescaled to [low, high]; clip or rescale the actions with a wrapper "
            "(e.g. gymnasium.wrappers.RescaleAction)"
        )


def accepted_keyword_arguments(callable_: Any, skip: Iterable[str] = ()) -> set[str] | None:
    """
    The keyword arguments a callable accepts, or ``None`` when it takes ``**kwargs`` (anything goes).

    :param callable_: a function or a class (its ``__init__`` is inspected)
    :param skip: names to leave out (arguments the caller fills itself)
    """
    parameters = inspect.signature(callable_).parameters.values()
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    names = {
        parameter.name
        for parameter in parameters
        if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return names - {"self", *skip}


def check_known_keys(name: str, given: Iterable[str], allowed: set[str] | None) -> None:
    """
    Raise if ``given`` holds a key that is not in ``allowed`` (``None`` allows everything).

    :param name: the parameter's name, e.g. ``policy_kwargs``
    :param given: the keys the user passed
    :param allowed: the keys the receiver accepts
    """
    if allowed is None:
        return
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(f"`{name}` has unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")
