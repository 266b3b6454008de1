"""
What a training run is configured with: an entry of a hyperparameter file or a preset, and command-line overrides.

The result is one RL-Zoo-format entry (raw YAML values: ``"dict(...)"`` strings, ``lin_<x>`` schedules, class
names). It is converted by :func:`~sb3_ddpg_ext.experiments.config.parse_entry`, the one reader of entries, and
written beside the model as ``config.yml`` by :mod:`~sb3_ddpg_ext.experiments.entry_writer`, so a run repeats
with ``train --hyperparams <run>/config.yml``.
"""

import ast
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sb3_ddpg_ext.common.validation import InvalidValueError, read_yaml_mapping
from sb3_ddpg_ext.experiments.config import DEFAULT_HYPERPARAMS, parse_policy_kwargs
from sb3_ddpg_ext.experiments.entry_writer import raw_entry
from sb3_ddpg_ext.experiments.tasks import TASKS, Task
from sb3_ddpg_ext.presets import PRESETS, preset

# The preset a run trains when the hyperparameter file has no entry for its env and no preset is named.
RECOMMENDED_PRESET = "ext"
# Budget of a preset run without --timesteps: the MuJoCo benchmarks' million steps, as RL Zoo's entries.
PRESET_TIMESTEPS = 1_000_000


@dataclass(frozen=True)
class RunEntry:
    """
    :param entry: the RL-Zoo-format entry the run trains with (raw YAML values)
    :param source: where it comes from, for messages (``hyperparams.yml[Pendulum-v1]``, ``preset 'td7'``)
    :param notice: something the user should be told about the choice (e.g. a fallback to the recommended preset)
    """

    entry: dict[str, Any]
    source: str
    notice: str | None = None


def parse_overrides(pairs: Sequence[str], option: str = "--params") -> dict[str, Any]:
    """
    RL Zoo's ``key:value`` overrides, parsed without ``eval``: a Python literal where the value is one
    (``learning_rate:1e-3``, ``train_freq:"(1, 'episode')"``), otherwise the text itself, which the entry's
    reader converts as it converts YAML (``policy_kwargs:"dict(net_arch=[64, 64])"``, ``noise_type:normal``).

    :param pairs: ``key:value`` strings
    :param option: the command-line option they were given to, for error messages
    """
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, separator, text = pair.partition(":")
        if not separator or not key.strip():
            raise InvalidValueError(f"`{option}` takes key:value pairs (e.g. learning_rate:1e-3), got {pair!r}")
        try:
            value: Any = ast.literal_eval(text)
        except (ValueError, SyntaxError):  # not a literal: a name, a "dict(...)" string or a schedule
            value = text
        overrides[key.strip()] = value
    return overrides


def resolve_entry(
    env_id: str,
    hyperparams: str | pathlib.Path | None = None,
    preset_name: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> RunEntry:
    """
    The entry a run trains with.

    With ``preset_name``, the preset (with the task's shared settings: random steps, Gaussian action noise,
    categorical support) replaces any entry of the file; without it, the file's entry for ``env_id``, or the
    recommended preset where the file has none. ``overrides`` are applied last; a ``policy_kwargs`` override is
    merged key by key into the base's (so ``policy_kwargs:"dict(net_arch=[64, 64])"`` keeps a preset's critic).

    :param env_id: Gymnasium environment id
    :param hyperparams: RL-Zoo-format YAML file (default: the package's ``ddpg_ext.yml``)
    :param preset_name: a key of :data:`~sb3_ddpg_ext.presets.PRESETS`
    :param overrides: entry keys to change (parsed by :func:`parse_overrides`)
    """
    if preset_name is not None and hyperparams is not None:
        raise InvalidValueError(
            f"`--preset {preset_name}` trains the preset instead of an entry: give it or `--hyperparams {hyperparams}`,"
            " not both (override the preset's values with --params)"
        )
    path = pathlib.Path(hyperparams) if hyperparams is not None else DEFAULT_HYPERPARAMS
    notice = None
    if preset_name is not None:
        base, source = preset_entry(preset_name, env_id), f"preset {preset_name!r}"
    else:
        entries = read_yaml_mapping(path, "hyperparameter file")
        if env_id in entries:
            base, source = dict(entries[env_id]), f"{path}[{env_id}]"
        else:
            base, source = preset_entry(RECOMMENDED_PRESET, env_id), f"preset {RECOMMENDED_PRESET!r}"
            notice = (
                f"{str(path)!r} has no entry for {env_id!r}: training the recommended preset {RECOMMENDED_PRESET!r} "
                f"(choose one with --preset: {', '.join(sorted(PRESETS))})"
            )
    entry = merge_overrides(base, overrides or {}, source)
    return RunEntry(entry, source if not overrides else f"{source} with --params {sorted(overrides)}", notice)


def preset_entry(name: str, env_id: str) -> dict[str, Any]:
    """
    A preset as an RL-Zoo-format entry, with the task's shared settings of the benchmarks
    (:data:`~sb3_ddpg_ext.experiments.tasks.TASKS`) for what a preset leaves to the task.

    :param name: a key of :data:`~sb3_ddpg_ext.presets.PRESETS`
    :param env_id: the task
    """
    if name not in PRESETS:
        raise InvalidValueError(f"`--preset`: unknown preset {name!r}; presets are {sorted(PRESETS)}")
    task = TASKS.get(env_id, Task())
    kwargs = preset(name)
    if kwargs.get("policy_kwargs", {}).get("critic") == "categorical":
        kwargs["policy_kwargs"].update(v_min=task.support[0], v_max=task.support[1])
    kwargs.setdefault("learning_starts", task.learning_starts)
    experiment = {"n_timesteps": PRESET_TIMESTEPS, "noise_type": "normal", "noise_std": task.noise_std}
    return raw_entry(experiment, {"policy": "MlpPolicy", **kwargs})


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any], source: str) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; ``policy_kwargs`` merged key by key, written back as a ``dict(...)``."""
    entry = {**base, **overrides}
    if "policy_kwargs" in overrides and "policy_kwargs" in base:
        merged = {
            **parse_policy_kwargs(base["policy_kwargs"], source),
            **parse_policy_kwargs(overrides["policy_kwargs"], "--params"),
        }
        entry["policy_kwargs"] = raw_entry({}, {"policy_kwargs": merged})["policy_kwargs"]
    return entry
