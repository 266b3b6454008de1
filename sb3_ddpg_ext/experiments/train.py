"""Train DDPGExt from a hyperparameter entry, save it, and evaluate saved models."""

import pathlib
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_ddpg_ext.common.validation import InvalidValueError, MissingFileError
from sb3_ddpg_ext.ddpg_ext import DDPGExt
from sb3_ddpg_ext.experiments.config import DEFAULT_HYPERPARAMS, ExperimentConfig, load_entry

# Offset between the training env's seed and the evaluation env's, so evaluation episodes are new ones.
EVAL_SEED_OFFSET = 10_000


@dataclass
class EvaluationResult:
    """
    :param mean_return: mean episodic return over the evaluation episodes
    :param std_return: its standard deviation
    :param n_episodes: number of evaluation episodes
    """

    mean_return: float
    std_return: float
    n_episodes: int

    def __str__(self) -> str:
        return f"{self.mean_return:.2f} ± {self.std_return:.2f} over {self.n_episodes} episodes"


@dataclass
class TrainResult:
    """
    :param model_path: where the model was saved
    :param evaluation: evaluation of the final deterministic policy
    :param train_seconds: wall-clock time of ``learn()``
    :param n_timesteps: environment steps trained
    """

    model_path: pathlib.Path
    evaluation: EvaluationResult
    train_seconds: float
    n_timesteps: int


def vecnormalize_path(model_path: pathlib.Path) -> pathlib.Path:
    """Where the ``VecNormalize`` statistics of a model are saved: beside it."""
    return model_path.with_name(model_path.stem + "_vecnormalize.pkl")


def default_model_path(env_id: str, seed: int) -> pathlib.Path:
    return pathlib.Path("logs") / "ddpg_ext" / f"{env_id}_seed{seed}" / "model.zip"


def saved_model_path(path: str | pathlib.Path) -> pathlib.Path:
    """The file ``model.save(path)`` writes: SB3 appends ``.zip`` to a path without a suffix."""
    path = pathlib.Path(path)
    return path if path.suffix else pathlib.Path(f"{path}.zip")


def existing_model_path(path: str | pathlib.Path) -> pathlib.Path:
    """
    The model file a user means by ``path``: the path itself, or with ``.zip`` appended, as ``DDPGExt.load`` tries.

    :raises MissingFileError: neither exists
    """
    path = pathlib.Path(path)
    for candidate in (path, pathlib.Path(f"{path}.zip")):
        if candidate.is_file():
            return candidate
    raise MissingFileError(f"model file {str(path)!r} does not exist (nor {str(path)!r} with '.zip' appended)")


def train(
    env_id: str,
    seed: int = 0,
    timesteps: int | None = None,
    hyperparams: str | pathlib.Path = DEFAULT_HYPERPARAMS,
    tensorboard_log: str | None = None,
    save_path: str | pathlib.Path | None = None,
    n_eval_episodes: int = 10,
    progress_bar: bool = True,
    verbose: int = 0,
) -> TrainResult:
    """
    Train DDPGExt with the env's hyperparameter entry, save it and evaluate the final policy.

    :param env_id: Gymnasium environment id, looked up in ``hyperparams``
    :param seed: seed of the model and the environments
    :param timesteps: training budget; ``None`` takes the entry's ``n_timesteps``
    :param hyperparams: RL-Zoo-format YAML file
    :param tensorboard_log: TensorBoard log folder (``None``: no TensorBoard logging)
    :param save_path: where to save the model; ``.zip`` is appended to a path without a suffix, as SB3 does;
        default ``logs/ddpg_ext/<env>_seed<seed>/model.zip``
    :param n_eval_episodes: evaluation episodes of the final deterministic policy
    :param progress_bar: show SB3's progress bar
    :param verbose: SB3 verbosity
    """
    config = load_entry(env_id, hyperparams)
    n_timesteps = config.n_timesteps if timesteps is None else timesteps
    model_path = saved_model_path(save_path) if save_path is not None else default_model_path(env_id, seed)

    model = build_model(config, seed, tensorboard_log=tensorboard_log, verbose=verbose)
    env = model.get_env()
    assert env is not None
    start = time.perf_counter()
    model.learn(total_timesteps=n_timesteps, progress_bar=progress_bar, tb_log_name=f"DDPGExt_{env_id}")
    train_seconds = time.perf_counter() - start

    model_path.parent.mkdir(parents=True, exist_ok=True)
    model.save(model_path)
    if isinstance(env, VecNormalize):
        env.save(str(vecnormalize_path(model_path)))
    env.close()
    evaluation = evaluate(
        env_id, model_path, n_episodes=n_eval_episodes, seed=seed + EVAL_SEED_OFFSET, env_kwargs=config.env_kwargs
    )
    return TrainResult(model_path, evaluation, train_seconds, n_timesteps)


def build_model(config: ExperimentConfig, seed: int, tensorboard_log: str | None = None, verbose: int = 0) -> DDPGExt:
    """
    DDPGExt on the entry's training environment, with the entry's action noise.

    :param config: a converted hyperparameter entry
    :param seed: seed of the model and its environments
    :param tensorboard_log: TensorBoard log folder (``None``: no TensorBoard logging)
    :param verbose: SB3 verbosity
    """
    env = make_training_env(config, seed)
    assert isinstance(env.action_space, gym.spaces.Box)
    try:
        return DDPGExt(
            env=env,
            action_noise=config.make_action_noise(int(np.prod(env.action_space.shape))),
            seed=seed,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            **config.model_kwargs,
        )
    except ValueError as error:
        if isinstance(error, InvalidValueError):
            raise
        # SB3's own checks of the entry's values (e.g. a `train_freq` unit) raise plain ValueErrors.
        raise InvalidValueError(f"the entry for {config.env_id!r}: {error}") from error


def make_training_env(config: ExperimentConfig, seed: int) -> VecEnv:
    """The entry's vectorised (and, if asked, normalised) training environment."""
    env = make_vec_env(config.env_id, n_envs=config.n_envs, seed=seed, env_kwargs=config.env_kwargs)
    if config.normalize is not None:
        env = VecNormalize(env, **{"gamma": config.model_kwargs.get("gamma", 0.99), **config.normalize})
    return env


def evaluate(
    env_id: str,
    model_path: str | pathlib.Path,
    n_episodes: int = 10,
    seed: int = EVAL_SEED_OFFSET,
    env_kwargs: dict[str, Any] | None = None,
) -> EvaluationResult:
    """
    Evaluate a saved model's deterministic policy with SB3's ``evaluate_policy``.

    The ``VecNormalize`` statistics saved beside the model, if any, are loaded frozen
    (no update, rewards not normalised) so that returns are the environment's own.

    :param env_id: Gymnasium environment id
    :param model_path: a model saved by :func:`train` or ``DDPGExt.save``, with or without its ``.zip``
    :param n_episodes: number of evaluation episodes
    :param seed: seed of the evaluation environment
    :param env_kwargs: keyword arguments for ``gymnasium.make``
    """
    model_path = existing_model_path(model_path)
    env: VecEnv = make_vec_env(env_id, n_envs=1, seed=seed, env_kwargs=env_kwargs)
    stats_path = vecnormalize_path(model_path)
    if stats_path.is_file():
        env = VecNormalize.load(str(stats_path), env)
        env.training = False
        env.norm_reward = False
    try:
        model = DDPGExt.load(model_path, env=env)
    except ValueError as error:  # SB3's word for a file that is no model, or one for other spaces
        raise InvalidValueError(f"model file {str(model_path)!r} cannot be loaded for env {env_id!r}: {error}") from error
    mean_return, std_return = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=True)
    assert isinstance(mean_return, float) and isinstance(std_return, float)
    env.close()
    return EvaluationResult(float(mean_return), float(std_return), n_episodes)
