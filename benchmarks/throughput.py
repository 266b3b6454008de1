"""
Training throughput, side by side in one run: DDPGExt against SB3's DDPG and TD3 on identical settings.

Each pair is built with the same hyperparameters (SB3's defaults unless the row says otherwise),
filled to ``learning_starts`` without timing, then ``learn()`` is timed over the same number of
training steps. Runs of all rows and both implementations are interleaved, repeated, and the median
steps/s is reported with the ratio DDPGExt / SB3.

    python benchmarks/throughput.py --output benchmarks/results/throughput.md
"""

import argparse
import pathlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch as th
from stable_baselines3 import DDPG, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_ddpg_ext import DDPGExt, PrioritizedReplayBuffer
from sb3_ddpg_ext.experiments.provenance import provenance_markdown, publish

TD3_SETTINGS = dict(policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5)


@dataclass
class Row:
    """One line of the table: a baseline and a contender built with the same settings."""

    name: str
    env_id: str
    baseline: Callable[..., BaseAlgorithm]
    contender: Callable[..., BaseAlgorithm]
    kwargs: dict[str, Any] = field(default_factory=dict)
    baseline_name: str = "SB3 DDPG"


def rows(env_ids: list[str]) -> list[Row]:
    table = []
    for env_id in env_ids:
        table += [
            Row("DDPG defaults (400-300)", env_id, DDPG, DDPGExt),
            Row("DDPG, 256-256", env_id, DDPG, DDPGExt, dict(policy_kwargs=dict(net_arch=[256, 256]))),
            Row(
                "TD3 defaults (400-300, 2 critics, delay 2, smoothing)",
                env_id,
                TD3,
                lambda *args, policy_kwargs=None, **kwargs: DDPGExt(
                    *args, policy_kwargs={"n_critics": 2, **(policy_kwargs or {})}, **TD3_SETTINGS, **kwargs
                ),
                baseline_name="SB3 TD3",
            ),
        ]
    table.append(
        Row(
            "PER + n_steps=3 (400-300)",
            env_ids[0],
            DDPGExt,
            lambda *args, **kwargs: DDPGExt(*args, replay_buffer_class=PrioritizedReplayBuffer, n_steps=3, **kwargs),
            baseline_name="DDPGExt uniform",
        )
    )
    return table


def steps_per_second(make: Callable[..., BaseAlgorithm], env_id: str, kwargs: dict[str, Any], seed: int, steps: int) -> float:
    learning_starts = 300
    model = make("MlpPolicy", env_id, learning_starts=learning_starts, seed=seed, **kwargs)
    model.learn(learning_starts)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "HalfCheetah-v5"])
    parser.add_argument("--steps", type=int, default=1_000, help="timed learn() steps per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=pathlib.Path, help="also write the report to this markdown file")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    # Recorded before the runs: the checkout may change while they go on.
    origin = provenance_markdown()

    table = rows(args.envs)
    speeds: dict[tuple[int, str], list[float]] = {}
    for repeat in range(args.repeats):
        for index, row in enumerate(table):
            for side, make in (("baseline", row.baseline), ("contender", row.contender)):
                speed = steps_per_second(make, row.env_id, row.kwargs, seed=repeat, steps=args.steps)
                speeds.setdefault((index, side), []).append(speed)
                print(f"repeat {repeat} | {row.env_id} | {row.name} | {side}: {speed:.1f} steps/s", flush=True)

    report = [
        "# Training throughput",
        "",
        f"`learn()` steps/s over {args.steps} training steps after 300 untimed warm-up steps (batch 256, one "
        f"gradient step per env step, {args.threads} torch thread(s)); median of {args.repeats} interleaved repeats.",
        "",
        "| env | configuration | baseline | baseline steps/s | DDPGExt steps/s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for index, row in enumerate(table):
        baseline = statistics.median(speeds[(index, "baseline")])
        contender = statistics.median(speeds[(index, "contender")])
        ratio = contender / baseline
        report.append(f"| {row.env_id} | {row.name} | {row.baseline_name} | {baseline:.1f} | {contender:.1f} | {ratio:.2f} |")
    publish(report, origin, args.output)


if __name__ == "__main__":
    main()
