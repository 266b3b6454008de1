"""
Learning benchmarks: a grid of algorithms x environments x seeds, one result file per run.

Each run trains one agent and evaluates its deterministic policy every ``eval_freq`` steps on a separate,
separately seeded environment (SB3's ``evaluate_policy``), then writes ``<root>/<env>/<algorithm>/seed<S>.csv``
(columns: timesteps, seconds, mean_return, std_return) and a ``.json`` beside it with the run's settings
and provenance. A run whose CSV exists is skipped, so an interrupted grid resumes where it stopped. Runs
execute in worker processes (``jobs``) or on a Ray cluster, one torch thread each; :mod:`.report` turns the
files into tables and plots.
"""

import copy
import csv
import json
import os
import pathlib
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch as th
import yaml
from sb3_contrib import TQC, CrossQ
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise

from sb3_ddpg_ext.common.validation import InvalidValueError
from sb3_ddpg_ext.ddpg_ext import DDPGExt
from sb3_ddpg_ext.experiments.config import ExperimentConfig, parse_entry
from sb3_ddpg_ext.experiments.provenance import provenance
from sb3_ddpg_ext.experiments.run_checkpoints import RunCheckpoints
from sb3_ddpg_ext.experiments.tasks import TASKS, Task
from sb3_ddpg_ext.presets import PRESETS, preset

EVAL_SEED_OFFSET = 10_000
# The agents SB3 users pick for continuous control, with their libraries' defaults: SB3's DDPG, TD3 and SAC,
# sb3-contrib's TQC and CrossQ.
BASELINES: dict[str, type[BaseAlgorithm]] = {
    "sb3-ddpg": DDPG,
    "sb3-td3": TD3,
    "sb3-sac": SAC,
    "contrib-tqc": TQC,
    "contrib-crossq": CrossQ,
}
# The same with RL Zoo's tuned hyperparameters for the task (only for tasks RL Zoo has tuned).
ZOO_BASELINES: dict[str, tuple[type[BaseAlgorithm], str]] = {
    "sb3-ddpg-zoo": (DDPG, "ddpg"),
    "sb3-td3-zoo": (TD3, "td3"),
    "sb3-sac-zoo": (SAC, "sac"),
    "contrib-tqc-zoo": (TQC, "tqc"),
    "contrib-crossq-zoo": (CrossQ, "crossq"),
}
# RL Zoo's entries at the widest networks these CPUs afford, where the entry's own are not (each table says so):
# the zoo algorithm it narrows and the ``policy_kwargs`` that replace the entry's.
NARROWED_ZOO_BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    # RL Zoo's MuJoCo CrossQ has 2048-2048 critics: 16x the products of 512-512 ones per sample. Measured side by
    # side on Hopper-v5 (one torch thread, 2-core VM): SAC's entry 54-64 updates/s, this 17-19, the entry's own
    # 1.7-1.8, i.e. some 15 hours per 100k-step run, against about 1.5 here.
    "contrib-crossq-zoo-512": ("contrib-crossq-zoo", {"net_arch": {"pi": [256, 256], "qf": [512, 512]}}),
}
# Deterministic actors explore with the task's Gaussian action noise; SAC, TQC and CrossQ with their own policies.
ACTION_NOISE_BASELINES = (DDPG, TD3)
RL_ZOO_HYPERPARAMS = pathlib.Path(__file__).with_name("rl_zoo.yml")
DDPG_EXT_PREFIX = "ddpg-ext-"

# Variants of the presets that the grid can run beside them: candidates and ablations, each one switch away
# from its preset (``policy_kwargs`` are merged key by key, as in :func:`~sb3_ddpg_ext.presets.preset`).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # CrossQ with sb3-contrib's wide critics (1024-1024): about 6x the time per update of the preset on a CPU.
    "crossq-wide": ("crossq", {"policy_kwargs": {"net_arch": {"pi": [256, 256], "qf": [1024, 1024]}}}),
    "crossq-n3": ("crossq", {"n_steps": 3}),
    "td3-n3": ("td3", {"n_steps": 3}),
    "td3-ln": ("td3", {"policy_kwargs": {"layer_norm": True}}),
    "td3-n3-ln": ("td3", {"n_steps": 3, "policy_kwargs": {"layer_norm": True}}),
    # TD7 ablations: the preset without one of its parts.
    "td7-no-sale": (
        "td7",
        {"policy_kwargs": {"sale": False, "sale_embedding_dim": None, "sale_net_arch": None, "sale_activation_fn": None}},
    ),
    "td7-no-lap": ("td7", {"replay_buffer_class": None, "replay_buffer_kwargs": None}),
    "td7-polyak": ("td7", {"tau": 0.005, "target_update_interval": None, "target_value_clipping": False}),
    "td7-no-clipping": ("td7", {"target_value_clipping": False}),
    "td7-no-checkpoints": ("td7", {"policy_checkpoints": False}),
}


def algorithm_names() -> list[str]:
    """The algorithms a grid can name: the peers (their defaults, and RL Zoo's entries), each DDPGExt preset and
    variant."""
    return [*BASELINES, *ZOO_BASELINES, *NARROWED_ZOO_BASELINES, *(DDPG_EXT_PREFIX + name for name in [*PRESETS, *VARIANTS])]


def rl_zoo_entry(algorithm: str, env_id: str, algorithm_class: type[BaseAlgorithm] = DDPGExt) -> ExperimentConfig:
    """
    RL Zoo's tuned hyperparameters of ``ddpg``, ``td3``, ``sac``, ``tqc`` or ``crossq`` for a task (see ``rl_zoo.yml``).

    :param algorithm: RL Zoo's name of the algorithm
    :param env_id: the task
    :param algorithm_class: the class whose keyword arguments the entry holds
    :raises ValueError: when RL Zoo has no entry for the task
    """
    entries = yaml.safe_load(RL_ZOO_HYPERPARAMS.read_text())[algorithm]
    if env_id not in entries:
        raise InvalidValueError(f"RL Zoo has no tuned {algorithm.upper()} entry for {env_id!r} (it has {sorted(entries)})")
    entry = {**entries[env_id], "n_timesteps": 0}
    return parse_entry(env_id, entry, source=f"RL Zoo {algorithm} {env_id}", algorithm=algorithm_class)


def ddpg_ext_kwargs(name: str) -> dict[str, Any]:
    """
    DDPGExt's keyword arguments for a preset or variant name.

    :param name: a key of :data:`~sb3_ddpg_ext.presets.PRESETS` or :data:`VARIANTS`
    """
    base, overrides = VARIANTS.get(name, (name, {}))
    return preset(base, **copy.deepcopy(overrides))


def build(algorithm: str, env_id: str, seed: int, policy_kwargs: dict[str, Any] | None = None) -> BaseAlgorithm:
    """
    One agent of the grid, with the task's shared settings.

    :param algorithm: one of :func:`algorithm_names`
    :param env_id: Gymnasium environment id
    :param seed: seed of the agent and its training environment
    :param policy_kwargs: overrides of the policy arguments (e.g. smaller networks in tests)
    """
    if algorithm not in algorithm_names():
        raise InvalidValueError(f"unknown algorithm {algorithm!r}; algorithms are {algorithm_names()}")
    task = TASKS.get(env_id, Task())
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    action_dim = int(np.prod(env.action_space.shape))  # type: ignore[arg-type]
    noise = NormalActionNoise(np.zeros(action_dim), task.noise_std * np.ones(action_dim))
    common: dict[str, Any] = dict(learning_starts=task.learning_starts, action_noise=noise, seed=seed, verbose=0)
    if algorithm in BASELINES:
        algorithm_class = BASELINES[algorithm]
        if algorithm_class not in ACTION_NOISE_BASELINES:
            common.pop("action_noise")
        return algorithm_class("MlpPolicy", env, policy_kwargs=policy_kwargs, **common)
    if algorithm in NARROWED_ZOO_BASELINES:
        algorithm, narrowed = NARROWED_ZOO_BASELINES[algorithm]
        policy_kwargs = {**copy.deepcopy(narrowed), **(policy_kwargs or {})}
    if algorithm in ZOO_BASELINES:
        algorithm_class, zoo_name = ZOO_BASELINES[algorithm]
        config = rl_zoo_entry(zoo_name, env_id, algorithm_class)
        # What RL Zoo runs: its entry, and the library's defaults (not the task's shared settings) for the rest.
        kwargs = {"seed": seed, "verbose": 0, "action_noise": config.make_action_noise(action_dim), **config.model_kwargs}
        kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), **(policy_kwargs or {})}
        return algorithm_class("MlpPolicy", env, **kwargs)
    kwargs = ddpg_ext_kwargs(algorithm[len(DDPG_EXT_PREFIX) :])
    kwargs.setdefault("policy_kwargs", {})
    if kwargs["policy_kwargs"].get("critic") == "categorical":
        kwargs["policy_kwargs"].update(v_min=task.support[0], v_max=task.support[1])
    kwargs["policy_kwargs"].update(policy_kwargs or {})
    return DDPGExt("MlpPolicy", env, **kwargs, **common)


@dataclass(frozen=True)
class RunSpec:
    """
    One run of the grid.

    :param algorithm: one of :func:`algorithm_names`
    :param env_id: Gymnasium environment id
    :param seed: seed
    :param timesteps: training budget
    :param eval_freq: evaluate every this many environment steps
    :param n_eval_episodes: episodes per evaluation
    :param policy_kwargs: policy overrides (tests use small networks)
    """

    algorithm: str
    env_id: str
    seed: int
    timesteps: int
    eval_freq: int
    n_eval_episodes: int = 10
    policy_kwargs: tuple[tuple[str, Any], ...] = ()

    def path(self, root: pathlib.Path) -> pathlib.Path:
        return root / self.env_id / self.algorithm / f"seed{self.seed}.csv"


class EvaluationRecorder(BaseCallback):
    """Evaluates the deterministic policy every ``eval_freq`` steps and keeps (steps, seconds, mean, std)."""

    def __init__(self, env_id: str, seed: int, eval_freq: int, n_eval_episodes: int):
        super().__init__()
        self.eval_env = make_vec_env(env_id, n_envs=1, seed=seed + EVAL_SEED_OFFSET)
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.rows: list[tuple[int, float, float, float]] = []
        self._start = time.perf_counter()
        self._evaluation_seconds = 0.0

    def _on_step(self) -> bool:
        if self.num_timesteps % self.eval_freq == 0:
            self.evaluate()
        return True

    def evaluate(self) -> None:
        seconds = self.training_seconds()
        started = time.perf_counter()
        mean, std = evaluate_policy(self.model, self.eval_env, n_eval_episodes=self.n_eval_episodes, deterministic=True)
        self._evaluation_seconds += time.perf_counter() - started  # wall-clock of training only: evaluations excluded
        self.rows.append((self.num_timesteps, seconds, float(mean), float(std)))  # type: ignore[arg-type]

    def training_seconds(self) -> float:
        """Training wall-clock so far (evaluations excluded)."""
        return time.perf_counter() - self._start - self._evaluation_seconds

    def restore(self, rows: list[tuple[int, float, float, float]], training_seconds: float) -> None:
        """Continue an interrupted run: its evaluations, and its training clock where it stopped."""
        self.rows = list(rows)
        self._start = time.perf_counter() - training_seconds
        self._evaluation_seconds = 0.0


@dataclass(frozen=True)
class RunResult:
    """
    What one run produced, ready to be written by whoever collects it (on a cluster: the driver).

    :param rows: (timesteps, training seconds, mean return, std return) of each evaluation
    :param metadata: the run's settings and the provenance of the process that ran it
    """

    rows: list[tuple[int, float, float, float]]
    metadata: dict[str, Any]


def train_run(spec: RunSpec, checkpoints: RunCheckpoints | None = None) -> RunResult:
    """
    Train and evaluate one run (in any process or on any machine); nothing is written but its checkpoints.

    :param spec: the run
    :param checkpoints: where the run is checkpointed as it goes, and resumed from if a checkpoint is there
    """
    th.set_num_threads(1)
    recorder = EvaluationRecorder(spec.env_id, spec.seed, spec.eval_freq, spec.n_eval_episodes)
    callbacks: list[BaseCallback] = [recorder]
    if checkpoints is not None and checkpoints.exists(spec):
        model = checkpoints.resume(spec, recorder)
    else:
        model = build(spec.algorithm, spec.env_id, spec.seed, dict(spec.policy_kwargs) or None)
    if checkpoints is not None:
        callbacks.append(checkpoints.callback(spec, recorder))
    resumed = model.num_timesteps > 0
    model.learn(spec.timesteps - model.num_timesteps, callback=CallbackList(callbacks), reset_num_timesteps=not resumed)
    if not recorder.rows or recorder.rows[-1][0] != model.num_timesteps:
        recorder.evaluate()
    return RunResult(recorder.rows, {"run": asdict(spec), "provenance": provenance()})


def write_run(spec: RunSpec, result: RunResult, root: pathlib.Path) -> pathlib.Path:
    """Write a run's JSON, then its CSV (which appears only when complete: resuming never reads half a run)."""
    path = spec.path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(result.metadata, indent=2, default=str))
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["timesteps", "seconds", "mean_return", "std_return"])
        writer.writerows(result.rows)
    partial.rename(path)
    return path


EXECUTORS = ("process", "ray")


def run_grid(
    specs: Iterable[RunSpec],
    root: pathlib.Path,
    jobs: int = 1,
    executor: str = "process",
    address: str | None = None,
    checkpoints: RunCheckpoints | None = None,
) -> list[pathlib.Path]:
    """
    Execute the runs whose CSV does not exist yet and write each one as soon as it finishes.

    :param specs: the grid
    :param root: folder of the result files
    :param jobs: runs at a time with the ``process`` executor (1: in this process)
    :param executor: ``process`` (worker processes on this machine) or ``ray`` (a Ray cluster; results come back
        to this process, so the workers need the package but no shared file system)
    :param address: the Ray cluster's address (e.g. ``ray://head:10001`` or ``auto``); ``None`` starts a local Ray
        with ``jobs`` CPUs
    :param checkpoints: checkpoint each run as it goes and resume interrupted ones
        (:class:`~sb3_ddpg_ext.experiments.run_checkpoints.RunCheckpoints`; on a cluster, a folder the workers share)
    :return: the CSV of every run of ``specs``
    """
    if executor not in EXECUTORS:
        raise InvalidValueError(f"`executor` must be one of {list(EXECUTORS)}, got {executor!r}")
    specs = list(specs)
    pending = [spec for spec in specs if not _finished(spec, root)]
    if executor == "ray":
        finished = _run_with_ray(pending, jobs, address, checkpoints)
    else:
        finished = _run_with_processes(pending, jobs, checkpoints)
    for spec, result in finished:
        write_run(spec, result, root)
        if checkpoints is not None:
            checkpoints.remove(spec)
    return [spec.path(root) for spec in specs]


def _finished(spec: RunSpec, root: pathlib.Path) -> bool:
    """
    Whether ``spec``'s run is done: its CSV exists (and its JSON says it is this run).

    :raises ValueError: when the files there hold a run with other settings (another budget, say): skipping it would
        report that run as this one
    """
    path = spec.path(root)
    if not path.exists():
        return False
    metadata = path.with_suffix(".json")
    if metadata.exists():
        held = json.loads(metadata.read_text()).get("run", {})
        wanted = json.loads(json.dumps(asdict(spec), default=str))  # tuples as JSON lists, as written
        differing = sorted(key for key in wanted if key in held and held[key] != wanted[key])
        if differing:
            settings = ", ".join(f"{key} {held[key]!r} (asked: {wanted[key]!r})" for key in differing)
            raise InvalidValueError(
                f"{path} holds a run with other settings: {settings}; give runs of another budget their own --root"
            )
    return True


def _run_with_processes(
    specs: list[RunSpec], jobs: int, checkpoints: RunCheckpoints | None
) -> Iterator[tuple[RunSpec, RunResult]]:
    if jobs <= 1:
        for spec in specs:
            yield spec, train_run(spec, checkpoints)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(train_run, spec, checkpoints): spec for spec in specs}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _run_with_ray(
    specs: list[RunSpec], jobs: int, address: str | None, checkpoints: RunCheckpoints | None
) -> Iterator[tuple[RunSpec, RunResult]]:
    try:
        import ray
    except ImportError as error:
        raise InvalidValueError("executor='ray' needs Ray: pip install 'sb3-ddpg-ext[ray]'") from error
    if not ray.is_initialized():
        if address is None:
            # Ray runs its workers at niceness 15: beside any other busy process they would barely run, and
            # the local grid would time a starved process. A cluster keeps its own setting.
            os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(address=address, num_cpus=None if address else max(jobs, 1), include_dashboard=False)
    remote_train_run = ray.remote(num_cpus=1)(train_run)
    pending = {remote_train_run.remote(spec, checkpoints): spec for spec in specs}  # type: ignore[call-arg]
    while pending:
        (done,), _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(done), ray.get(done)
