"""
Optuna tuning of DDPGExt: the objective, its pruning evaluation callback and the study set-up.

A study lives in a storage (:mod:`~sb3_ddpg_ext.experiments.storage`); any number of workers, started
as processes here (``n_jobs``) or as the same command on other machines, draw trials from it until it
holds ``n_trials`` finished ones. Each trial samples raw values (:mod:`~sb3_ddpg_ext.experiments.search_space`),
stores their RL-Zoo-format entry as the user attribute ``entry``, trains for ``n_timesteps`` with
``n_evaluations`` evaluations reported to the pruner, and returns the last evaluation's mean return.
A trial whose training raises, or whose evaluation return is NaN/inf, ends (FAIL or PRUNED) with the
reason in its user attribute ``failure``; the study goes on.
"""

import functools
import math
import multiprocessing
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import optuna
import torch as th
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from sb3_ddpg_ext.common.priorities import NonFinitePriorityError
from sb3_ddpg_ext.common.validation import InvalidValueError
from sb3_ddpg_ext.experiments.config import DEFAULT_HYPERPARAMS, parse_entry
from sb3_ddpg_ext.experiments.samplers import SAMPLERS, TrialSeededSampler, make_sampler
from sb3_ddpg_ext.experiments.search_space import (
    SearchSpace,
    check_search_space,
    default_search_space,
    narrow,
    sample_params,
    to_entry,
)
from sb3_ddpg_ext.experiments.storage import fail_stale_trials, is_database_url, make_storage
from sb3_ddpg_ext.experiments.train import EVAL_SEED_OFFSET, build_model

PRUNERS = ("median", "halving", "none")
STUDY_DIRECTORY = pathlib.Path("logs") / "tuning"
OUTPUT_MARKER = "# sb3-ddpg-ext tuning result"
ENTRY_ATTR = "entry"
FAILURE_ATTR = "failure"


@dataclass(frozen=True)
class TuningSettings:
    """
    One tuning job; checked on construction.

    :param env_id: Gymnasium environment id (continuous actions)
    :param n_trials: finished trials (complete, pruned, or failed by the trial itself) the study should hold
    :param n_timesteps: training budget of each trial
    :param n_evaluations: evaluations per trial, reported to the pruner; the last one is the trial's value
    :param n_eval_episodes: episodes per evaluation
    :param sampler: ``tpe``, ``random`` or ``cmaes``
    :param pruner: ``median``, ``halving`` or ``none``
    :param storage: database URL or journal file; ``None``: the journal file ``logs/tuning/<study_name>.journal``
    :param study_name: default ``ddpg_ext-<env_id>``
    :param n_jobs: worker processes started by this call
    :param seed: trial ``k`` samples its configuration with a sampler seeded by ``(seed, k)`` and trains with seed
        ``seed + k``
    :param output: YAML file for the best entry; default: beside the journal file, or ``logs/tuning/`` for a
        database. Trials CSV and plots are written beside it.
    :param search_space: overrides of the default search space (see :func:`~.search_space.narrow`)
    :param n_startup_trials: random trials before TPE/CMA-ES model the results, and trials before pruning starts
    :param heartbeat_interval: seconds between heartbeats of a running trial
    :param grace_period: seconds without heartbeat after which a running trial counts as dead (default 2x interval)
    :param torch_threads: torch threads of each worker
    """

    env_id: str
    n_trials: int
    n_timesteps: int
    n_evaluations: int = 10
    n_eval_episodes: int = 5
    sampler: str = "tpe"
    pruner: str = "median"
    storage: str | None = None
    study_name: str | None = None
    n_jobs: int = 1
    seed: int = 0
    output: str | None = None
    search_space: Mapping[str, Any] = field(default_factory=dict)
    n_startup_trials: int = 5
    heartbeat_interval: int = 60
    grace_period: int | None = None
    torch_threads: int = 1

    def __post_init__(self) -> None:
        for name in ("n_trials", "n_timesteps", "n_evaluations", "n_eval_episodes", "n_jobs", "torch_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidValueError(f"`{name}` must be a positive integer, got {value!r}")
        if self.n_evaluations > self.n_timesteps:
            raise InvalidValueError(f"`n_evaluations={self.n_evaluations}` must be <= `n_timesteps={self.n_timesteps}`")
        if self.sampler not in SAMPLERS:
            raise InvalidValueError(f"`sampler` must be one of {list(SAMPLERS)}, got {self.sampler!r}")
        if self.pruner not in PRUNERS:
            raise InvalidValueError(f"`pruner` must be one of {list(PRUNERS)}, got {self.pruner!r}")
        if self.n_startup_trials < 0:
            raise InvalidValueError(f"`n_startup_trials` must be >= 0, got {self.n_startup_trials}")
        if self.sampler == "cmaes":
            _require_module("cmaes", "sampler='cmaes'")
        if self.output_path.resolve() == DEFAULT_HYPERPARAMS.resolve():
            raise InvalidValueError(f"`output` must not be the package's hyperparameter file {str(DEFAULT_HYPERPARAMS)!r}")
        check_continuous_env(self.env_id)
        check_search_space(self.space(), self.env_id)

    @property
    def resolved_study_name(self) -> str:
        return self.study_name or f"ddpg_ext-{self.env_id}"

    @property
    def resolved_storage(self) -> str:
        return self.storage or str(STUDY_DIRECTORY / f"{self.resolved_study_name}.journal")

    @property
    def output_path(self) -> pathlib.Path:
        if self.output is not None:
            return pathlib.Path(self.output)
        if is_database_url(self.resolved_storage):
            return STUDY_DIRECTORY / f"{self.resolved_study_name}.yml"
        return pathlib.Path(self.resolved_storage).with_suffix(".yml")

    def space(self) -> SearchSpace:
        return narrow(default_search_space(self.env_id), self.search_space, source="search space")


def _require_module(module: str, purpose: str) -> None:
    try:
        __import__(module)
    except ImportError as error:
        raise InvalidValueError(f"{purpose} needs the `{module}` package: pip install 'sb3-ddpg-ext[tune]'") from error


def check_continuous_env(env_id: str) -> None:
    """Refuse an env id that Gymnasium does not know or whose actions are not continuous (Box)."""
    try:
        env = gym.make(env_id)
    except gym.error.Error as error:
        raise InvalidValueError(f"unknown or unusable env {env_id!r}: {error}") from error
    action_space = env.action_space
    env.close()
    if not isinstance(action_space, gym.spaces.Box):
        raise InvalidValueError(f"env {env_id!r} has {action_space}; DDPGExt needs continuous (Box) actions")


class TrialEvalCallback(EvalCallback):
    """
    SB3's ``EvalCallback`` that reports each evaluation to an Optuna trial, stops training when the trial
    should be pruned, and when the evaluation return is not finite (``diverged``).

    :param eval_env: evaluation environment
    :param trial: the trial to report to
    :param n_eval_episodes: episodes per evaluation
    :param eval_freq: evaluate every this many calls (environment steps with one env)
    """

    def __init__(self, eval_env: VecEnv, trial: optuna.Trial, n_eval_episodes: int, eval_freq: int):
        super().__init__(eval_env, n_eval_episodes=n_eval_episodes, eval_freq=eval_freq, deterministic=True, verbose=0)
        self.trial = trial
        self.is_pruned = False
        self.diverged = False

    def _on_step(self) -> bool:
        if self.eval_freq <= 0 or self.n_calls % self.eval_freq != 0:
            return True
        super()._on_step()
        if not math.isfinite(self.last_mean_reward):
            self.diverged = True
            return False
        self.trial.report(self.last_mean_reward, self.num_timesteps)
        self.is_pruned = self.trial.should_prune()
        return not self.is_pruned


def objective(trial: optuna.Trial, settings: TuningSettings, space: SearchSpace) -> float:
    """Train one sampled configuration and return its last evaluation's mean return."""
    try:
        return _train_and_evaluate(trial, settings, space)
    except optuna.TrialPruned:
        raise
    except Exception as error:
        trial.set_user_attr(FAILURE_ATTR, f"{type(error).__name__}: {error}")
        raise


def _train_and_evaluate(trial: optuna.Trial, settings: TuningSettings, space: SearchSpace) -> float:
    entry = to_entry(sample_params(trial, space), settings.n_timesteps)
    trial.set_user_attr(ENTRY_ATTR, entry)
    seed = settings.seed + trial.number
    model = build_model(parse_entry(settings.env_id, entry, source=f"trial {trial.number}"), seed)
    eval_env = make_vec_env(settings.env_id, n_envs=1, seed=seed + EVAL_SEED_OFFSET)
    callback = TrialEvalCallback(eval_env, trial, settings.n_eval_episodes, settings.n_timesteps // settings.n_evaluations)
    try:
        model.learn(settings.n_timesteps, callback=callback)
    except NonFinitePriorityError as error:
        raise _diverged(trial, f"{error} at step {model.num_timesteps}") from error
    finally:
        eval_env.close()
        if model.env is not None:
            model.env.close()
    if callback.diverged:
        raise _diverged(trial, f"evaluation return {callback.last_mean_reward} at step {model.num_timesteps}")
    # A trial stopped at its last evaluation has spent its budget: it completes with that evaluation.
    if callback.is_pruned and model.num_timesteps < settings.n_timesteps:
        raise optuna.TrialPruned(f"pruned at step {model.num_timesteps}")
    return float(callback.last_mean_reward)


def _diverged(trial: optuna.Trial, detail: str) -> optuna.TrialPruned:
    """Record why the trial diverged; the returned exception prunes it."""
    reason = f"diverged: {detail}"
    trial.set_user_attr(FAILURE_ATTR, reason)
    return optuna.TrialPruned(reason)


def make_pruner(name: str, n_startup_trials: int, n_timesteps: int) -> optuna.pruners.BasePruner:
    """
    :param name: one of :data:`PRUNERS`
    :param n_startup_trials: trials finished before the median pruner prunes
    :param n_timesteps: training budget of a trial; evaluations are reported at their environment step, and the
        median pruner leaves the first third of the budget alone (RL Zoo's rule), when little has been learned yet
    """
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=n_timesteps // 3 + 1)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def load_study(settings: TuningSettings) -> optuna.Study:
    """
    Create the study in its storage, or load it: every worker calls this with the same settings. The sampler
    is seeded per trial (see :mod:`~sb3_ddpg_ext.experiments.samplers`), so workers started with the same seed,
    here or on other machines, and resumed commands draw distinct configurations.
    """
    return optuna.create_study(
        study_name=settings.resolved_study_name,
        storage=make_storage(settings.resolved_storage, settings.heartbeat_interval, settings.grace_period),
        sampler=TrialSeededSampler(
            functools.partial(make_sampler, settings.sampler, n_startup_trials=settings.n_startup_trials), settings.seed
        ),
        pruner=make_pruner(settings.pruner, settings.n_startup_trials, settings.n_timesteps),
        direction="maximize",
        load_if_exists=True,
    )


def counts_towards_budget(trial: optuna.trial.FrozenTrial) -> bool:
    """
    Complete and pruned trials count, and failed ones whose failure the trial recorded; a trial failed
    because its worker died (no recorded failure) does not, and is run again.
    """
    if trial.state == optuna.trial.TrialState.FAIL:
        return FAILURE_ATTR in trial.user_attrs
    return trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _trials_left(study: optuna.Study, n_trials: int) -> int:
    trials = study.get_trials(deepcopy=False)
    done = sum(counts_towards_budget(trial) for trial in trials)
    running = sum(trial.state == optuna.trial.TrialState.RUNNING for trial in trials)
    return n_trials - done - running


def run_worker(settings: TuningSettings) -> None:
    """Draw and run trials of the shared study until it holds ``settings.n_trials`` finished ones."""
    th.set_num_threads(settings.torch_threads)
    study = load_study(settings)
    space = settings.space()

    def stop_when_budget_spent(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if _trials_left(study, settings.n_trials) <= 0:
            study.stop()

    # Trials of dead workers must not count as running: they would be neither finished nor redone.
    fail_stale_trials(study)
    if _trials_left(study, settings.n_trials) > 0:
        # The callback stops when the shared study is full, so that a dead worker's trial, failed by the
        # heartbeat check at the start of a later trial, is run again; n_trials only bounds this worker.
        study.optimize(
            lambda trial: objective(trial, settings, space),
            n_trials=settings.n_trials,
            callbacks=[stop_when_budget_spent],
            catch=(Exception,),
            gc_after_trial=True,
        )


def tune(settings: TuningSettings) -> optuna.Study:
    """
    Run the workers (in this process when ``n_jobs == 1``, else in ``n_jobs`` spawned processes) and return
    the study. Reports are written by :func:`~sb3_ddpg_ext.experiments.tuning_report.write_reports`.
    """
    # Created here first: a bad storage fails once, clearly, and workers never race to create the study.
    load_study(settings)
    if settings.n_jobs == 1:
        run_worker(settings)
    else:
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=run_worker, args=(settings,)) for _ in range(settings.n_jobs)]
        for process in workers:
            process.start()
        for process in workers:
            process.join()
        failed = [index for index, process in enumerate(workers) if process.exitcode != 0]
        if failed:
            raise RuntimeError(f"tuning workers {failed} exited with an error (see their output above)")
    study = load_study(settings)
    fail_stale_trials(study)
    return study


def replay_entry(trial: optuna.trial.FrozenTrial, n_timesteps: int) -> dict[str, Any]:
    """The entry of a stored trial, rebuilt from its raw parameters alone."""
    return to_entry(trial.params, n_timesteps)
