"""Evaluate saved models: SB3's ``evaluate_policy`` on the deterministic policy, with the run's saved statistics."""

import pathlib
from dataclasses import dataclass
from typing import Any

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_ddpg_ext.common.validation import InvalidValueError, MissingFileError
from sb3_ddpg_ext.ddpg_ext import DDPGExt
from sb3_ddpg_ext.experiments.run_folder import companion, file_name

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


def load_for_evaluation(
    env_id: str,
    model_path: str | pathlib.Path,
    seed: int = EVAL_SEED_OFFSET,
    env_kwargs: dict[str, Any] | None = None,
) -> tuple[DDPGExt, VecEnv]:
    """
    A saved model on a new env, the ``VecNormalize`` statistics saved beside it (if any) loaded frozen: no update,
    rewards not normalised, so that returns are the environment's own.

    :param env_id: Gymnasium environment id
    :param model_path: a model saved by ``train`` or ``DDPGExt.save``, with or without its ``.zip``
    :param seed: seed of the env
    :param env_kwargs: keyword arguments for ``gymnasium.make`` (e.g. ``render_mode``)
    """
    model_path = existing_model_path(model_path)
    env: VecEnv = make_vec_env(env_id, n_envs=1, seed=seed, env_kwargs=env_kwargs)
    # Beside the model (this package's `train`), or in RL Zoo's `<run>/<env>/vecnormalize.pkl` (its plug-in's runs).
    candidates = (companion(model_path, "vecnormalize"), model_path.parent / file_name(env_id) / "vecnormalize.pkl")
    stats_path = next((path for path in candidates if path.is_file()), None)
    if stats_path is not None:
        env = VecNormalize.load(str(stats_path), env)
        env.training = False
        env.norm_reward = False
    try:
        model = DDPGExt.load(model_path, env=env)
    except ValueError as error:  # SB3's word for a file that is no model, or one for other spaces
        env.close()
        raise InvalidValueError(f"model file {str(model_path)!r} cannot be loaded for env {env_id!r}: {error}") from error
    return model, env


def evaluate(
    env_id: str,
    model_path: str | pathlib.Path,
    n_episodes: int = 10,
    seed: int = EVAL_SEED_OFFSET,
    env_kwargs: dict[str, Any] | None = None,
) -> EvaluationResult:
    """
    Evaluate a saved model's deterministic policy with SB3's ``evaluate_policy`` (see :func:`load_for_evaluation`).

    :param env_id: Gymnasium environment id
    :param model_path: a model saved by ``train`` or ``DDPGExt.save``, with or without its ``.zip``
    :param n_episodes: number of evaluation episodes
    :param seed: seed of the evaluation environment
    :param env_kwargs: keyword arguments for ``gymnasium.make`` (``render_mode="human"`` shows a window)
    """
    model, env = load_for_evaluation(env_id, model_path, seed, env_kwargs)
    try:
        mean_return, std_return = evaluate_policy(model, env, n_eval_episodes=n_episodes, deterministic=True)
    finally:
        env.close()
    assert isinstance(mean_return, float) and isinstance(std_return, float)
    return EvaluationResult(float(mean_return), float(std_return), n_episodes)
