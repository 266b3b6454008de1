"""
Optuna samplers seeded per trial, so that every worker of a shared study draws its own configurations.

A sampler seeded once per process repeats its random draws in every process started with the same seed:
two machines running the same ``tune`` command, or a killed command started again, would re-run the
configurations already in the study. :class:`TrialSeededSampler` instead seeds a fresh sampler for each
trial from ``(seed, trial number)``. Trial numbers are unique within a study (the storage assigns them),
so no two workers draw alike, and a trial's draw depends only on the seed, its number and the study's
history: a fresh single-worker study is reproducible. Optuna's samplers keep their state in the storage
(TPE and random: none besides the generator; CMA-ES: in trial system attributes), so a sampler per trial
changes nothing else.
"""

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

SAMPLERS = ("tpe", "random", "cmaes")


def make_sampler(name: str, seed: int, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    """
    One Optuna sampler with a fixed seed.

    :param name: one of :data:`SAMPLERS`
    :param seed: sampler seed
    :param n_startup_trials: random trials before the model-based samplers start
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            # Multivariate, grouped TPE handles the conditional dimensions; the constant liar keeps
            # parallel workers from sampling the same point.
            return optuna.samplers.TPESampler(
                n_startup_trials=n_startup_trials, seed=seed, multivariate=True, group=True, constant_liar=True
            )
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup_trials, warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=seed)


def trial_seed(seed: int, trial_number: int) -> int:
    """The sampler seed of one trial: independent streams for distinct ``(seed, trial_number)``."""
    return int(np.random.SeedSequence([seed, trial_number]).generate_state(1)[0])


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """
    Delegates to a sampler made afresh for each trial by ``factory(trial_seed(seed, trial.number))``.

    :param factory: makes the underlying sampler from a seed
    :param seed: base seed
    """

    def __init__(self, factory: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._factory = factory
        self._seed = seed
        self._sampler = factory(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._sampler = self._factory(trial_seed(self._seed, trial.number))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()
