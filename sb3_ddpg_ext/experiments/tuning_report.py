"""What a tuning run leaves behind: the best entry as RL-Zoo YAML, a CSV of all trials, and Optuna's plots."""

import csv
import pathlib
from collections import Counter
from typing import Any

import optuna
import yaml

from sb3_ddpg_ext.common.validation import InvalidValueError
from sb3_ddpg_ext.experiments.provenance import provenance
from sb3_ddpg_ext.experiments.tuning import ENTRY_ATTR, FAILURE_ATTR, OUTPUT_MARKER, TuningSettings, tune

PLOTS = {
    "history": "plot_optimization_history",
    "importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
}


def check_output_is_ours(path: pathlib.Path) -> None:
    """Refuse to replace a file that an earlier tuning run did not write (e.g. a hand-kept hyperparameter file)."""
    if path.exists() and not path.read_text().startswith(OUTPUT_MARKER):
        raise InvalidValueError(
            f"output file {str(path)!r} exists and was not written by a tuning run; choose another `--output` "
            "(tuning never overwrites hyperparameter files)"
        )


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    # A complete trial has a value (0.0 among them: `value or -inf` once ranked it last).
    return max(complete, key=lambda trial: float("-inf") if trial.value is None else trial.value) if complete else None


def summary(study: optuna.Study) -> list[str]:
    """Trial counts by state and the best trial, as printable lines."""
    states = Counter(trial.state.name for trial in study.get_trials(deepcopy=False))
    lines = [f"study {study.study_name!r}: {sum(states.values())} trials ({', '.join(f'{n} {s}' for s, n in states.items())})"]
    best = best_trial(study)
    if best is None:
        return [*lines, "no complete trial yet"]
    lines.append(f"best trial #{best.number}: mean evaluation return {best.value:.2f}")
    lines += [f"  {name}: {value}" for name, value in best.params.items()]
    return lines


def write_best_entry(study: optuna.Study, settings: TuningSettings, path: pathlib.Path) -> bool:
    """
    Write the best trial's entry as a one-entry RL-Zoo YAML file with comments saying how it was found.

    :return: whether there was a complete trial to write
    """
    best = best_trial(study)
    if best is None:
        return False
    origin = provenance()
    states = Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False) if trial.state.is_finished())
    header = [
        f"{OUTPUT_MARKER} for study {study.study_name!r}",
        f"# command: {origin['command']}",
        f"# budget: trials of {settings.n_timesteps} steps ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}), "
        f"{settings.n_evaluations} evaluations "
        f"of {settings.n_eval_episodes} episodes each; sampler {settings.sampler}, pruner {settings.pruner}",
        f"# best: trial #{best.number}, last evaluation mean return {best.value:.2f} (seed {settings.seed + best.number})",
        f"# git commit {origin['git commit']}, {origin['date']}, {origin['machine']}",
    ]
    entry: dict[str, Any] = best.user_attrs[ENTRY_ATTR]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(header) + "\n" + yaml.safe_dump({settings.env_id: entry}, sort_keys=False, width=1000))
    return True


def write_trials_csv(study: optuna.Study, path: pathlib.Path) -> None:
    """One row per trial: number, state, value, duration, failure reason and every raw parameter."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for trial in trials for name in trial.params})
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["number", "state", "value", "seconds", FAILURE_ATTR, *names])
        for trial in trials:
            seconds = trial.duration.total_seconds() if trial.duration is not None else ""
            row = [trial.number, trial.state.name, "" if trial.value is None else trial.value, seconds]
            writer.writerow([*row, trial.user_attrs.get(FAILURE_ATTR, ""), *(trial.params.get(name, "") for name in names)])


def write_plots(study: optuna.Study, directory: pathlib.Path, prefix: str) -> list[str]:
    """
    Optuna's optimization history, parameter importances and parallel coordinates as HTML files.

    :return: one line per plot: its path, or why it was not written
    """
    import optuna.visualization as visualization

    if not visualization.is_available():
        return ["plots not written: plotly is not installed (pip install 'sb3-ddpg-ext[tune]')"]
    lines = []
    for name, function in PLOTS.items():
        path = directory / f"{prefix}_{name}.html"
        try:
            getattr(visualization, function)(study).write_html(str(path), include_plotlyjs="cdn")
            lines.append(f"plot: {path}")
        except (ValueError, RuntimeError) as error:  # e.g. importances need two complete trials
            lines.append(f"plot {name} not written: {error}")
    return lines


def write_reports(study: optuna.Study, settings: TuningSettings) -> list[str]:
    """Write the best entry, the trials CSV and the plots beside ``settings.output_path``; say what was written."""
    output = settings.output_path
    lines = summary(study)
    if write_best_entry(study, settings, output):
        lines.append(f"best entry: {output}")
    else:
        lines.append(f"best entry not written to {output}: no complete trial")
    trials_csv = output.with_name(output.stem + "_trials.csv")
    write_trials_csv(study, trials_csv)
    lines.append(f"trials: {trials_csv}")
    return [*lines, *write_plots(study, output.parent, output.stem)]


def tune_and_report(settings: TuningSettings) -> tuple[optuna.Study, list[str]]:
    """
    Check that the output may be written, run the tuning, write the reports.

    :return: the study and the printable lines of :func:`write_reports`
    """
    check_output_is_ours(settings.output_path)
    study = tune(settings)
    return study, write_reports(study, settings)
