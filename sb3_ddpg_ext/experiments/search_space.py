"""
The hyperparameter search space of DDPGExt, in RL Zoo's two steps: :func:`sample_params` draws raw values from
an Optuna trial, :func:`to_entry` turns them into an RL-Zoo-format hyperparameter entry (which
:func:`~sb3_ddpg_ext.experiments.config.parse_entry` turns into DDPGExt's keyword arguments). Every raw value is
drawn through the trial, fixed ones included, so ``trial.params`` alone replays a trial exactly.

:func:`to_kwargs` goes straight to the keyword arguments.

The space is a mapping from raw names to dimensions. A dimension may apply only when others have certain
values (prioritized replay's ``per_alpha`` only with ``prioritized=True``); it is then neither drawn nor
converted otherwise. A user narrows the space with a mapping (YAML) of raw names to a list of choices, a
``{low, high, log}`` range or a single fixed value (:func:`narrow`).
"""

import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from sb3_ddpg_ext.common.validation import InvalidValueError, read_yaml_mapping
from sb3_ddpg_ext.experiments.config import parse_entry
from sb3_ddpg_ext.experiments.tasks import TASKS

Condition = Callable[[Mapping[str, Any]], bool]

NET_ARCHS: dict[str, list[int]] = {"small": [64, 64], "medium": [256, 256], "big": [400, 300]}
NO_NOISE = "none"


@dataclass(frozen=True)
class Choice:
    """
    One of a list of values.

    :param choices: the values (numbers, strings, booleans)
    :param when: apply only when this holds for the values drawn before (``None``: always)
    """

    choices: tuple[Any, ...]
    when: Condition | None = None

    def sample(self, trial: optuna.Trial, name: str) -> Any:
        return trial.suggest_categorical(name, self.choices)


@dataclass(frozen=True)
class Range:
    """
    A number in ``[low, high]``.

    :param low: lower bound
    :param high: upper bound
    :param log: draw on a log scale
    :param integer: draw integers
    :param when: apply only when this holds for the values drawn before (``None``: always)
    """

    low: float
    high: float
    log: bool = False
    integer: bool = False
    when: Condition | None = None

    def sample(self, trial: optuna.Trial, name: str) -> Any:
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)


Dimension = Choice | Range
SearchSpace = dict[str, Dimension]


def _is(name: str, *values: Any) -> Condition:
    return lambda params: params.get(name) in values


def _is_not(name: str, *values: Any) -> Condition:
    return lambda params: name in params and params[name] not in values


def _has_targets(params: Mapping[str, Any]) -> bool:
    return not params.get("batch_norm", False)


def default_search_space(env_id: str | None = None) -> SearchSpace:
    """
    Every argument and extension of DDPGExt worth tuning.

    :param env_id: the task; its categorical-critic support is taken from
        :data:`~sb3_ddpg_ext.experiments.tasks.TASKS` when known. For other tasks the space has no
        ``v_min``/``v_max``: fix them with :func:`narrow` or leave the categorical critic out.
    """
    space: SearchSpace = {
        "learning_rate": Range(1e-5, 1e-2, log=True),
        "batch_size": Choice((64, 128, 256, 512)),
        "buffer_size": Choice((10_000, 100_000, 1_000_000)),
        "learning_starts": Choice((100, 1_000, 10_000)),
        "one_minus_gamma": Range(1e-4, 0.1, log=True),
        # RL Zoo's rule: as many gradient steps as environment steps between updates.
        "train_freq": Choice((1, 4, 16, 64)),
        # SimBa's residual networks come with their own sizes and LayerNorms.
        "network": Choice(("mlp", "simba")),
        "net_arch": Choice(tuple(NET_ARCHS), when=_is("network", "mlp")),
        "policy_checkpoints": Choice((False, True)),
        "noise_type": Choice(("normal", "ornstein-uhlenbeck", NO_NOISE)),
        "noise_std": Range(0.0, 1.0, when=_is_not("noise_type", NO_NOISE)),
        "param_noise": Choice((False, True)),
        "param_noise_distance": Range(0.05, 0.5, log=True, when=_is("param_noise", True)),
        "n_steps": Choice((1, 3, 5)),
        "n_critics": Choice((1, 2)),
        "policy_delay": Choice((1, 2, 3)),
        "target_policy_noise": Choice((0.0, 0.1, 0.2, 0.3)),
        "target_noise_clip": Choice((0.3, 0.5, 1.0), when=_is_not("target_policy_noise", 0.0)),
        "critic": Choice(("plain", "categorical")),
        "n_atoms": Choice((21, 51, 101), when=_is("critic", "categorical")),
        "prioritized": Choice((False, True)),
        # LAP's Huber loss needs a scalar critic.
        "priority": Choice(("proportional", "lap"), when=lambda params: params["prioritized"] and params["critic"] == "plain"),
        "per_alpha": Range(0.2, 1.0, when=_is("prioritized", True)),
        "per_beta": Range(0.2, 1.0, when=lambda params: params["prioritized"] and params.get("priority") != "lap"),
        "layer_norm": Choice((False, True), when=_is("network", "mlp")),
        # CrossQ: BatchRenorm and no target networks, so no tau.
        "batch_norm": Choice((False, True), when=_is("network", "mlp")),
        # Target networks averaged by Polyak (0) or copied every so many updates (TD7: 250).
        "hard_target_interval": Choice((0, 250, 1000), when=_has_targets),
        "tau": Choice(
            (0.001, 0.005, 0.01, 0.02, 0.05), when=lambda params: _has_targets(params) and params["hard_target_interval"] == 0
        ),
        # SALE learns a one-step model and reads a fixed-target encoder: 1-step returns, target networks.
        "sale": Choice((False, True), when=lambda params: _has_targets(params) and params["n_steps"] == 1),
        "value_clipping": Choice((False, True), when=lambda params: _has_targets(params) and params["critic"] == "plain"),
    }
    if env_id in TASKS:
        v_min, v_max = TASKS[env_id].support
        space["v_min"] = Choice((v_min,), when=_is("critic", "categorical"))
        space["v_max"] = Choice((v_max,), when=_is("critic", "categorical"))
    return space


SUPPORT_DIMENSIONS = ("v_min", "v_max")


def narrow(space: SearchSpace, overrides: Mapping[str, Any], source: str = "search space") -> SearchSpace:
    """
    A copy of ``space`` with some dimensions replaced; their conditions are kept.

    :param space: the space to narrow (e.g. :func:`default_search_space`)
    :param overrides: raw name -> list of choices, ``{low, high[, log]}`` range, or one fixed value.
        ``v_min`` and ``v_max`` may be added (they are the categorical critic's support).
    :param source: where the overrides come from, for error messages
    """
    allowed = set(space) | set(SUPPORT_DIMENSIONS)
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise InvalidValueError(f"{source}: unknown parameter(s) {unknown}; the search space has {sorted(allowed)}")
    narrowed = dict(space)
    for name, value in overrides.items():
        when = space[name].when if name in space else _is("critic", "categorical")
        narrowed[name] = _dimension(name, value, when, source)
    return narrowed


def _dimension(name: str, value: Any, when: Condition | None, source: str) -> Dimension:
    if isinstance(value, list):
        if not value:
            raise InvalidValueError(f"{source}: `{name}` needs at least one choice, got []")
        return Choice(tuple(value), when)
    if isinstance(value, dict):
        if set(value) - {"low", "high", "log"} or not {"low", "high"} <= set(value):
            raise InvalidValueError(f"{source}: a range for `{name}` must have keys low, high and optionally log, got {value}")
        low, high, log = value["low"], value["high"], bool(value.get("log", False))
        if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
            raise InvalidValueError(f"{source}: `{name}` needs numbers low < high, got low={low!r}, high={high!r}")
        if log and low <= 0:
            raise InvalidValueError(f"{source}: a log range for `{name}` needs low > 0, got {low!r}")
        integer = isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool)
        return Range(float(low), float(high), log=log, integer=integer, when=when)
    return Choice((value,), when)


def read_overrides(path: str | pathlib.Path) -> dict[str, Any]:
    """
    A YAML file of search-space overrides (see :func:`narrow`), checked against the default space.

    :param path: YAML mapping of raw names to choices, ranges or fixed values
    """
    overrides = read_yaml_mapping(path, "search space file")
    narrow(default_search_space(), overrides, source=str(path))
    return overrides


def check_search_space(space: SearchSpace, env_id: str) -> None:
    """Refuse a space that can draw a categorical critic without a support to give it."""
    critic = space.get("critic")
    can_be_categorical = isinstance(critic, Choice) and "categorical" in critic.choices
    missing = [name for name in SUPPORT_DIMENSIONS if name not in space]
    if can_be_categorical and missing:
        raise InvalidValueError(
            f"the search space can choose critic='categorical' but has no {missing} for env {env_id!r} (known for "
            f"{sorted(TASKS)}): fix them in the search space (e.g. `v_min: -100` and `v_max: 100`, covering the "
            "task's Q-values) or narrow `critic` to ['plain']"
        )


def sample_params(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """
    Draw the raw values of one trial, in the space's order, skipping dimensions whose condition fails.

    :param trial: the Optuna trial
    :param space: the search space
    :return: raw name -> value (equal to ``trial.params``)
    """
    params: dict[str, Any] = {}
    for name, dimension in space.items():
        if dimension.when is None or dimension.when(params):
            params[name] = dimension.sample(trial, name)
    return params


def to_entry(params: Mapping[str, Any], n_timesteps: int) -> dict[str, Any]:
    """
    An RL-Zoo-format hyperparameter entry (plain YAML values) from raw values.

    :param params: raw values from :func:`sample_params` (or ``trial.params`` of a stored trial)
    :param n_timesteps: the training budget to write into the entry
    """
    entry: dict[str, Any] = {"n_timesteps": int(n_timesteps), "policy": "MlpPolicy"}
    for name in ("learning_rate", "batch_size", "buffer_size", "learning_starts", "tau", "n_steps", "policy_delay"):
        if name in params:
            entry[name] = params[name]
    if "one_minus_gamma" in params:
        entry["gamma"] = 1.0 - params["one_minus_gamma"]
    if "train_freq" in params:
        entry["train_freq"] = entry["gradient_steps"] = params["train_freq"]
    if params.get("target_policy_noise", 0.0) > 0.0:
        entry["target_policy_noise"] = params["target_policy_noise"]
        entry["target_noise_clip"] = params.get("target_noise_clip", 0.5)
    if params.get("noise_type", NO_NOISE) != NO_NOISE:
        entry["noise_type"] = params["noise_type"]
        entry["noise_std"] = params["noise_std"]
    if params.get("param_noise"):
        entry["param_noise"] = _dict_string({"target_distance": params["param_noise_distance"]})
    if params.get("prioritized"):
        entry["replay_buffer_class"] = "PrioritizedReplayBuffer"
        if params.get("priority") == "lap":
            entry["replay_buffer_kwargs"] = _dict_string({"priority": "lap", "alpha": params["per_alpha"]})
        else:
            entry["replay_buffer_kwargs"] = _dict_string({"alpha": params["per_alpha"], "beta": params["per_beta"]})
    if params.get("hard_target_interval", 0) > 0:
        entry["tau"], entry["target_update_interval"] = 1.0, params["hard_target_interval"]
    for name, key in (("value_clipping", "target_value_clipping"), ("policy_checkpoints", "policy_checkpoints")):
        if params.get(name):
            entry[key] = True
    entry["policy_kwargs"] = _dict_string(_policy_kwargs(params))
    return entry


def to_kwargs(params: Mapping[str, Any], action_dim: int) -> dict[str, Any]:
    """
    DDPGExt's keyword arguments (action noise included) from raw values: ``DDPGExt("MlpPolicy", env, **to_kwargs(...))``.

    :param params: raw values from :func:`sample_params` (or ``trial.params`` of a stored trial)
    :param action_dim: size of the env's action space, for the action noise
    """
    config = parse_entry("the sampled env", to_entry(params, n_timesteps=0), source="sampled parameters")
    kwargs = {**config.model_kwargs, "action_noise": config.make_action_noise(action_dim)}
    del kwargs["policy"]  # given positionally by the caller
    return kwargs


def _policy_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    if params.get("network") == "simba":
        policy_kwargs: dict[str, Any] = {"network": "simba"}
    else:
        policy_kwargs = {"net_arch": NET_ARCHS[params.get("net_arch", "big")]}
    for name in ("n_critics", "layer_norm", "batch_norm", "sale"):
        if name in params:
            policy_kwargs[name] = params[name]
    if params.get("critic") == "categorical":
        policy_kwargs["critic"] = "categorical"
        policy_kwargs.update({name: params[name] for name in ("n_atoms", *SUPPORT_DIMENSIONS) if name in params})
    return policy_kwargs


def _dict_string(values: Mapping[str, Any]) -> str:
    """RL Zoo's ``"dict(key=value, ...)"`` notation, which its files and ours both read."""
    return "dict(" + ", ".join(f"{key}={value!r}" for key, value in values.items()) + ")"


def describe(space: SearchSpace) -> list[str]:
    """One line per dimension, for ``--help``-like listings and logs."""
    lines = []
    for name, dimension in space.items():
        if isinstance(dimension, Choice):
            text = f"{name}: one of {list(dimension.choices)}"
        else:
            text = f"{name}: {'log-' if dimension.log else ''}range [{dimension.low:g}, {dimension.high:g}]"
        lines.append(text + (" (conditional)" if dimension.when is not None else ""))
    return lines
