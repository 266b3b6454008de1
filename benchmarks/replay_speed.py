"""
Replay speed, side by side in one run: SB3's uniform ReplayBuffer, our PrioritizedReplayBuffer, cpprb's.

Measures, on a full buffer of HalfCheetah sizes (17-d observations, 6-d actions):
- ``sample(batch)`` (+ ``update_priorities`` for the prioritized buffers),
- ``add`` of one transition,
- DDPGExt's end-to-end ``learn()`` steps/s with PER + 3-step returns versus uniform replay.

Every timing is repeated, the repeats of the contenders interleaved so that machine noise hits all of
them, and the median is reported with the ratio to the SB3 baseline.

    python benchmarks/replay_speed.py --output benchmarks/results/replay_speed.md
"""

import argparse
import pathlib
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_ddpg_ext import DDPGExt, PrioritizedReplayBuffer
from sb3_ddpg_ext.experiments.provenance import provenance_markdown, publish

OBSERVATION_SPACE = spaces.Box(-np.inf, np.inf, shape=(17,), dtype=np.float32)
ACTION_SPACE = spaces.Box(-1.0, 1.0, shape=(6,), dtype=np.float32)


def fill_like(buffer: ReplayBuffer, rng: np.random.Generator) -> None:
    """Make an SB3-layout buffer full of random transitions, as after ``buffer_size`` adds."""
    buffer.observations[:] = rng.standard_normal(buffer.observations.shape, dtype=np.float32)
    buffer.next_observations[:] = rng.standard_normal(buffer.next_observations.shape, dtype=np.float32)
    buffer.actions[:] = rng.uniform(-1, 1, buffer.actions.shape).astype(np.float32)
    buffer.rewards[:] = rng.standard_normal(buffer.rewards.shape, dtype=np.float32)
    buffer.dones[:] = rng.random(buffer.dones.shape) < 0.001
    buffer.full, buffer.pos = True, 0


def time_per_call(function: Callable[[], object], calls: int) -> float:
    """Mean seconds per call over ``calls`` calls, after a short warm-up."""
    for _ in range(min(calls, 50)):
        function()
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def interleaved_medians(contenders: dict[str, Callable[[], object]], calls: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each contender, measured in turns."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, function in contenders.items():
            samples[name].append(time_per_call(function, calls))
    return {name: statistics.median(values) for name, values in samples.items()}


def make_cpprb(buffer_size: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    try:
        import cpprb
    except ImportError:
        return None
    buffer = cpprb.PrioritizedReplayBuffer(
        buffer_size,
        {"obs": {"shape": 17}, "act": {"shape": 6}, "rew": {}, "next_obs": {"shape": 17}, "done": {}},
        alpha=0.6,
    )
    chunk = 100_000
    for _ in range(buffer_size // chunk):
        buffer.add(
            obs=rng.standard_normal((chunk, 17), dtype=np.float32),
            act=rng.uniform(-1, 1, (chunk, 6)).astype(np.float32),
            rew=rng.standard_normal(chunk, dtype=np.float32),
            next_obs=rng.standard_normal((chunk, 17), dtype=np.float32),
            done=np.zeros(chunk, dtype=np.float32),
        )
    return buffer


def buffer_table(buffer_size: int, batch_size: int, repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    uniform = ReplayBuffer(buffer_size, OBSERVATION_SPACE, ACTION_SPACE, device="cpu")
    prioritized = PrioritizedReplayBuffer(buffer_size, OBSERVATION_SPACE, ACTION_SPACE, device="cpu", n_steps=1)
    prioritized_n3 = PrioritizedReplayBuffer(buffer_size, OBSERVATION_SPACE, ACTION_SPACE, device="cpu", n_steps=3)
    for buffer in (uniform, prioritized, prioritized_n3):
        fill_like(buffer, rng)
    for buffer in (prioritized, prioritized_n3):
        buffer.priorities.tree.update(np.arange(buffer_size), rng.random(buffer_size) + 0.01)
    priorities = rng.random(batch_size)

    def sample_and_update(buffer: PrioritizedReplayBuffer) -> Callable[[], None]:
        def step() -> None:
            buffer.update_priorities(buffer.sample(batch_size).indices, priorities)

        return step

    sample_contenders: dict[str, Callable[[], object]] = {
        "SB3 ReplayBuffer: sample": lambda: uniform.sample(batch_size),
        "ours PrioritizedReplayBuffer: sample + update_priorities": sample_and_update(prioritized),
        "ours PrioritizedReplayBuffer, n_steps=3: sample + update_priorities": sample_and_update(prioritized_n3),
    }
    cpprb_buffer = make_cpprb(buffer_size, rng)
    if cpprb_buffer is not None:

        def cpprb_step() -> None:
            batch = cpprb_buffer.sample(batch_size, beta=0.4)
            cpprb_buffer.update_priorities(batch["indexes"], priorities)

        sample_contenders["cpprb PrioritizedReplayBuffer: sample + update_priorities"] = cpprb_step
    sample_times = interleaved_medians(sample_contenders, calls=2_000, repeats=repeats)

    obs, action = OBSERVATION_SPACE.sample()[None], ACTION_SPACE.sample()[None]
    reward, done, infos = np.zeros(1, dtype=np.float32), np.zeros(1, dtype=bool), [{}]
    add_times = interleaved_medians(
        {
            "SB3 ReplayBuffer: add": lambda: uniform.add(obs, obs, action, reward, done, infos),
            "ours PrioritizedReplayBuffer: add": lambda: prioritized.add(obs, obs, action, reward, done, infos),
        },
        calls=20_000,
        repeats=repeats,
    )
    lines = [
        f"Full buffer of {buffer_size:,} transitions (17-d observations, 6-d actions), batch {batch_size}; "
        f"median of {repeats} interleaved repeats.",
        "",
        "| operation | time per call (µs) | ratio to SB3 |",
        "|---|---|---|",
    ]
    for times in (sample_times, add_times):
        baseline = next(iter(times.values()))
        lines += [f"| {name} | {seconds * 1e6:.1f} | {seconds / baseline:.2f} |" for name, seconds in times.items()]
    if cpprb_buffer is None:
        lines.append("\ncpprb is not installed (`pip install cpprb`, in the `bench` extra): its row is missing.")
    return lines


def end_to_end_table(env_id: str, train_steps: int, learning_starts: int, repeats: int) -> list[str]:
    """DDPGExt learn() steps/s after learning_starts, uniform versus PER + 3-step, SB3 DDPG defaults otherwise."""
    configurations = {
        "uniform replay": {},
        "PER + n_steps=3": dict(replay_buffer_class=PrioritizedReplayBuffer, n_steps=3),
    }
    speeds: dict[str, list[float]] = {name: [] for name in configurations}
    for repeat in range(repeats):
        for name, extension in configurations.items():
            model = DDPGExt("MlpPolicy", env_id, learning_starts=learning_starts, seed=repeat, **extension)
            model.learn(learning_starts)  # warm-up: fill the buffer to learning_starts without timing it
            start = time.perf_counter()
            model.learn(train_steps, reset_num_timesteps=False)
            speeds[name].append(train_steps / (time.perf_counter() - start))
    baseline = statistics.median(speeds["uniform replay"])
    lines = [
        f"DDPGExt on {env_id}, SB3 DDPG defaults (400-300 networks, batch 256, one update per step), "
        f"{train_steps} timed steps after {learning_starts} warm-up steps; median of {repeats} interleaved repeats.",
        "",
        "| replay | steps/s | ratio to uniform |",
        "|---|---|---|",
    ]
    for name, values in speeds.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.1f} | {median / baseline:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buffer-size", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--env", default="Pendulum-v1", help="env of the end-to-end comparison")
    parser.add_argument("--train-steps", type=int, default=2_000, help="timed learn() steps per end-to-end run")
    parser.add_argument("--e2e-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=pathlib.Path, help="also write the report to this markdown file")
    args = parser.parse_args()
    th.set_num_threads(args.threads)
    # Recorded before the runs: the checkout may change while they go on.
    origin = provenance_markdown()

    report = ["# Replay speed", "", "## Buffer operations", ""]
    report += buffer_table(args.buffer_size, args.batch_size, args.repeats)
    report += ["", "## End to end", ""]
    report += end_to_end_table(args.env, args.train_steps, learning_starts=300, repeats=args.e2e_repeats)
    publish(report, origin, args.output)


if __name__ == "__main__":
    main()
