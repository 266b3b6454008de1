"""
Write keyword arguments back as an RL-Zoo-format entry: the inverse of
:func:`~sb3_ddpg_ext.experiments.config.parse_entry`.

Python objects become the text RL Zoo's files use: classes their names (``nn.ELU``, ``th.optim.AdamW``,
``PrioritizedReplayBuffer``), argument mappings ``"dict(key=value, ...)"`` strings, tuples lists, linear
schedules ``lin_<x>``. Reading the written entry gives the same keyword arguments back (tested); an object that
has no such text is refused by name rather than written as something that would read back differently.
"""

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import yaml
from stable_baselines3.common.utils import LinearSchedule
from torch import nn, optim

from sb3_ddpg_ext.common.validation import InvalidValueError

# Entry keys whose mappings RL Zoo writes as "dict(...)" strings (its loader evaluates them; ours parses them).
DICT_STRING_KEYS = ("policy_kwargs", "replay_buffer_kwargs", "policy_checkpoints", "param_noise")
# Where a class named in an entry is looked up, under the alias RL Zoo's files use.
_CLASS_NAMESPACES = (("nn", nn), ("th.optim", optim))


def raw_entry(experiment: Mapping[str, Any], model_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """
    An RL-Zoo-format entry (values YAML can hold) from experiment settings and DDPGExt keyword arguments.

    :param experiment: ``n_timesteps``, ``n_envs``, ``normalize``, ``noise_type``, ``noise_std``, ``env_kwargs``
    :param model_kwargs: DDPGExt keyword arguments (Python objects)
    """
    entry: dict[str, Any] = {key: _yaml_value(key, value) for key, value in experiment.items()}
    for key, value in model_kwargs.items():
        if key in DICT_STRING_KEYS and isinstance(value, Mapping):
            entry[key] = python_text(dict(value), key)
        elif key == "replay_buffer_class" and isinstance(value, type):
            entry[key] = value.__name__  # the reader accepts only the buffers it knows by name
        elif key == "learning_rate" and isinstance(value, LinearSchedule):
            entry[key] = _schedule_text(value)
        else:
            entry[key] = _yaml_value(key, value)
    return entry


def write_config(path: str | pathlib.Path, env_id: str, entry: Mapping[str, Any], header: str) -> pathlib.Path:
    """
    Write ``{env_id: entry}`` as YAML, a file ``train --hyperparams`` (and RL Zoo's ``--conf-file``) reads.

    :param path: the file
    :param env_id: the entry's key
    :param entry: a raw entry (see :func:`raw_entry`)
    :param header: comment lines written above it (how the run was started)
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comment + yaml.safe_dump({env_id: dict(entry)}, sort_keys=False))
    return path


def python_text(value: Any, key: str) -> str:
    """
    ``value`` as the Python expression RL Zoo's files hold (``dict(net_arch=[256, 256], activation_fn=nn.ELU)``).

    :param value: literals, lists, tuples, mappings with identifier keys, and classes of ``torch.nn``/``torch.optim``
    :param key: the entry's key holding it, for error messages
    """
    if isinstance(value, type):
        return _class_text(value, key)
    if isinstance(value, Mapping):
        bad = [name for name in value if not (isinstance(name, str) and name.isidentifier())]
        if bad:
            raise InvalidValueError(f"`{key}`: keys {bad} cannot be written as dict(key=value) arguments")
        return "dict(" + ", ".join(f"{name}={python_text(item, key)}" for name, item in value.items()) + ")"
    if isinstance(value, (list, tuple)):
        items = [python_text(item, key) for item in value]
        if isinstance(value, list):
            return "[" + ", ".join(items) + "]"
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    return repr(_scalar(value, key))


def _yaml_value(key: str, value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_yaml_value(key, item) for item in value]
    if isinstance(value, Mapping):
        return {name: _yaml_value(key, item) for name, item in value.items()}
    return _scalar(value, key)


def _scalar(value: Any, key: str) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    raise InvalidValueError(
        f"`{key}`: {value!r} cannot be written to a hyperparameter file (literals, lists, mappings, "
        "torch.nn/torch.optim classes, replay buffer classes and linear schedules can)"
    )


def _class_text(cls: type, key: str) -> str:
    for alias, module in _CLASS_NAMESPACES:
        if getattr(module, cls.__name__, None) is cls:
            return f"{alias}.{cls.__name__}"
    raise InvalidValueError(f"`{key}`: class {cls.__qualname__} is neither in torch.nn nor in torch.optim")


def _schedule_text(schedule: LinearSchedule) -> str:
    if schedule.end != 0.0 or schedule.end_fraction != 1.0:
        raise InvalidValueError(
            f"`learning_rate`: only linear schedules to 0 over all of training ('lin_<x>') can be written, got {schedule}"
        )
    return f"lin_{schedule.start!r}"
