"""
Published returns beside ours: per-seed evaluations of other papers' code at 50k and 100k steps on the MuJoCo
locomotion tasks, extracted by ``benchmarks/extract_references.py`` into ``published.csv`` with their source.

They are the v4 tasks (ours are v5: same dynamics, different defaults in some tasks) and each paper's own
protocol (evaluation episodes, random steps, network sizes), so they place our numbers, they do not rank them.
"""

import csv
import pathlib
from collections import defaultdict

import numpy as np

PUBLISHED = pathlib.Path(__file__).with_name("published.csv")


def read_references(path: pathlib.Path = PUBLISHED) -> dict[str, dict[str, dict[int, list[float]]]]:
    """env id (v4) -> algorithm -> target step -> per-seed returns."""
    references: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(dict))
    with path.open() as file:
        for row in csv.DictReader(file):
            steps = references[row["env_id"]][row["algorithm"]]
            steps.setdefault(int(row["target_step"]), []).append(float(row["return"]))
    return references


def sources(path: pathlib.Path = PUBLISHED) -> dict[str, str]:
    """algorithm -> the repository file its numbers come from."""
    with path.open() as file:
        return {row["algorithm"]: row["source"] for row in csv.DictReader(file)}


def published_counterpart(env_id: str) -> str:
    """The v4 task published results use for one of ours (``Hopper-v5`` -> ``Hopper-v4``)."""
    name, _, _ = env_id.rpartition("-v")
    return f"{name}-v4"


def reference_table(env_id: str, steps: tuple[int, ...] = (50_000, 100_000)) -> list[str]:
    """
    Markdown table of the published returns for our task ``env_id`` (mean ± std over seeds at each step), or no
    lines where none are published.
    """
    published = read_references().get(published_counterpart(env_id))
    if not published:
        return []
    origin = sources()
    header = " | ".join(f"return at {step // 1000}k" for step in steps)
    lines = [
        f"Published, {published_counterpart(env_id)} (other code and protocols; they place ours, they do not rank it):",
        "",
        f"| algorithm | seeds | {header} | source |",
        "|---|---|" + "---|" * len(steps) + "---|",
    ]
    for algorithm, by_step in sorted(published.items()):
        cells = []
        for step in steps:
            values = np.array(by_step.get(step, []))
            cells.append(f"{values.mean():.0f} ± {values.std(ddof=1):.0f}" if len(values) > 1 else "-")
        seeds = max(len(values) for values in by_step.values())
        lines.append(f"| {algorithm} | {seeds} | {' | '.join(cells)} | `{origin[algorithm]}` |")
    return lines
