"""
Extract published per-seed returns at fixed step counts into ``sb3_ddpg_ext/experiments/published.csv``.

Sources (MuJoCo v4 tasks, each paper's own protocol; read from local clones, nothing is downloaded):

- SimbaV2 (Lee et al. 2025, github.com/dojeon-ai/SimbaV2, Apache-2.0): ``results/baseline/{sac,crossq,
  simbaV2_utd2}.csv``, columns ``exp_name, env_name, seed, metric, env_step, value``.
- MR.Q (Fujimoto et al. 2025, github.com/facebookresearch/MRQ, CC BY-NC 4.0): ``results/gym_results.txt``, one
  block per env (``Env: Gym-Hopper-v4``), a row per timestep with one column per seed.

For each (algorithm, task, seed) the evaluation at the step nearest to each target step is kept, with the step
it was made at (SAC's evaluations are every 16,666 steps: 49,998 and 99,996 stand for 50k and 100k)::

    python benchmarks/extract_references.py --simbav2 PATH/SimbaV2 --mrq PATH/MRQ
"""

import argparse
import csv
import pathlib
import subprocess
from collections import defaultdict

TASKS = ("HalfCheetah-v4", "Hopper-v4", "Walker2d-v4", "Ant-v4")
STEPS = (50_000, 100_000)
# An evaluation counts for a target step only this close to it (a fraction of the step).
TOLERANCE = 0.05
# The baselines of SimbaV2's results that hold the Gym MuJoCo tasks (its SimBa file has only DMC and HumanoidBench).
SIMBAV2_FILES = {"sac": "SAC", "crossq": "CrossQ", "simbaV2_utd2": "SimbaV2 (UTD 2)"}
# Read by the benchmark report (sb3_ddpg_ext.experiments.references).
OUTPUT = pathlib.Path(__file__).resolve().parent.parent / "sb3_ddpg_ext" / "experiments" / "published.csv"


def nearest(points: dict[int, float], target: int) -> tuple[int, float] | None:
    """The (step, return) of the evaluation nearest to ``target``, if within the tolerance."""
    if not points:
        return None
    step = min(points, key=lambda candidate: abs(candidate - target))
    return (step, points[step]) if abs(step - target) <= TOLERANCE * target else None


def simbav2_rows(root: pathlib.Path, commit: str) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, label in SIMBAV2_FILES.items():
        curves: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        with (root / "results" / "baseline" / f"{name}.csv").open() as file:
            for row in csv.DictReader(file):
                if row["env_name"] in TASKS and row["metric"] == "avg_return":
                    curves[(row["env_name"], row["seed"])][int(float(row["env_step"]))] = float(row["value"])
        source = f"dojeon-ai/SimbaV2@{commit[:7]}:results/baseline/{name}.csv"
        rows += _rows(curves, label, source)
    return rows


def mrq_rows(root: pathlib.Path, commit: str) -> list[list[object]]:
    curves: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    env = None
    for line in (root / "results" / "gym_results.txt").read_text().splitlines():
        fields = line.split()
        if line.startswith("Env:"):
            env = line.split("Gym-", 1)[-1].strip()
        elif env in TASKS and fields and fields[0].isdigit():
            for seed, value in enumerate(fields[1:]):
                curves[(env, str(seed))][int(fields[0])] = float(value)
    return _rows(curves, "MR.Q", f"facebookresearch/MRQ@{commit[:7]}:results/gym_results.txt")


def _rows(curves: dict[tuple[str, str], dict[int, float]], label: str, source: str) -> list[list[object]]:
    rows: list[list[object]] = []
    for (env, seed), points in sorted(curves.items()):
        for target in STEPS:
            found = nearest(points, target)
            if found is not None:
                rows.append([label, env, seed, target, found[0], round(found[1], 2), source])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--simbav2", type=pathlib.Path, required=True, help="a clone of dojeon-ai/SimbaV2")
    parser.add_argument("--mrq", type=pathlib.Path, required=True, help="a clone of facebookresearch/MRQ")
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args()
    commit = lambda root: subprocess.run(  # noqa: E731
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    rows = simbav2_rows(args.simbav2, commit(args.simbav2)) + mrq_rows(args.mrq, commit(args.mrq))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["algorithm", "env_id", "seed", "target_step", "step", "return", "source"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.output}")


if __name__ == "__main__":
    main()
