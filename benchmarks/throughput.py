"""
Training throughput, side by side in one run: DDPGExt against SB3's DDPG and TD3 on identical settings.

Each pair is built with the same hyperparameters (SB3's defaults unless the row says otherwise),
filled to ``learning_starts`` without timing, then ``learn()`` is timed over the same number of
training steps, in short calls that alternate between the two (a shared VM's speed drifts over seconds).
Repeated with new seeds; the median steps/s and the median ratio DDPGExt / baseline are reported.

    python benchmarks/throughput.py --repeats 5 --output benchmarks/results/throughput.md
"""

import argparse
import pathlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch as th
from sb3_contrib import CrossQ
from stable_baselines3 import DDPG, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import NStepReplayBuffer

from sb3_ddpg_ext import DDPGExt, PrioritizedReplayBuffer
from sb3_ddpg_ext.common import renorm_kernels, torch_kernels
from sb3_ddpg_ext.experiments.provenance import provenance_markdown, publish
from sb3_ddpg_ext.presets import preset

DDPG_DEFAULTS = "DDPG defaults (400-300)"
TARGET_RATIO = 1.5  # DDPGExt / SB3 DDPG on the DDPG defaults (and >= 1.0 on every same-configuration row)
# What a row compares, one section of the report each.
SAME = "Same configuration on both sides"
NEAREST = "DDPGExt's extensions beside the nearest SB3 / sb3-contrib configuration (not the same work per step)"
INTERNAL = "Inside DDPGExt: what an extension costs, what the fast backend and its private kernels gain"
TD3_SETTINGS = dict(policy_delay=2, target_policy_noise=0.2, target_noise_clip=0.5)
LEARNING_STARTS = 300


@dataclass
class Row:
    """One line of the table: a baseline and a contender built with the same settings."""

    name: str
    env_id: str
    baseline: Callable[..., BaseAlgorithm]
    contender: Callable[..., BaseAlgorithm]
    kwargs: dict[str, Any] = field(default_factory=dict)
    baseline_name: str = "SB3 DDPG"
    kind: str = SAME
    steps: int | None = None  # timed steps per side and repeat, where the script's default would take too long
    ceiling: str | None = None  # the DDPGExt preset whose floor (collection + matrix products) the report gives

    def timed_steps(self, default: int) -> int:
        """The steps this row times per side and repeat: the script's ``--steps``, or fewer where the row says."""
        return default if self.steps is None else min(self.steps, default)


def switched_off(module: ModuleType, flag: str) -> type[DDPGExt]:
    """DDPGExt with the switch ``module.flag`` off while it learns (its side-by-side partner keeps the default)."""

    class Switched(DDPGExt):
        def learn(self, *args: Any, **kwargs: Any) -> "Switched":
            previous = getattr(module, flag)
            setattr(module, flag, False)
            try:
                return super().learn(*args, **kwargs)
            finally:
                setattr(module, flag, previous)

    Switched.__name__ = Switched.__qualname__ = f"DDPGExt_without_{flag}"
    return Switched


# The fast backend with public torch operations only; BatchRenorm's training passes as torch kernels, not compiled.
PublicKernelsDDPGExt = switched_off(torch_kernels, "use_private_kernels")
TorchRenormDDPGExt = switched_off(renorm_kernels, "use_compiled")


def with_settings(algorithm: Callable[..., BaseAlgorithm], **settings: Any) -> Callable[..., BaseAlgorithm]:
    """``algorithm`` with ``settings`` added to the row's arguments (``policy_kwargs`` merged)."""

    def make(*args: Any, policy_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> BaseAlgorithm:
        merged = {**settings, **kwargs}
        merged["policy_kwargs"] = {**settings.get("policy_kwargs", {}), **(policy_kwargs or {})}
        return algorithm(*args, **merged)

    return make


def with_sb3_n_step(algorithm: Callable[..., BaseAlgorithm], n_steps: int, **settings: Any) -> Callable[..., BaseAlgorithm]:
    """An SB3 algorithm with SB3's own n-step buffer (its nearest to DDPGExt's n-step extensions)."""
    buffer = dict(replay_buffer_class=NStepReplayBuffer, replay_buffer_kwargs=dict(n_steps=n_steps, gamma=0.99))
    return with_settings(algorithm, **buffer, **settings)


def per_step_preset(name: str) -> dict[str, Any]:
    """A preset with one gradient step per env step, as every row runs (TD7's policy checkpoints train per episode)."""
    return preset(name, policy_checkpoints=False)


def rows(env_ids: list[str]) -> list[Row]:
    table = []
    for env_id in env_ids:
        table += [
            Row(DDPG_DEFAULTS, env_id, DDPG, DDPGExt),
            Row("DDPG, 256-256", env_id, DDPG, DDPGExt, dict(policy_kwargs=dict(net_arch=[256, 256]))),
            Row(
                "TD3 defaults (400-300, 2 critics, delay 2, smoothing)",
                env_id,
                TD3,
                with_settings(DDPGExt, policy_kwargs={"n_critics": 2}, **TD3_SETTINGS),
                baseline_name="SB3 TD3",
            ),
        ]
    pendulum = env_ids[0]
    prioritized_n_step = with_settings(DDPGExt, replay_buffer_class=PrioritizedReplayBuffer, n_steps=3)
    table += [
        # The nearest SB3 can do: 3-step returns without prioritization.
        Row(
            "PER + n_steps=3 (400-300)",
            pendulum,
            with_sb3_n_step(DDPG, 3),
            prioritized_n_step,
            baseline_name="SB3 DDPG, 3-step",
            kind=NEAREST,
        ),
        # The presets with extensions SB3 lacks, beside SB3's nearest configuration (the ratio includes the
        # extensions' own cost: 51 atoms and a projection; BatchRenorm and a joint forward pass).
        Row(
            "`d4pg` preset (categorical critic, 51 atoms, PER, 5-step; 400-300)",
            pendulum,
            with_sb3_n_step(DDPG, 5),
            with_settings(DDPGExt, **preset("d4pg")),
            baseline_name="SB3 DDPG, 5-step",
            kind=NEAREST,
        ),
        Row(
            "`ext` preset (CrossQ critics: BatchRenorm, no targets; 2 critics, delay 3, 3-step; 256-256)",
            pendulum,
            with_sb3_n_step(TD3, 3, policy_delay=3, policy_kwargs=dict(net_arch=[256, 256])),
            with_settings(DDPGExt, **preset("ext")),
            baseline_name="SB3 TD3, 256-256, delay 3, 3-step",
            kind=NEAREST,
            ceiling="ext",
        ),
        # The same family in the SB3 ecosystem: sb3-contrib's CrossQ (BatchRenorm critics, no targets, a joint
        # forward pass of (s, a) and (s', a')) with the preset's sizes, delay, critics and n-step returns. Its actor
        # is SAC's (a Gaussian head and an entropy coefficient), DDPGExt's deterministic: nearly the same work.
        Row(
            "`ext` preset (as above)",
            pendulum,
            with_settings(CrossQ, n_steps=3, policy_delay=3, policy_kwargs=dict(net_arch=[256, 256])),
            with_settings(DDPGExt, **preset("ext")),
            baseline_name="sb3-contrib CrossQ, 256-256, delay 3, 3-step",
            kind=NEAREST,
        ),
        # Not a comparison with SB3: what prioritization and n-step returns cost inside DDPGExt.
        Row(
            "PER + n_steps=3 (400-300)",
            pendulum,
            DDPGExt,
            prioritized_n_step,
            baseline_name="DDPGExt uniform",
            kind=INTERNAL,
        ),
        # Not a comparison with SB3 either: what the fast backend (hand-derived gradients) gains over autograd.
        Row(
            DDPG_DEFAULTS,
            pendulum,
            with_settings(DDPGExt, lean_update=False),
            DDPGExt,
            baseline_name="DDPGExt, `lean_update=False`",
            kind=INTERNAL,
        ),
        Row(
            "`ext` preset (as above)",
            pendulum,
            with_settings(DDPGExt, **preset("ext"), lean_update=False),
            with_settings(DDPGExt, **preset("ext")),
            baseline_name="DDPGExt, `lean_update=False`",
            kind=INTERNAL,
        ),
    ]
    # What the private torch kernels of the fast backend earn over their public equivalents (common/torch_kernels.py).
    table += [
        Row(DDPG_DEFAULTS, env_id, PublicKernelsDDPGExt, DDPGExt, baseline_name="DDPGExt, public kernels only", kind=INTERNAL)
        for env_id in env_ids
    ]
    # What the fast backend gains for the normalised networks of TD7 (SALE: ELU, AvgL1Norm, embeddings) and SimBa
    # (running observation normalisation, LayerNorm residual blocks). SimBa's 512-wide critics train at a few steps/s.
    for env_id in env_ids:
        table += [
            Row(
                f"`{name}` preset ({description})",
                env_id,
                with_settings(DDPGExt, **per_step_preset(name), lean_update=False),
                with_settings(DDPGExt, **per_step_preset(name)),
                baseline_name="DDPGExt, `lean_update=False`",
                kind=INTERNAL,
                steps=steps,
                ceiling=name,
            )
            for name, description, steps in (
                ("td7", "SALE, LAP, ELU 256-256, targets every 250 updates; no policy checkpoints", 400),
                ("simba", "SimBa actor 1x128, critics 2x512, TD3's update", 100),
            )
        ]
    # What the compiled BatchRenorm passes earn over the torch ones (common/renorm_kernels.py).
    table.append(
        Row(
            "`ext` preset",
            pendulum,
            with_settings(TorchRenormDDPGExt, **preset("ext")),
            with_settings(DDPGExt, **preset("ext")),
            baseline_name="DDPGExt, BatchRenorm passes in torch (not compiled)",
            kind=INTERNAL,
        )
    )
    return table


def paired_steps_per_second(row: Row, seed: int, steps: int, chunks: int) -> tuple[float, float]:
    """
    ``learn()`` steps/s of the row's baseline and contender, built with the same seed and filled to
    ``learning_starts`` untimed, then timed in ``chunks`` alternating ``learn()`` calls each (the side that
    goes first swapped every chunk): the noise of a shared VM drifts over seconds, so both sides meet the same.
    """
    models = [
        make("MlpPolicy", row.env_id, learning_starts=LEARNING_STARTS, seed=seed, **row.kwargs)
        for make in (row.baseline, row.contender)
    ]
    for model in models:
        model.learn(LEARNING_STARTS)
    chunk = steps // chunks
    elapsed = [0.0, 0.0]
    for index in range(chunks):
        for side in (0, 1) if index % 2 == 0 else (1, 0):
            start = time.perf_counter()
            models[side].learn(chunk, reset_num_timesteps=False)
            elapsed[side] += time.perf_counter() - start
    return chunk * chunks / elapsed[0], chunk * chunks / elapsed[1]


MATRIX_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm")


def collection_seconds_per_step(env_id: str, seed: int, steps: int, **kwargs: Any) -> float:
    """
    Seconds per ``learn()`` step of DDPGExt (with ``kwargs``) and ``gradient_steps=0``: SB3's collection alone
    (policy forward, environment step, buffer add, callbacks), which DDPGExt inherits from SB3 as it is.
    """
    kwargs = {**kwargs, "gradient_steps": 0}
    model = DDPGExt("MlpPolicy", env_id, learning_starts=LEARNING_STARTS, seed=seed, **kwargs)
    model.learn(LEARNING_STARTS)
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return (time.perf_counter() - start) / steps


def matrix_product_seconds_per_update(env_id: str, seed: int, updates: int, **kwargs: Any) -> float:
    """Self CPU time of the matrix products (``mm``, ``addmm``, ``bmm``) in one update of DDPGExt (with ``kwargs``),
    profiled."""
    model = DDPGExt("MlpPolicy", env_id, learning_starts=LEARNING_STARTS, seed=seed, **kwargs)
    model.learn(LEARNING_STARTS + 10)
    with th.profiler.profile(activities=[th.profiler.ProfilerActivity.CPU]) as profile:
        model.train(gradient_steps=updates, batch_size=model.batch_size)
    self_microseconds = sum(event.self_cpu_time_total for event in profile.key_averages() if event.key in MATRIX_PRODUCTS)
    return self_microseconds / 1e6 / updates


def ceiling_rows(table: list[Row], speeds: dict[tuple[int, str], list[float]], steps: int) -> list[str]:
    """
    The fastest any exact implementation on SB3's collection could be, per env, for the DDPG defaults: SB3's
    collection plus the matrix products of one update (a lower bound: they run at this CPU's peak already, and
    SB3's update does them all and one more), against SB3 DDPG's measured time per step.
    """
    lines = [
        "| env | SB3 DDPG ms/step | collection ms/step | matrix products ms/update | floor ms/step "
        "| ceiling ratio | DDPGExt ms/step | DDPGExt ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for index, row in enumerate(table):
        if row.name != DDPG_DEFAULTS or row.baseline is not DDPG:
            continue
        env_id = row.env_id
        sb3, ours = (1e3 / statistics.median(speeds[(index, side)]) for side in ("baseline", "contender"))
        collection = 1e3 * statistics.median(collection_seconds_per_step(env_id, seed, steps) for seed in range(3))
        products = 1e3 * statistics.median(matrix_product_seconds_per_update(env_id, seed, 50) for seed in range(3))
        floor = collection + products
        lines.append(
            f"| {env_id} | {sb3:.2f} | {collection:.2f} | {products:.2f} | {floor:.2f} | {sb3 / floor:.2f} "
            f"| {ours:.2f} | {sb3 / ours:.2f} |"
        )
    return lines


def preset_ceiling_rows(table: list[Row], speeds: dict[tuple[int, str], list[float]], steps: int) -> list[str]:
    """
    The same floor for the rows of the normalised presets (``Row.ceiling``): the preset's collection plus the matrix
    products of one of its updates on the fast backend, against the row's baseline and DDPGExt's measured time per
    step. A ceiling below a target says that no exact implementation of these networks reaches it.
    """
    lines = [
        "| env | preset | baseline | baseline ms/step | collection ms/step | matrix products ms/update | floor ms/step "
        "| ceiling ratio | DDPGExt ms/step | share of matrix products | DDPGExt ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, row in enumerate(table):
        if row.ceiling is None:
            continue
        kwargs = per_step_preset(row.ceiling)
        baseline, ours = (1e3 / statistics.median(speeds[(index, side)]) for side in ("baseline", "contender"))
        row_steps = row.timed_steps(steps)
        updates = max(10, row_steps // 20)
        collection = 1e3 * statistics.median(
            collection_seconds_per_step(row.env_id, seed, row_steps, **kwargs) for seed in range(3)
        )
        products = 1e3 * statistics.median(
            matrix_product_seconds_per_update(row.env_id, seed, updates, **kwargs) for seed in range(3)
        )
        floor = collection + products
        lines.append(
            f"| {row.env_id} | `{row.ceiling}` | {row.baseline_name} | {baseline:.2f} | {collection:.2f} | {products:.2f} "
            f"| {floor:.2f} | {baseline / floor:.2f} | {ours:.2f} | {products / ours:.0%} | {baseline / ours:.2f} |"
        )
    return lines


def table_lines(
    table: list[Row], speeds: dict[tuple[int, str], list[float]], ratios: dict[int, list[float]], kind: str, steps: int
) -> list[str]:
    """The markdown table of the rows of one kind: medians of steps/s and of the per-repeat ratios, and every ratio."""
    lines = [
        "| env | configuration | baseline | baseline steps/s | DDPGExt steps/s | ratio | ratio per repeat |",
        "|---|---|---|---|---|---|---|",
    ]
    for index, row in enumerate(table):
        if row.kind != kind:
            continue
        baseline = statistics.median(speeds[(index, "baseline")])
        contender = statistics.median(speeds[(index, "contender")])
        each = " / ".join(f"{value:.2f}" for value in ratios[index])
        name = row.name if row.steps is None else f"{row.name}, {row.timed_steps(steps)} timed steps"
        lines.append(
            f"| {row.env_id} | {name} | {row.baseline_name} | {baseline:.1f} | {contender:.1f} | "
            f"{statistics.median(ratios[index]):.2f} | {each} |"
        )
    return lines


def target_lines(table: list[Row], ratios: dict[int, list[float]]) -> list[str]:
    """Whether the same-configuration rows meet the targets: >= 1.5x SB3 DDPG on its defaults, >= 1.0x everywhere."""
    medians = {index: statistics.median(ratios[index]) for index, row in enumerate(table) if row.kind == SAME}
    if not medians:  # a run of other rows only (--only)
        return ["No same-configuration row in this run."]
    defaults = {table[index].env_id: ratio for index, ratio in medians.items() if table[index].name == DDPG_DEFAULTS}
    slowest = min(medians.values())
    met = all(ratio >= TARGET_RATIO for ratio in defaults.values())
    listed = ", ".join(f"{env_id} {ratio:.2f}" for env_id, ratio in defaults.items())
    return [
        f"Target {TARGET_RATIO}x SB3 DDPG on the DDPG defaults (median ratio): {listed}: **{'met' if met else 'not met'}**.",
        f"No same-configuration row below 1.0: lowest median {slowest:.2f}: **{'met' if slowest >= 1.0 else 'not met'}**.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["Pendulum-v1", "HalfCheetah-v5"])
    parser.add_argument("--steps", type=int, default=1_000, help="timed learn() steps per run")
    parser.add_argument("--chunks", type=int, default=10, help="alternating learn() calls per side and run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=pathlib.Path, help="also write the report to this markdown file")
    parser.add_argument("--only", help="run only the rows whose name or baseline contains this text (e.g. ext)")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    # Recorded before the runs: the checkout may change while they go on.
    origin = provenance_markdown()

    table = [row for row in rows(args.envs) if args.only is None or args.only in f"{row.name} {row.baseline_name}"]
    speeds: dict[tuple[int, str], list[float]] = {}
    ratios: dict[int, list[float]] = {}
    for repeat in range(args.repeats):
        for index, row in enumerate(table):
            steps = row.timed_steps(args.steps)
            baseline, contender = paired_steps_per_second(row, seed=repeat, steps=steps, chunks=args.chunks)
            speeds.setdefault((index, "baseline"), []).append(baseline)
            speeds.setdefault((index, "contender"), []).append(contender)
            ratios.setdefault(index, []).append(contender / baseline)
            print(
                f"repeat {repeat} | {row.env_id} | {row.name} | {row.baseline_name}: {baseline:.1f} steps/s | "
                f"DDPGExt: {contender:.1f} steps/s | ratio {contender / baseline:.2f}",
                flush=True,
            )

    report = [
        "# Training throughput",
        "",
        f"`learn()` steps/s over {args.steps} training steps after {LEARNING_STARTS} untimed warm-up steps (batch 256, "
        f"one gradient step per env step, {args.threads} torch thread(s)). Each repeat builds both sides with the same "
        f"seed and times them in {args.chunks} alternating `learn()` calls each; the ratio is the median over "
        f"{args.repeats} repeats of each repeat's ratio (all of them in the last column), the steps/s are medians.",
    ]
    for kind in (SAME, NEAREST, INTERNAL):
        if not any(row.kind == kind for row in table):
            continue
        report += ["", f"## {kind}", "", *table_lines(table, speeds, ratios, kind, args.steps)]
        if kind == SAME:
            report += ["", *target_lines(table, ratios)]
    report += (
        []
        if not any(row.name == DDPG_DEFAULTS for row in table)
        else [
            "",
            "## Ceiling",
            "",
            "The best ratio an implementation could reach on the DDPG defaults without changing the arithmetic: SB3 "
            "DDPG's time per step over a floor of SB3's collection (DDPGExt with `gradient_steps=0`, median of 3) plus "
            "the matrix products of one DDPGExt update (profiled self CPU time over 50 updates, median of 3), which run "
            "at this CPU's peak already. DDPGExt's measured time per step is beside it.",
            "",
            *ceiling_rows(table, speeds, args.steps),
        ]
    )
    if any(row.ceiling is not None for row in table):
        report += [
            "",
            "## Ceiling of the normalised presets",
            "",
            "The same floor for `ext`, `td7` and `simba`: the preset's collection (`gradient_steps=0`, median of 3) "
            "plus the matrix products of one of its updates on the fast backend (profiled, median of 3), against the "
            "row's baseline; the share of matrix products is of DDPGExt's measured time per step.",
            "",
            *preset_ceiling_rows(table, speeds, args.steps),
        ]
    publish(report, origin, args.output)


if __name__ == "__main__":
    main()
