"""The callbacks of a training run: SB3's ``EvalCallback`` set up as RL Zoo sets it, and resumable checkpoints."""

import pathlib

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_ddpg_ext.experiments.config import ExperimentConfig
from sb3_ddpg_ext.experiments.evaluation import EVAL_SEED_OFFSET
from sb3_ddpg_ext.experiments.run_folder import CHECKPOINT_PREFIX, RunFolder, companion, save_with_companions, saved_steps


class SaveVecNormalizeBesideBest(BaseCallback):
    """Called by ``EvalCallback`` on a new best model: saves the training env's ``VecNormalize`` statistics beside it,
    so the best model is evaluated (``eval``, ``record``) with the statistics it was trained with."""

    def __init__(self, best_model: pathlib.Path):
        super().__init__()
        self.path = companion(best_model, "vecnormalize")

    def _on_step(self) -> bool:
        env = self.model.get_vec_normalize_env()
        if env is not None:
            env.save(str(self.path))
        return True


def evaluation_callback(
    config: ExperimentConfig, seed: int, folder: RunFolder, eval_freq: int, n_episodes: int, resumed_at: int = 0
) -> EvalCallback:
    """
    SB3's ``EvalCallback`` on a separate, separately seeded env: every ``eval_freq`` environment steps (counted over
    all training envs, as RL Zoo counts them), it writes ``evaluations.npz`` and keeps the best model.

    :param config: the run's entry (its env settings)
    :param seed: the run's seed
    :param folder: the run's folder
    :param eval_freq: environment steps between evaluations
    :param n_episodes: episodes per evaluation
    :param resumed_at: a resumed run's step count: the evaluations up to it are kept, so that nothing is lost
    """
    env: VecEnv = make_vec_env(config.env_id, n_envs=1, seed=seed + EVAL_SEED_OFFSET, env_kwargs=config.env_kwargs)
    if config.normalize is not None:
        # The entry's settings (norm_obs, clip_obs, ...), frozen, raw rewards; the statistics are copied from the
        # training env before each evaluation (SB3's sync_envs_normalization).
        env = VecNormalize(env, **{**config.normalize, "training": False, "norm_reward": False})
    callback = EvalCallback(
        env,
        callback_on_new_best=SaveVecNormalizeBesideBest(folder.best_model),
        n_eval_episodes=n_episodes,
        eval_freq=max(eval_freq // config.n_envs, 1),
        log_path=str(folder.path),
        best_model_save_path=str(folder.path),
        deterministic=True,
    )
    if resumed_at:
        callback.n_calls = resumed_at // config.n_envs  # the evaluation schedule goes on where it was
        if folder.evaluations.is_file():
            restore_evaluations(callback, folder.evaluations, resumed_at)
        discard_later_best(folder.best_model, resumed_at)
    return callback


def discard_later_best(best_model: pathlib.Path, resumed_at: int) -> None:
    """
    Remove a best model saved after step ``resumed_at`` (by the interrupted run, past its checkpoint: not of the
    resumed run's history). The best return of the evaluations kept stays the bar, so the next best model saved is
    the best of the whole run; until then the run has none.
    """
    if best_model.is_file() and saved_steps(best_model) > resumed_at:
        best_model.unlink()
        companion(best_model, "vecnormalize").unlink(missing_ok=True)


def restore_evaluations(callback: EvalCallback, path: pathlib.Path, up_to: int) -> None:
    """
    Give an ``EvalCallback`` the history of an interrupted run: its evaluations up to step ``up_to`` (later ones
    were made by the policy after the checkpoint, which the resumed run replaces) and the best return among them.
    """
    with np.load(path) as saved:
        keep = saved["timesteps"] <= up_to
        callback.evaluations_timesteps = [int(step) for step in saved["timesteps"][keep]]
        callback.evaluations_results = [list(row) for row in saved["results"][keep]]
        callback.evaluations_length = [list(row) for row in saved["ep_lengths"][keep]]
        if "successes" in saved:
            callback.evaluations_successes = [list(row) for row in saved["successes"][keep]]
    if callback.evaluations_results:
        callback.best_mean_reward = max(float(np.mean(row)) for row in callback.evaluations_results)


class RunCheckpoints(BaseCallback):
    """
    Every ``every`` environment steps, the model, its replay buffer and its ``VecNormalize`` statistics, named by the
    step count as SB3's ``CheckpointCallback`` (and RL Zoo) name them: ``rl_model_<steps>_steps.zip``,
    ``rl_model_replay_buffer_<steps>_steps.pkl``, ``rl_model_vecnormalize_<steps>_steps.pkl``.

    Saved at the start of a rollout, not in ``_on_step`` as SB3's callback does: there, the step's transition is not
    yet in the buffer and its gradient steps not yet taken, so a run resumed from it would lose both. At a rollout's
    start the model, its buffer and its step count agree (with ``train_freq`` in episodes, the checkpoint comes at the
    first episode end past each multiple of ``every``).

    :param folder: the run's folder
    :param every: environment steps between checkpoints (over all envs)
    """

    def __init__(self, folder: RunFolder, every: int):
        super().__init__()
        self.folder = folder
        self.every = every

    def _next_checkpoint(self) -> int:
        """The first multiple of ``every`` past the step count (a resumed run continues the schedule)."""
        return (self.num_timesteps // self.every + 1) * self.every

    def _on_training_start(self) -> None:
        self._next = self._next_checkpoint()

    def _on_rollout_start(self) -> None:
        if self.num_timesteps < self._next:
            return
        self._next = self._next_checkpoint()
        model_path = self.folder.path / f"{CHECKPOINT_PREFIX}_{self.num_timesteps}_steps.zip"
        save_with_companions(self.model, model_path, replay_buffer=True)  # type: ignore[arg-type]

    def _on_step(self) -> bool:
        return True
