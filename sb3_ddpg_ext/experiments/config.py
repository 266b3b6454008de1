"""
Read RL-Zoo-format hyperparameter files into DDPGExt keyword arguments.

The format is RL Zoo's (one block per env id, ``n_timesteps``, ``policy``, ``noise_type``/``noise_std``,
``normalize``, ``n_envs``, ``lin_<value>`` schedules, ``policy_kwargs``), read with ``yaml.safe_load``.
Nothing is ``eval``-ed: RL Zoo's ``policy_kwargs: "dict(net_arch=[64, 64], activation_fn=nn.Tanh)"``
strings are parsed as a syntax tree in which only literals and ``torch.nn``/``torch.optim`` names
are allowed; a plain YAML mapping is accepted too.
"""

import ast
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule
from torch import nn, optim

from sb3_ddpg_ext.common.buffers import (
    NStepDictReplayBuffer,
    PrioritizedDictReplayBuffer,
    PrioritizedReplayBuffer,
    UniformReplayBuffer,
)
from sb3_ddpg_ext.common.noise import AdaptiveParamNoise
from sb3_ddpg_ext.common.validation import InvalidValueError, accepted_keyword_arguments, read_yaml_mapping
from sb3_ddpg_ext.ddpg_ext import DDPGExt

DEFAULT_HYPERPARAMS = pathlib.Path(__file__).resolve().parent.parent / "hyperparams" / "ddpg_ext.yml"

NOISE_CLASSES: dict[str, Callable[..., ActionNoise]] = {
    "normal": NormalActionNoise,
    "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise,
}
# Buffers an entry may name in `replay_buffer_class` (RL Zoo writes class names).
REPLAY_BUFFER_CLASSES: dict[str, type[ReplayBuffer]] = {
    cls.__name__: cls
    for cls in (
        ReplayBuffer,
        DictReplayBuffer,
        UniformReplayBuffer,
        NStepDictReplayBuffer,
        PrioritizedReplayBuffer,
        PrioritizedDictReplayBuffer,
    )
}
# RL Zoo keys that need code this project does not run (wrappers, callbacks given as import strings).
UNSUPPORTED_KEYS = ("env_wrapper", "vec_env_wrapper", "frame_stack", "callback", "post_process_env")
# Keys of an entry that configure the experiment rather than the algorithm.
EXPERIMENT_KEYS = ("n_timesteps", "n_envs", "normalize", "noise_type", "noise_std", "env_kwargs")
# Modules whose attributes may be named in a policy_kwargs string, under the aliases RL Zoo files use.
_NAMESPACES = {"nn": nn, "th.nn": nn, "torch.nn": nn, "optim": optim, "th.optim": optim, "torch.optim": optim}


@dataclass
class ExperimentConfig:
    """
    One hyperparameter entry, converted.

    :param env_id: Gymnasium environment id
    :param n_timesteps: training budget in environment steps
    :param n_envs: number of parallel environments
    :param normalize: ``VecNormalize`` keyword arguments, or ``None`` for no normalisation
    :param env_kwargs: keyword arguments for ``gymnasium.make``
    :param noise_type: ``normal``, ``ornstein-uhlenbeck`` or ``None``
    :param noise_std: standard deviation of the action noise (scalar or one per action dimension)
    :param model_kwargs: keyword arguments for :class:`DDPGExt` (everything else in the entry)
    """

    env_id: str
    n_timesteps: int
    n_envs: int = 1
    normalize: dict[str, Any] | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    noise_type: str | None = None
    noise_std: float | list[float] = 0.1
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def make_action_noise(self, action_dim: int) -> ActionNoise | None:
        """
        :param action_dim: size of the action space
        :return: the action noise of this entry, or ``None``
        """
        if self.noise_type is None:
            return None
        sigma = np.broadcast_to(np.asarray(self.noise_std, dtype=np.float64), (action_dim,)).copy()
        return NOISE_CLASSES[self.noise_type](mean=np.zeros(action_dim), sigma=sigma)


def load_entry(env_id: str, path: str | pathlib.Path = DEFAULT_HYPERPARAMS) -> ExperimentConfig:
    """
    Read the entry of ``env_id`` from a hyperparameter file.

    :param env_id: Gymnasium environment id (the entry's key)
    :param path: YAML file in RL Zoo's format
    :return: the converted entry
    """
    entries = read_yaml_mapping(path, "hyperparameter file")
    if env_id not in entries:
        raise InvalidValueError(f"{str(path)!r} has no entry for env {env_id!r}; it has entries for {sorted(entries)}")
    return parse_entry(env_id, entries[env_id], source=f"{path}[{env_id}]")


def parse_entry(
    env_id: str, entry: dict[str, Any], source: str = "entry", algorithm: type[BaseAlgorithm] = DDPGExt
) -> ExperimentConfig:
    """
    Convert one RL-Zoo-format entry.

    :param env_id: Gymnasium environment id
    :param entry: the raw mapping read from YAML
    :param source: where the entry comes from, for error messages
    :param algorithm: the algorithm whose keyword arguments the entry's keys must be (RL Zoo's peers in benchmarks)
    :return: the converted entry
    """
    entry = dict(entry)
    unsupported = sorted(set(entry) & set(UNSUPPORTED_KEYS))
    if unsupported:
        raise InvalidValueError(f"{source}: keys {unsupported} are not supported by sb3-ddpg-ext")
    experiment = {key: entry.pop(key) for key in EXPERIMENT_KEYS if key in entry}
    model_kwargs = _convert_model_kwargs(entry, source, algorithm)

    noise_type = experiment.get("noise_type")
    if noise_type is not None and noise_type not in NOISE_CLASSES:
        raise InvalidValueError(f"{source}: `noise_type` must be one of {sorted(NOISE_CLASSES)}, got {noise_type!r}")
    if "n_timesteps" not in experiment:
        raise InvalidValueError(f"{source}: `n_timesteps` is required")
    return ExperimentConfig(
        env_id=env_id,
        n_timesteps=_whole_number(experiment["n_timesteps"], "n_timesteps", source, minimum=0),
        n_envs=_whole_number(experiment.get("n_envs", 1), "n_envs", source, minimum=1),
        normalize=_convert_normalize(experiment.get("normalize", False), source),
        env_kwargs=dict(experiment.get("env_kwargs") or {}),
        noise_type=noise_type,
        noise_std=experiment.get("noise_std", 0.1),
        model_kwargs=model_kwargs,
    )


def _whole_number(value: Any, key: str, source: str, minimum: int) -> int:
    """A count of at least ``minimum``; YAML's ``1e6`` (a float) and ``"1e6"`` are accepted where they are whole."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not number.is_integer() or number < minimum:
        raise InvalidValueError(f"{source}: `{key}` must be a whole number >= {minimum}, got {value!r}")
    return int(number)


def _convert_model_kwargs(entry: dict[str, Any], source: str, algorithm: type[BaseAlgorithm]) -> dict[str, Any]:
    accepted = accepted_keyword_arguments(algorithm, skip=("env", "_init_setup_model", "seed", "verbose", "tensorboard_log"))
    assert accepted is not None
    unknown = sorted(set(entry) - accepted)
    if unknown:
        raise InvalidValueError(
            f"{source}: unknown key(s) {unknown}; allowed keys are {sorted(accepted | set(EXPERIMENT_KEYS))}"
        )
    kwargs = dict(entry)
    if isinstance(kwargs.get("learning_rate"), str):
        kwargs["learning_rate"] = parse_schedule(kwargs["learning_rate"], source)
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    if "policy_kwargs" in kwargs:
        kwargs["policy_kwargs"] = parse_policy_kwargs(kwargs["policy_kwargs"], source)
    if isinstance(kwargs.get("replay_buffer_class"), str):
        kwargs["replay_buffer_class"] = replay_buffer_class(kwargs["replay_buffer_class"], source)
    if "replay_buffer_kwargs" in kwargs:
        kwargs["replay_buffer_kwargs"] = parse_dict(kwargs["replay_buffer_kwargs"], "replay_buffer_kwargs", source)
    if "param_noise" in kwargs:
        kwargs["param_noise"] = parse_param_noise(kwargs["param_noise"], source)
    if isinstance(kwargs.get("policy_checkpoints"), str):  # RL Zoo's "dict(max_episodes=20)"
        kwargs["policy_checkpoints"] = parse_dict(kwargs["policy_checkpoints"], "policy_checkpoints", source)
    return kwargs


def parse_param_noise(value: str | dict[str, Any] | AdaptiveParamNoise, source: str = "entry") -> AdaptiveParamNoise:
    """
    :class:`AdaptiveParamNoise` from its arguments: a mapping, RL Zoo's ``"dict(target_distance=0.2, ...)"`` or
    ``"AdaptiveParamNoise(target_distance=0.2, ...)"`` (parsed, not evaluated); an instance is returned as it is.
    """
    if isinstance(value, AdaptiveParamNoise):
        return value
    if isinstance(value, str) and value.strip().startswith(f"{AdaptiveParamNoise.__name__}("):
        value = "dict(" + value.strip()[len(AdaptiveParamNoise.__name__) + 1 :]
    arguments = parse_dict(value, "param_noise", source)
    accepted = accepted_keyword_arguments(AdaptiveParamNoise)
    unknown = sorted(set(arguments) - (accepted or set()))
    if unknown:
        raise InvalidValueError(f"{source}: unknown `param_noise` argument(s) {unknown}; allowed are {sorted(accepted or ())}")
    return AdaptiveParamNoise(**arguments)


def replay_buffer_class(name: str, source: str = "entry") -> type[ReplayBuffer]:
    """The replay buffer an entry names (:data:`REPLAY_BUFFER_CLASSES`)."""
    if name not in REPLAY_BUFFER_CLASSES:
        raise InvalidValueError(
            f"{source}: `replay_buffer_class` must be one of {sorted(REPLAY_BUFFER_CLASSES)}, got {name!r}"
        )
    return REPLAY_BUFFER_CLASSES[name]


def parse_schedule(value: str, source: str = "entry") -> LinearSchedule:
    """
    RL Zoo's ``lin_<initial>``: linear decay from ``initial`` to 0 over training.

    :param value: e.g. ``"lin_7.3e-4"``
    :param source: where the value comes from, for error messages
    """
    prefix, _, number = value.partition("_")
    try:
        initial = float(number)
    except ValueError:
        initial = float("nan")
    if prefix != "lin" or not np.isfinite(initial):
        raise InvalidValueError(f"{source}: a schedule must look like 'lin_<float>', got {value!r}")
    return LinearSchedule(start=initial, end=0.0, end_fraction=1.0)


# The policy arguments whose values are classes, written by name in hyperparameter files (``nn.ELU``).
CLASS_VALUED_POLICY_KWARGS = ("activation_fn", "critic_activation_fn", "sale_activation_fn", "optimizer_class")


def parse_policy_kwargs(value: str | dict[str, Any], source: str = "entry") -> dict[str, Any]:
    """
    Accept a YAML mapping or RL Zoo's ``"dict(key=value, ...)"`` string, without ``eval``.

    :param value: the raw ``policy_kwargs`` value
    :param source: where the value comes from, for error messages
    :return: the keyword arguments, with class names resolved in ``torch.nn``/``torch.optim``
    """
    value = parse_dict(value, "policy_kwargs", source)
    return {
        key: _resolve_class_name(item, source) if key in CLASS_VALUED_POLICY_KWARGS else item for key, item in value.items()
    }


def parse_dict(value: str | dict[str, Any], key: str, source: str = "entry") -> dict[str, Any]:
    """
    A YAML mapping, or RL Zoo's ``"dict(key=value, ...)"`` string parsed as a syntax tree (literals and
    dotted names only; names stay strings).

    :param value: the raw value
    :param key: the entry's key holding it, for error messages
    :param source: where the value comes from, for error messages
    """
    if isinstance(value, str):
        try:
            tree = ast.parse(value.strip(), mode="eval").body
        except SyntaxError as error:
            raise InvalidValueError(f"{source}: `{key}` string {value!r} is not valid syntax") from error
        if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "dict" and not tree.args):
            raise InvalidValueError(f"{source}: `{key}` string must be 'dict(key=value, ...)', got {value!r}")
        value = {keyword.arg: _literal_or_name(keyword.value, key, source) for keyword in tree.keywords if keyword.arg}
    if not isinstance(value, dict):
        raise InvalidValueError(f"{source}: `{key}` must be a mapping or a 'dict(...)' string, got {value!r}")
    return dict(value)


def _literal_or_name(node: ast.expr, key: str, source: str) -> Any:
    if isinstance(node, (ast.Name, ast.Attribute)):
        return ast.unparse(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {keyword.arg: _literal_or_name(keyword.value, key, source) for keyword in node.keywords if keyword.arg}
    try:
        return ast.literal_eval(node)
    except ValueError as error:
        raise InvalidValueError(
            f"{source}: only literals and torch names are allowed in `{key}`, got {ast.unparse(node)!r}"
        ) from error


def _resolve_class_name(name: Any, source: str) -> Any:
    if not isinstance(name, str):
        return name
    namespace, _, attribute = name.rpartition(".")
    module = _NAMESPACES.get(namespace or "nn")
    resolved = getattr(module, attribute, None) if module is not None else None
    if not isinstance(resolved, type):
        raise InvalidValueError(
            f"{source}: {name!r} is not a class of torch.nn or torch.optim (e.g. 'nn.ReLU', 'th.optim.Adam')"
        )
    return resolved


def _convert_normalize(value: Any, source: str) -> dict[str, Any] | None:
    if isinstance(value, str):
        # RL Zoo writes e.g. "{'norm_obs': True, 'norm_reward': False}".
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as error:  # literal_eval raises both for text that is not a literal
            raise InvalidValueError(
                f"{source}: `normalize` string {value!r} is not a Python literal (e.g. \"{{'norm_obs': True}}\")"
            ) from error
    if value is True:
        return {}
    if value is False or value is None:
        return None
    if isinstance(value, dict):
        return dict(value)
    raise InvalidValueError(f"{source}: `normalize` must be a boolean or a mapping of VecNormalize arguments, got {value!r}")
