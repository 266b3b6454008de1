"""Per-trial seeded samplers: distinct draws across workers and resumes, reproducible fresh studies."""

import functools

import optuna
import pytest

from sb3_ddpg_ext.experiments.samplers import SAMPLERS, TrialSeededSampler, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -10.0, 10.0)
    kind = trial.suggest_categorical("kind", ["a", "b", "c"])
    return -(x**2) + (1.0 if kind == "a" else 0.0)


def _worker(storage: optuna.storages.BaseStorage, name: str, seed: int = 0, sampler: str = "random") -> optuna.Study:
    """What each `tune` process does: load the shared study with its own sampler object."""
    factory = functools.partial(make_sampler, sampler, n_startup_trials=2)
    return optuna.create_study(
        study_name=name, storage=storage, sampler=TrialSeededSampler(factory, seed), direction="maximize", load_if_exists=True
    )


def _xs(study: optuna.Study) -> list[float]:
    return [trial.params["x"] for trial in study.trials]


def test_workers_with_the_same_seed_draw_distinct_configurations():
    storage = optuna.storages.InMemoryStorage()
    first, second = _worker(storage, "shared"), _worker(storage, "shared")
    for _ in range(3):
        first.optimize(_objective, n_trials=1)
        second.optimize(_objective, n_trials=1)
    assert len(set(_xs(first))) == 6
    # The failure this prevents: samplers seeded once per process repeat each other.
    plain = optuna.storages.InMemoryStorage()
    for _ in range(2):
        optuna.create_study(
            study_name="plain", storage=plain, sampler=optuna.samplers.RandomSampler(seed=0), load_if_exists=True
        ).optimize(_objective, n_trials=1)
    assert len(set(_xs(optuna.load_study(study_name="plain", storage=plain)))) == 1


def test_a_resumed_study_does_not_redraw_its_trials():
    storage = optuna.storages.InMemoryStorage()
    _worker(storage, "resumed").optimize(_objective, n_trials=3)
    resumed = _worker(storage, "resumed")
    resumed.optimize(_objective, n_trials=3)
    assert len(set(_xs(resumed))) == 6


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_fresh_studies_with_one_seed_are_reproducible_and_seeds_differ(sampler):
    def run(seed: int) -> list[float]:
        study = _worker(optuna.storages.InMemoryStorage(), "fresh", seed=seed, sampler=sampler)
        study.optimize(_objective, n_trials=6)
        return _xs(study)

    assert run(0) == run(0)
    assert run(0) != run(1)
