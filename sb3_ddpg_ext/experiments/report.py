"""
Benchmark report: per-task tables, an aggregate table of normalised scores, and learning-curve plots, from
the per-run CSVs of :mod:`~sb3_ddpg_ext.experiments.benchmark`.

Statistics follow Agarwal et al. 2021 ("Deep RL at the edge of the statistical precipice"): with a handful
of seeds, the interquartile mean (IQM, the mean of the middle 50% of runs) with a 95% percentile-bootstrap
confidence interval over seeds says more than a mean ± std. Bootstrap draws are seeded, so a report of the
same runs is the same report.
"""

import csv
import os
import pathlib
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np

from sb3_ddpg_ext.experiments.references import reference_table
from sb3_ddpg_ext.experiments.tasks import TASKS, Task

N_RESAMPLES = 2_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Run:
    """
    One run's evaluations.

    :param timesteps: environment steps at each evaluation
    :param seconds: training wall-clock at each evaluation (evaluations excluded)
    :param returns: mean evaluation return at each evaluation
    """

    timesteps: np.ndarray
    seconds: np.ndarray
    returns: np.ndarray

    @property
    def final_return(self) -> float:
        return float(self.returns[-1])

    @property
    def curve_mean(self) -> float:
        """Mean return over the evaluations: the area under the learning curve, per evaluation (sample efficiency)."""
        return float(self.returns.mean())

    def first_reaching(self, threshold: float) -> int | None:
        """Index of the first evaluation at or above ``threshold`` (``None``: never)."""
        reached = np.flatnonzero(self.returns >= threshold)
        return int(reached[0]) if reached.size else None


def read_run(path: pathlib.Path) -> Run:
    with path.open() as file:
        rows = list(csv.DictReader(file))
    column = lambda name: np.array([float(row[name]) for row in rows])  # noqa: E731
    return Run(column("timesteps"), column("seconds"), column("mean_return"))


def read_runs(
    root: pathlib.Path, envs: Collection[str] | None = None, algorithms: Collection[str] | None = None
) -> dict[str, dict[str, list[Run]]]:
    """
    The finished runs under ``root`` (``<env>/<algorithm>/seed<S>.csv``), as env -> algorithm -> runs.

    :param root: folder of the per-run CSVs
    :param envs: only these envs (``None``: all)
    :param algorithms: only these algorithms (``None``: all)
    """
    runs: dict[str, dict[str, list[Run]]] = {}
    for path in sorted(root.glob("*/*/seed*.csv")):
        if (envs is not None and path.parent.parent.name not in envs) or (
            algorithms is not None and path.parent.name not in algorithms
        ):
            continue
        runs.setdefault(path.parent.parent.name, {}).setdefault(path.parent.name, []).append(read_run(path))
    return runs


def iqm(values: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis: the mean after dropping the lowest and highest 25% (floor)."""
    values = np.sort(values, axis=-1)
    cut = values.shape[-1] // 4
    return values[..., cut : values.shape[-1] - cut].mean(axis=-1)


def bootstrap_ci(
    values: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray] = iqm, seed: int = 0
) -> tuple[float, float]:
    """
    95% percentile-bootstrap interval of ``statistic`` over the values (resampled with replacement).

    :param values: one score per run
    :param statistic: vectorised along the last axis (e.g. :func:`iqm`, ``np.mean``)
    """
    rng = np.random.default_rng(seed)
    resamples = values[rng.integers(0, len(values), size=(N_RESAMPLES, len(values)))]
    low, high = np.quantile(statistic(resamples), [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def normalised(score: np.ndarray, task: Task) -> np.ndarray:
    """``(score - random) / (threshold - random)``: 0 is random actions, 1 is the task's threshold."""
    assert task.threshold is not None and task.random_score is not None
    return (score - task.random_score) / (task.threshold - task.random_score)


# Steps at which each task table reports the return (where the runs reach them), as the published figures do.
MILESTONES = (50_000, 100_000)


def task_table(env_id: str, runs_by_algorithm: dict[str, list[Run]]) -> list[str]:
    """
    Markdown table of one task: final return (mean ± std, IQM with CI), the return at :data:`MILESTONES`, steps and
    wall-clock to the threshold, training seconds in all and per 1,000 steps.
    """
    threshold = TASKS.get(env_id, Task()).threshold
    reach = f"to reach {threshold:g}" if threshold is not None else "to threshold (none set)"
    milestones = [
        step for step in MILESTONES if any(run.timesteps[-1] >= step for runs in runs_by_algorithm.values() for run in runs)
    ]
    at = "".join(f" return at {step // 1000}k |" for step in milestones)
    lines = [
        f"| algorithm | seeds | steps | final return, mean ± std | final return, IQM [95% CI] |{at} steps {reach} "
        f"| training seconds {reach} | training seconds | training seconds per 1k steps |",
        "|---|---|---|---|---|" + "---|" * len(milestones) + "---|---|---|---|",
    ]
    for algorithm, runs in sorted(runs_by_algorithm.items()):
        finals = np.array([run.final_return for run in runs])
        low, high = bootstrap_ci(finals)
        steps, seconds = _time_to_threshold(runs, threshold)
        total_seconds = np.mean([run.seconds[-1] for run in runs])
        per_thousand = np.mean([1000 * run.seconds[-1] / run.timesteps[-1] for run in runs])
        spread = finals.std(ddof=1) if len(finals) > 1 else 0.0
        cells = "".join(f" {_return_at(runs, step)} |" for step in milestones)
        lines.append(
            f"| {algorithm} | {len(runs)} | {int(runs[0].timesteps[-1])} | {finals.mean():.1f} ± {spread:.1f} "
            f"| {iqm(finals):.1f} [{low:.1f}, {high:.1f}] |{cells} {steps} | {seconds} | {total_seconds:.0f} "
            f"| {per_thousand:.1f} |"
        )
    return lines


def _return_at(runs: list[Run], step: int) -> str:
    """Mean ± std over the runs of the return evaluated at ``step`` (``-`` where no run was evaluated there)."""
    values = np.array([run.returns[run.timesteps == step][0] for run in runs if step in run.timesteps])
    if not len(values):
        return "-"
    spread = f" ± {values.std(ddof=1):.0f}" if len(values) > 1 else ""
    return f"{values.mean():.0f}{spread}" + (f" ({len(values)}/{len(runs)})" if len(values) < len(runs) else "")


def _time_to_threshold(runs: list[Run], threshold: float | None) -> tuple[str, str]:
    if threshold is None:
        return "n/a", "n/a"
    indices = [(run, run.first_reaching(threshold)) for run in runs]
    reached = [(run.timesteps[index], run.seconds[index]) for run, index in indices if index is not None]
    if not reached:
        return f"- (0/{len(runs)})", "-"
    steps, seconds = np.mean(reached, axis=0)
    return f"{steps:.0f} ({len(reached)}/{len(runs)})", f"{seconds:.0f}"


# The SB3 agent a user would otherwise pick on a task: RL Zoo's tuned one where RL Zoo has the task, else SB3's
# defaults. The aggregate has a row for each, so that tasks with and without RL Zoo entries pool together.
SB3_AS_USERS_RUN_IT: dict[str, tuple[str, ...]] = {
    "sb3-ddpg (RL Zoo where tuned)": ("sb3-ddpg-zoo", "sb3-ddpg"),
    "sb3-td3 (RL Zoo where tuned)": ("sb3-td3-zoo", "sb3-td3"),
}

LEGEND = [
    "Algorithms: `sb3-ddpg` / `sb3-td3` are SB3's DDPG / TD3 with SB3's defaults (400-300 networks) and the task's",
    "random steps and Gaussian action noise (`sb3_ddpg_ext/experiments/tasks.py`); `sb3-ddpg-zoo` / `sb3-td3-zoo` are",
    "the same agents with RL Zoo's tuned hyperparameters for the task (`sb3_ddpg_ext/experiments/rl_zoo.yml`);",
    "`sb3-sac`, `contrib-tqc`, `contrib-crossq` (and their `-zoo` rows) are SB3's SAC and sb3-contrib's TQC and",
    "CrossQ the same way, exploring with their own stochastic policies; `contrib-crossq-zoo-512` is RL Zoo's CrossQ",
    "entry with 512-512 critics instead of its 2048-2048, which these CPUs cannot afford",
    "(`NARROWED_ZOO_BASELINES` in `sb3_ddpg_ext/experiments/benchmark.py`);",
    "`ddpg-ext-<name>` is DDPGExt with a preset (`sb3_ddpg_ext/presets.py`) or a variant one switch away from it",
    "(`VARIANTS` in `sb3_ddpg_ext/experiments/benchmark.py`). Returns: deterministic policy, separate evaluation",
    "environment, mean over the evaluation episodes; training seconds exclude evaluations.",
]


def aggregate_table(runs: dict[str, dict[str, list[Run]]]) -> list[str]:
    """
    Markdown table across the tasks that have a threshold and a random score: IQM of the normalised final
    scores and of the normalised learning-curve means (how fast it learns) of all runs of an algorithm, and the
    mean of the final scores, each with a bootstrap CI that resamples seeds within each task. Besides the
    algorithms run on every task, one row per entry of :data:`SB3_AS_USERS_RUN_IT`.
    """
    tasks = [env_id for env_id in sorted(runs) if _has_reference(env_id)]
    by_algorithm = _runs_on_every_task({env_id: runs[env_id] for env_id in tasks})
    left_out = sorted({algorithm for env_id in tasks for algorithm in runs[env_id]} - set(by_algorithm))
    lines = [
        f"Tasks: {', '.join(tasks) or 'none'}. Normalised score: 0 = uniformly random actions, 1 = the task's threshold. "
        "Curve: the mean over all evaluations of a run (area under its learning curve), normalised the same way.",
        "Rows `(RL Zoo where tuned)`: the `-zoo` runs on tasks RL Zoo has tuned, SB3's defaults on the others.",
        f"Left out (not run on all of these tasks): {', '.join(left_out) or 'none'}.",
        "",
        "| algorithm | tasks | runs | final score, IQM [95% CI] | final score, mean [95% CI] | curve, IQM [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    mean = lambda values: values.mean(axis=-1)  # noqa: E731
    for algorithm, runs_by_task in by_algorithm.items():
        finals = _normalised_scores(runs_by_task, lambda run: run.final_return)
        curves = _normalised_scores(runs_by_task, lambda run: run.curve_mean)
        cells = [_with_ci(finals, iqm), _with_ci(finals, mean), _with_ci(curves, iqm)]
        lines.append(f"| {algorithm} | {len(tasks)} | {sum(map(len, finals))} | {' | '.join(cells)} |")
    return lines


def _runs_on_every_task(runs: dict[str, dict[str, list[Run]]]) -> dict[str, dict[str, list[Run]]]:
    """Algorithm -> task -> runs, for the algorithms (and SB3 rows) that have runs on every task of ``runs``."""
    if not runs:
        return {}
    # A partial average would not compare: only algorithms run on every task.
    common = set.intersection(*(set(runs_by_algorithm) for runs_by_algorithm in runs.values()))
    by_algorithm = {algorithm: {env_id: runs[env_id][algorithm] for env_id in runs} for algorithm in sorted(common)}
    for row, choices in SB3_AS_USERS_RUN_IT.items():
        picked = {env_id: next((name for name in choices if name in runs[env_id]), None) for env_id in runs}
        if all(picked.values()):
            by_algorithm[row] = {env_id: runs[env_id][name] for env_id, name in picked.items() if name is not None}
    return by_algorithm


def _normalised_scores(runs_by_task: dict[str, list[Run]], score: Callable[[Run], float]) -> list[np.ndarray]:
    return [normalised(np.array([score(run) for run in runs]), TASKS[env_id]) for env_id, runs in runs_by_task.items()]


def _with_ci(scores: list[np.ndarray], statistic: Callable[[np.ndarray], np.ndarray]) -> str:
    low, high = _stratified_ci(scores, statistic)
    return f"{float(statistic(np.concatenate(scores))):.2f} [{low:.2f}, {high:.2f}]"


def _has_reference(env_id: str) -> bool:
    task = TASKS.get(env_id, Task())
    return task.threshold is not None and task.random_score is not None


def _stratified_ci(scores: list[np.ndarray], statistic: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
    """Bootstrap CI of ``statistic`` over all runs, resampling runs within each task (rliable's stratified bootstrap)."""
    rng = np.random.default_rng(0)
    resamples = np.concatenate(
        [task_scores[rng.integers(0, len(task_scores), size=(N_RESAMPLES, len(task_scores)))] for task_scores in scores],
        axis=1,
    )
    low, high = np.quantile(statistic(resamples), [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return float(low), float(high)


def plot_learning_curves(
    env_id: str, runs_by_algorithm: dict[str, list[Run]], path: pathlib.Path, wall_clock: bool = False
) -> None:
    """
    PNG of the evaluation return against environment steps (or, with ``wall_clock``, against training seconds: the
    mean over seeds of the seconds at each evaluation): the mean over seeds per algorithm and a 95% bootstrap CI
    band of that mean. Runs of one algorithm must share their evaluation steps.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    # Matplotlib's default cycle repeats its ten colours from the eleventh line on: more lines take tab20's, and
    # past twenty a dashed line.
    palette = plt.get_cmap("tab10" if len(runs_by_algorithm) <= 10 else "tab20").colors  # type: ignore[attr-defined]
    for index, (algorithm, runs) in enumerate(sorted(runs_by_algorithm.items())):
        length = min(len(run.returns) for run in runs)
        returns = np.stack([run.returns[:length] for run in runs])
        steps = np.mean([run.seconds[:length] for run in runs], axis=0) if wall_clock else runs[0].timesteps[:length]
        rng = np.random.default_rng(0)
        means = returns[rng.integers(0, len(runs), size=(N_RESAMPLES, len(runs)))].mean(axis=1)
        low, high = np.quantile(means, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2], axis=0)
        color, style = palette[index % len(palette)], "-" if index < len(palette) else "--"
        label = f"{algorithm} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        axes.plot(steps, returns.mean(axis=0), color=color, linestyle=style, label=label)
        axes.fill_between(steps, low, high, color=color, alpha=0.2)
    threshold = TASKS.get(env_id, Task()).threshold
    if threshold is not None:
        axes.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axes.set_title(f"{env_id}: evaluation return (mean over seeds, 95% bootstrap CI)")
    axes.set_xlabel("training seconds (evaluations excluded)" if wall_clock else "environment steps")
    axes.set_ylabel("mean evaluation return (deterministic policy)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def report(
    root: pathlib.Path,
    plots: pathlib.Path | None = None,
    markdown_dir: pathlib.Path | None = None,
    envs: Collection[str] | None = None,
    algorithms: Collection[str] | None = None,
) -> list[str]:
    """
    The whole report as markdown lines: one table (and, with ``plots``, one PNG) per task, then the aggregate.

    :param root: folder of the per-run CSVs
    :param plots: folder for the PNG learning curves (``None``: no plots)
    :param markdown_dir: where the markdown will be written, for relative links to the plots (default: ``plots``)
    :param envs: report only these envs (``None``: every env under ``root``)
    :param algorithms: report only these algorithms (``None``: all)
    """
    runs = read_runs(root, envs, algorithms)
    lines = [f"Runs under `{root}`: one CSV (evaluations) and one JSON (settings, provenance) per run.", "", *LEGEND, ""]
    for env_id, runs_by_algorithm in runs.items():
        lines += [f"## {env_id}", "", *task_table(env_id, runs_by_algorithm), ""]
        published = reference_table(env_id)
        lines += [*published, ""] if published else []
        if plots is not None:
            for suffix, wall_clock in (("", False), ("-wallclock", True)):
                path = plots / f"{env_id}{suffix}.png"
                plot_learning_curves(env_id, runs_by_algorithm, path, wall_clock)
                link = os.path.relpath(path, markdown_dir if markdown_dir is not None else plots)
                lines += [f"![{env_id} learning curves{' by training time' if wall_clock else ''}]({link})", ""]
    return [*lines, "## Aggregate", "", *aggregate_table(runs)]
