"""Construction-time checks that name the parameter, the value and what is allowed."""

import inspect
import math
import pathlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import yaml
from gymnasium import spaces


class ValidationError(Exception):
    """
    Bad input found by sb3-ddpg-ext's checks: a constructor argument, a configuration file or a command-line value.
    The message names the parameter (or file), the value and what is allowed. The command line reports these as
    ``ddpg-ext: error: ...``; any other exception is a bug and is raised as it is.
    """


class InvalidValueError(ValidationError, ValueError):
    """A value of the right type outside what is allowed (a ``ValueError``, as Python's own checks raise)."""


class InvalidTypeError(ValidationError, TypeError):
    """A value of the wrong type (a ``TypeError``, as Python's own checks raise)."""


class MissingFileError(ValidationError, FileNotFoundError):
    """A file the user named does not exist."""


class UnsupportedSpaceTypeError(InvalidTypeError, AssertionError):
    """
    A space of a type the algorithm cannot handle. Also an ``AssertionError``: SB3 asserts the supported spaces, and
    code written against SB3 (its own tests among it) catches that.
    """


class UnsupportedSpaceBoundsError(InvalidValueError, AssertionError):
    """A ``Box`` space without the finite bounds the algorithm needs; an ``AssertionError`` as SB3's check is."""


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
        raise InvalidTypeError(f"`{name}` must be a number in {interval}, got {value!r} of type {type(value).__name__}")
    too_low = low is not None and (value < low or (value == low and not low_inclusive))
    too_high = high is not None and (value > high or (value == high and not high_inclusive))
    if math.isnan(value) or too_low or too_high:
        raise InvalidValueError(f"`{name}` must be in {interval}, got {value!r}")


def check_int(name: str, value: Any, minimum: int) -> None:
    """
    Raise if ``value`` is not an integer greater than or equal to ``minimum``.

    :param name: the parameter's name
    :param value: the value to check
    :param minimum: the smallest allowed value
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidTypeError(f"`{name}` must be an integer >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise InvalidValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")


def check_bounded_box_action_space(action_space: spaces.Space) -> None:
    """
    DDPG's deterministic actor squashes its output with tanh and rescales it to the action bounds,
    so it needs a ``Box`` action space with finite bounds.

    :param action_space: the environment's action space
    """
    if not isinstance(action_space, spaces.Box):
        raise UnsupportedSpaceTypeError(
            f"`env.action_space` must be a gymnasium.spaces.Box (continuous actions), got {action_space}: "
            "DDPG-family agents need continuous actions; use DQN/PPO for discrete action spaces"
        )
    if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
        raise UnsupportedSpaceBoundsError(
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
        raise InvalidValueError(f"`{name}` has unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")


def read_yaml_mapping(path: str | pathlib.Path, description: str) -> dict[str, Any]:
    """
    Read a YAML file that must hold a mapping (an empty file is an empty one), with ``yaml.safe_load``.

    :param path: the file
    :param description: what the file is, for the error messages (e.g. ``"hyperparameter file"``)
    :raises MissingFileError: the file does not exist
    :raises InvalidValueError: it is not valid YAML, or not a mapping; the message names the file
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise MissingFileError(f"{description} {str(path)!r} does not exist")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InvalidValueError(f"{description} {str(path)!r} is not valid YAML: {error}") from error
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise InvalidValueError(f"{description} {str(path)!r} must hold a mapping, got {content!r}")
    return content
