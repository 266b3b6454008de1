"""
Train DDPGExt from a hyperparameter entry or a preset, as RL Zoo's ``train.py`` does: a run folder with the model,
the entry it trained with, evaluations and checkpoints; resumable from its last checkpoint.
"""

import dataclasses
import pathlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
import yaml
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import get_device, set_random_seed
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_ddpg_ext.common.validation import InvalidValueError, MissingFileError, check_int, read_yaml_mapping
from sb3_ddpg_ext.ddpg_ext import DDPGExt
from sb3_ddpg_ext.experiments.config import ExperimentConfig, parse_entry
from sb3_ddpg_ext.experiments.entry_writer import write_config
from sb3_ddpg_ext.experiments.evaluation import (
    EVAL_SEED_OFFSET,
    EvaluationResult,
    evaluate,
    existing_model_path,
    saved_model_path,
)
from sb3_ddpg_ext.experiments.run_callbacks import RunCheckpoints, evaluation_callback
from sb3_ddpg_ext.experiments.run_config import resolve_entry
from sb3_ddpg_ext.experiments.run_folder import RunFolder, companion, save_with_companions, saved_steps

__all__ = ["EVAL_SEED_OFFSET", "TrainResult", "TrainSettings", "build_model", "evaluate", "resume", "train"]

DEFAULT_ENV = "Pendulum-v1"
# The settings a resumed run keeps from args.yml (the entry itself is in config.yml).
RUN_ARGS = ("seed", "eval_freq", "eval_episodes", "checkpoint_freq", "save_replay_buffer", "tensorboard_log", "save_path")


@dataclass
class TrainSettings:
    """
    One training run; the command line's ``train`` options, by the same names.

    :param env_id: Gymnasium environment id
    :param seed: seed of the model and the envs
    :param timesteps: budget in environment steps (``None``: the entry's ``n_timesteps``)
    :param hyperparams: RL-Zoo-format YAML file (``None``: the package's ``ddpg_ext.yml``)
    :param preset: train this preset instead of the file's entry (see :mod:`~sb3_ddpg_ext.experiments.run_config`)
    :param params: entry keys to override (``--params key:value``)
    :param n_envs: parallel training envs (``None``: the entry's)
    :param env_kwargs: keyword arguments for ``gymnasium.make``, merged into the entry's
    :param eval_freq: evaluate every this many environment steps with SB3's ``EvalCallback`` (0: never)
    :param eval_episodes: episodes per evaluation during training
    :param n_eval_episodes: episodes of the final evaluation
    :param checkpoint_freq: save model, replay buffer and statistics every this many steps (0: never)
    :param save_replay_buffer: save the replay buffer beside the final model too (so a finished run can be extended)
    :param device: torch device (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...)
    :param log_folder: run folders go to ``<log_folder>/ddpg_ext/<env>_<N>``
    :param save_path: the final model's file (default: ``<run folder>/<env>.zip``)
    :param tensorboard_log: TensorBoard log folder (``None``: no TensorBoard logging)
    :param progress_bar: show SB3's progress bar
    :param verbose: SB3 verbosity
    """

    env_id: str = DEFAULT_ENV
    seed: int = 0
    timesteps: int | None = None
    hyperparams: str | None = None
    preset: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    n_envs: int | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_freq: int = 0
    eval_episodes: int = 5
    n_eval_episodes: int = 10
    checkpoint_freq: int = 0
    save_replay_buffer: bool = False
    device: str = "auto"
    log_folder: str = "logs"
    save_path: str | None = None
    tensorboard_log: str | None = None
    progress_bar: bool = True
    verbose: int = 0

    def __post_init__(self) -> None:
        check_int("seed", self.seed, 0)
        for name, minimum in (("eval_freq", 0), ("checkpoint_freq", 0), ("eval_episodes", 1), ("n_eval_episodes", 1)):
            check_int(name, getattr(self, name), minimum)
        for name in ("timesteps", "n_envs"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        if pathlib.Path(self.log_folder).exists() and not pathlib.Path(self.log_folder).is_dir():
            raise InvalidValueError(f"`log_folder`: {self.log_folder!r} exists and is not a folder")
        resolve_device(self.device)


@dataclass
class TrainResult:
    """
    :param env_id: the env trained on
    :param model_path: where the final model was saved
    :param run_folder: the run's folder (config, evaluations, checkpoints)
    :param evaluation: evaluation of the final deterministic policy
    :param train_seconds: wall-clock time of ``learn()``
    :param n_timesteps: environment steps trained in this call
    :param notice: what the user should know about the run's configuration (e.g. the fallback to a preset)
    """

    env_id: str
    model_path: pathlib.Path
    run_folder: pathlib.Path
    evaluation: EvaluationResult
    train_seconds: float
    n_timesteps: int
    notice: str | None = None


def resolve_device(name: str) -> th.device:
    """
    The torch device named by ``--device``; a device this machine does not have is an error, not a silent fallback
    to the CPU (SB3's ``get_device`` falls back).
    """
    try:
        device = get_device(name) if name == "auto" else th.device(name)
    except RuntimeError as error:
        raise InvalidValueError(f"`device`: {name!r} is not a torch device (auto, cpu, cuda, cuda:<index>, mps)") from error
    available = {"cuda": th.cuda.is_available(), "mps": th.backends.mps.is_available()}
    if not available.get(device.type, True):
        raise InvalidValueError(f"`device`: {name!r} was asked for, but this machine has no {device.type} device")
    return device


def train(settings: TrainSettings, notify: Callable[[str], None] | None = None) -> TrainResult:
    """
    Train a new run: resolve its entry, write it to ``config.yml`` in a new run folder, train, save, evaluate.

    :param settings: the run
    :param notify: called, before training, with what the user should know about the entry's choice (e.g. the
        fall-back to the recommended preset); the notice is also in the result
    """
    chosen = resolve_entry(settings.env_id, settings.hyperparams, settings.preset, settings.params)
    entry = dict(chosen.entry)
    if settings.timesteps is not None:
        entry["n_timesteps"] = settings.timesteps
    if settings.n_envs is not None:
        entry["n_envs"] = settings.n_envs
    if settings.env_kwargs:
        entry["env_kwargs"] = {**(entry.get("env_kwargs") or {}), **settings.env_kwargs}
    config = parse_entry(settings.env_id, entry, source=chosen.source)
    if chosen.notice is not None and notify is not None:
        notify(chosen.notice)
    folder = RunFolder.new(settings.log_folder, settings.env_id)
    try:
        write_config(folder.config, settings.env_id, entry, f"sb3-ddpg-ext train: {chosen.source}")
        folder.args.write_text(yaml.safe_dump({name: getattr(settings, name) for name in RUN_ARGS}))
        set_random_seed(settings.seed)
        model = build_model(config, settings.seed, settings.tensorboard_log, settings.verbose, settings.device, folder)
    except BaseException:
        shutil.rmtree(folder.path)  # a run that could not start leaves no folder behind (an unknown env id, ...)
        raise
    return _learn(model, config, settings, folder, chosen.notice)


def resume(
    path: str | pathlib.Path,
    timesteps: int | None = None,
    device: str = "auto",
    progress_bar: bool = True,
    verbose: int = 0,
    n_eval_episodes: int = 10,
) -> TrainResult:
    """
    Continue a run from a saved model with its replay buffer (and ``VecNormalize`` statistics), its step count, its
    entry (``config.yml``) and settings (``args.yml``), up to its budget. The training envs restart: the episodes the
    checkpoint cut end there as truncations (:meth:`~sb3_ddpg_ext.DDPGExt.cut_running_episodes`), and the new envs
    are seeded from the run's seed and the step count.

    :param path: a run folder (its model with the most steps is taken) or a model file of one
    :param timesteps: a new budget (total steps, e.g. to extend a finished run)
    :param device: torch device
    :param progress_bar: show SB3's progress bar
    :param verbose: SB3 verbosity
    :param n_eval_episodes: episodes of the final evaluation
    """
    path = pathlib.Path(path)
    model_path = None if path.is_dir() else existing_model_path(path)
    run_path = path if model_path is None else model_path.parent
    for required in (run_path / "config.yml", run_path / "args.yml"):
        if not required.is_file():
            raise MissingFileError(f"`resume`: {str(required)!r} does not exist; only runs of `train` can be resumed")
    entries = read_yaml_mapping(run_path / "config.yml", "run configuration")
    (env_id, entry), *others = entries.items()
    if others:
        raise InvalidValueError(f"`resume`: {str(run_path / 'config.yml')!r} should hold one entry, it has {sorted(entries)}")
    run_args = read_yaml_mapping(run_path / "args.yml", "run settings")
    extra: dict[str, Any] = {
        "device": device,
        "progress_bar": progress_bar,
        "verbose": verbose,
        "n_eval_episodes": n_eval_episodes,
    }
    settings = TrainSettings(env_id=env_id, timesteps=timesteps, **extra, **run_args)
    folder = RunFolder(run_path, env_id)
    model_path = model_path or folder.latest_model()
    if timesteps is not None:
        entry = {**entry, "n_timesteps": timesteps}
    config = parse_entry(env_id, entry, source=str(folder.config))
    steps = saved_steps(model_path)
    if steps >= config.n_timesteps:
        raise InvalidValueError(
            f"`resume`: {str(model_path)!r} has trained {steps} of the run's {config.n_timesteps} steps;"
            " pass a larger budget (--timesteps) to continue it"
        )
    model = _load_for_resuming(model_path, config, settings, folder, steps)
    if timesteps is not None:  # written once the run can go on: a refused resume changes nothing
        write_config(folder.config, env_id, entry, f"sb3-ddpg-ext train, resumed with a budget of {timesteps} steps")
    return _learn(model, config, settings, folder)


def _load_for_resuming(
    model_path: pathlib.Path, config: ExperimentConfig, settings: TrainSettings, folder: RunFolder, steps: int
) -> DDPGExt:
    buffer_path = companion(model_path, "replay_buffer")
    if not buffer_path.is_file():
        raise MissingFileError(
            f"`resume`: no replay buffer beside {str(model_path)!r} (expected {buffer_path.name}); checkpoints"
            " (--checkpoint-freq) save one, a final model with --save-replay-buffer"
        )
    # A seed of its own for each resumption point (seed + steps could meet the evaluation env's seed + offset).
    seed = int(np.random.SeedSequence([settings.seed, steps]).generate_state(1)[0] >> 1)
    env = make_training_env(config, seed, folder, resumed=True)
    stats_path = companion(model_path, "vecnormalize")
    if isinstance(env, VecNormalize):
        if not stats_path.is_file():
            raise MissingFileError(f"`resume`: the run normalises its env, but {stats_path.name} is missing")
        env = VecNormalize.load(str(stats_path), env.venv)
    set_random_seed(seed)
    model = DDPGExt.load(model_path, env=env, device=resolve_device(settings.device))
    model.load_replay_buffer(buffer_path)
    model.cut_running_episodes()
    return model


def _learn(
    model: DDPGExt, config: ExperimentConfig, settings: TrainSettings, folder: RunFolder, notice: str | None = None
) -> TrainResult:
    resumed_at = model.num_timesteps
    callbacks: list[BaseCallback] = []
    if settings.eval_freq:
        callbacks.append(
            evaluation_callback(config, settings.seed, folder, settings.eval_freq, settings.eval_episodes, resumed_at)
        )
    if settings.checkpoint_freq:
        callbacks.append(RunCheckpoints(folder, settings.checkpoint_freq))
    start = time.perf_counter()
    model.learn(
        total_timesteps=config.n_timesteps - resumed_at,
        callback=callbacks,
        progress_bar=settings.progress_bar,
        tb_log_name=f"DDPGExt_{config.env_id}",
        reset_num_timesteps=resumed_at == 0,
    )
    train_seconds = time.perf_counter() - start

    model_path = saved_model_path(settings.save_path) if settings.save_path is not None else folder.model
    model_path.parent.mkdir(parents=True, exist_ok=True)
    save_with_companions(model, model_path, settings.save_replay_buffer)
    env = model.get_env()
    if env is not None:
        env.close()
    evaluation = evaluate(
        config.env_id, model_path, settings.n_eval_episodes, settings.seed + EVAL_SEED_OFFSET, config.env_kwargs
    )
    return TrainResult(
        config.env_id, model_path, folder.path, evaluation, train_seconds, model.num_timesteps - resumed_at, notice
    )


def build_model(
    config: ExperimentConfig,
    seed: int,
    tensorboard_log: str | None = None,
    verbose: int = 0,
    device: str = "auto",
    folder: RunFolder | None = None,
) -> DDPGExt:
    """
    DDPGExt on the entry's training environment, with the entry's action noise.

    :param config: a converted hyperparameter entry
    :param seed: seed of the model and its environments
    :param tensorboard_log: TensorBoard log folder (``None``: no TensorBoard logging)
    :param verbose: SB3 verbosity
    :param device: torch device
    :param folder: the run's folder, where the training envs' monitor files go (``None``: none written)
    """
    kwargs = dict(config.model_kwargs)
    if "device" in kwargs:  # an entry may name a device; one given beside it must agree
        if device != "auto" and resolve_device(device) != resolve_device(kwargs["device"]):
            raise InvalidValueError(
                f"`device`: {device!r} was asked for, the entry for {config.env_id!r} names {kwargs['device']!r}"
            )
        device = kwargs.pop("device")
    env = make_training_env(config, seed, folder)
    assert isinstance(env.action_space, gym.spaces.Box)
    try:
        return DDPGExt(
            env=env,
            action_noise=config.make_action_noise(int(np.prod(env.action_space.shape))),
            seed=seed,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=resolve_device(device),
            **kwargs,
        )
    except ValueError as error:
        if isinstance(error, InvalidValueError):
            raise
        # SB3's own checks of the entry's values (e.g. a `train_freq` unit) raise plain ValueErrors.
        raise InvalidValueError(f"the entry for {config.env_id!r}: {error}") from error


def make_training_env(config: ExperimentConfig, seed: int, folder: RunFolder | None = None, resumed: bool = False) -> VecEnv:
    """
    The entry's vectorised (and, if asked, normalised) training environment.

    :param config: the run's entry
    :param seed: seed of the first env (the others: seed + 1, ...)
    :param folder: the run's folder, for the envs' monitor files (``<i>.monitor.csv``)
    :param resumed: append to the monitor files instead of replacing them
    """
    env = make_vec_env(
        config.env_id,
        n_envs=config.n_envs,
        seed=seed,
        env_kwargs=config.env_kwargs,
        monitor_dir=str(folder.path) if folder is not None else None,
        monitor_kwargs={"override_existing": not resumed},
    )
    if config.normalize is not None:
        env = VecNormalize(env, **{"gamma": config.model_kwargs.get("gamma", 0.99), **config.normalize})
    return env


def settings_fields() -> list[str]:
    """The names of :class:`TrainSettings`' fields (the command line maps its options onto them)."""
    return [item.name for item in dataclasses.fields(TrainSettings)]
