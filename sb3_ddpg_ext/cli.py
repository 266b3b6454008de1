"""Command line: ``python -m sb3_ddpg_ext train|eval|tune|benchmark ...`` (also installed as ``ddpg-ext``)."""

import argparse
import dataclasses
import pathlib
import sys
from collections.abc import Sequence

import gymnasium as gym
import torch as th

from sb3_ddpg_ext.common.validation import InvalidValueError, ValidationError
from sb3_ddpg_ext.experiments.config import DEFAULT_HYPERPARAMS
from sb3_ddpg_ext.version import __version__

DEFAULT_ENV = "Pendulum-v1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpg-ext", description="DDPGExt: DDPG with extensions, on Stable-Baselines3.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train on an env with its hyperparameter entry, save and evaluate")
    train.add_argument("--env", default=DEFAULT_ENV, help=f"Gymnasium env id (default: {DEFAULT_ENV})")
    train.add_argument("--timesteps", type=int, help="training budget (default: the entry's n_timesteps)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--hyperparams", default=str(DEFAULT_HYPERPARAMS), help="RL-Zoo-format YAML file")
    train.add_argument("--tensorboard-log", help="TensorBoard log folder")
    train.add_argument(
        "--save-path", help="model file; .zip is appended without a suffix (default: logs/ddpg_ext/<env>_seed<seed>/model.zip)"
    )
    train.add_argument("--n-eval-episodes", type=int, default=10)
    train.add_argument("--no-progress-bar", action="store_true")
    _add_common_options(train)

    evaluate = commands.add_parser("eval", help="evaluate a saved model's deterministic policy")
    evaluate.add_argument("--env", default=DEFAULT_ENV, help=f"Gymnasium env id (default: {DEFAULT_ENV})")
    evaluate.add_argument("--model", required=True, help="model file saved by `train` (the .zip may be left out)")
    evaluate.add_argument("--n-episodes", type=int, default=10)
    evaluate.add_argument("--seed", type=int, default=0)
    _add_common_options(evaluate)

    tune = commands.add_parser(
        "tune", help="tune hyperparameters with Optuna; several processes or machines can share one study (--storage)"
    )
    tune.add_argument("--env", default=DEFAULT_ENV, help=f"Gymnasium env id (default: {DEFAULT_ENV})")
    tune.add_argument("--n-trials", type=int, default=100, help="finished trials the study should hold (default: 100)")
    tune.add_argument("--timesteps", type=int, default=20_000, help="training budget per trial (default: 20000)")
    tune.add_argument("--n-evaluations", type=int, default=10, help="evaluations per trial, seen by the pruner")
    tune.add_argument("--n-eval-episodes", type=int, default=5, help="episodes per evaluation (default: 5)")
    tune.add_argument("--sampler", default="tpe", help="tpe, random or cmaes (default: tpe)")
    tune.add_argument("--pruner", default="median", help="median, halving or none (default: median)")
    tune.add_argument(
        "--storage",
        help="database URL (postgresql://..., sqlite:///...) or journal file (default: logs/tuning/<study>.journal)",
    )
    tune.add_argument("--study-name", help="default: ddpg_ext-<env>")
    tune.add_argument("--n-jobs", type=int, default=1, help="worker processes on this machine (default: 1)")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument(
        "--output", help="YAML file for the best entry (default: beside the study); trials CSV and plots go beside it"
    )
    tune.add_argument("--search-space", help="YAML file narrowing the search space (see --list-search-space)")
    tune.add_argument("--list-search-space", action="store_true", help="print the search space and exit")
    tune.add_argument(
        "--n-startup-trials", type=int, default=5, help="random trials before the sampler models, and before pruning"
    )
    tune.add_argument("--heartbeat-interval", type=int, default=60, help="seconds between heartbeats of a running trial")
    tune.add_argument(
        "--grace-period", type=int, help="seconds without heartbeat before a running trial is failed (default: 2x interval)"
    )
    _add_common_options(tune)

    benchmark = commands.add_parser("benchmark", help="run a grid of algorithms x envs x seeds (resumable), then summarise")
    benchmark.add_argument("--envs", nargs="+", default=[DEFAULT_ENV])
    benchmark.add_argument("--algos", nargs="+", default=None, help="default: all (see --list-algos)")
    benchmark.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    benchmark.add_argument("--timesteps", type=int, default=20_000)
    benchmark.add_argument("--eval-freq", type=int, default=2_000)
    benchmark.add_argument("--n-eval-episodes", type=int, default=10)
    benchmark.add_argument("--jobs", type=int, default=1, help="runs in parallel (worker processes, or local Ray CPUs)")
    benchmark.add_argument("--executor", default="process", help="process (this machine) or ray (a Ray cluster)")
    benchmark.add_argument("--address", help="Ray cluster address (e.g. ray://head:10001, auto); default: a local Ray")
    benchmark.add_argument("--root", default="benchmarks/results/runs", help="one CSV per run is written here")
    benchmark.add_argument("--report-only", action="store_true", help="only summarise the runs found under --root")
    benchmark.add_argument(
        "--checkpoint-dir",
        help="checkpoint each run here as it goes and resume interrupted runs from it (keep it outside the repository)",
    )
    benchmark.add_argument("--checkpoint-freq", type=int, default=10_000, help="steps between checkpoints (default: 10000)")
    benchmark.add_argument("--list-algos", action="store_true")
    benchmark.add_argument("--output", help="also write the report (markdown, with provenance) to this file")
    benchmark.add_argument("--plots", help="folder for PNG learning curves (default: beside --output, if given)")
    _add_common_options(benchmark)
    return parser


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    # One thread: with small networks, two threads on a 2-core machine are several times slower.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--verbose", type=int, default=0, help="SB3 verbosity (0, 1 or 2)")


def _benchmark(args: argparse.Namespace) -> None:
    from sb3_ddpg_ext.experiments import benchmark, report
    from sb3_ddpg_ext.experiments.provenance import provenance_markdown, publish

    if args.list_algos:
        print("\n".join(benchmark.algorithm_names()))
        return
    root = pathlib.Path(args.root)
    origin = provenance_markdown()
    if not args.report_only:
        algorithms = args.algos or benchmark.algorithm_names()
        unknown = sorted(set(algorithms) - set(benchmark.algorithm_names()))
        if unknown:
            raise InvalidValueError(f"unknown algorithms {unknown}; algorithms are {benchmark.algorithm_names()}")
        specs = [
            benchmark.RunSpec(algorithm, env_id, seed, args.timesteps, args.eval_freq, args.n_eval_episodes)
            for seed in args.seeds
            for env_id in args.envs
            for algorithm in algorithms
        ]
        checkpoints = None
        if args.checkpoint_dir is not None:
            from sb3_ddpg_ext.experiments.run_checkpoints import RunCheckpoints

            checkpoints = RunCheckpoints(args.checkpoint_dir, args.checkpoint_freq)
        benchmark.run_grid(specs, root, jobs=args.jobs, executor=args.executor, address=args.address, checkpoints=checkpoints)
    output = None if args.output is None else pathlib.Path(args.output)
    plots = pathlib.Path(args.plots) if args.plots else (output.parent if output is not None else None)
    markdown_dir = output.parent if output is not None else None
    publish(["# Learning benchmark", "", *report.report(root, plots, markdown_dir)], origin, output)


def _tune(args: argparse.Namespace) -> None:
    from sb3_ddpg_ext.experiments import search_space, tuning, tuning_report

    space_overrides = {}
    if args.search_space is not None:
        space_overrides = search_space.read_overrides(args.search_space)
    if args.list_search_space:
        space = search_space.narrow(search_space.default_search_space(args.env), space_overrides)
        print("\n".join(search_space.describe(space)))
        return
    # The options are the settings' fields, by the same names, but for these.
    renamed = {
        "env_id": args.env,
        "n_timesteps": args.timesteps,
        "torch_threads": args.threads,
        "search_space": space_overrides,
    }
    fields = (field.name for field in dataclasses.fields(tuning.TuningSettings))
    settings = tuning.TuningSettings(**{name: renamed[name] if name in renamed else getattr(args, name) for name in fields})
    _, lines = tuning_report.tune_and_report(settings)
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    th.set_num_threads(args.threads)
    # Imported here so that `--help` answers without loading SB3.
    from sb3_ddpg_ext.experiments import train as experiments

    try:
        if args.command == "train":
            result = experiments.train(
                args.env,
                seed=args.seed,
                timesteps=args.timesteps,
                hyperparams=args.hyperparams,
                tensorboard_log=args.tensorboard_log,
                save_path=args.save_path,
                n_eval_episodes=args.n_eval_episodes,
                progress_bar=not args.no_progress_bar,
                verbose=args.verbose,
            )
            speed = result.n_timesteps / result.train_seconds
            print(f"trained {args.env} for {result.n_timesteps} steps in {result.train_seconds:.1f} s ({speed:.0f} steps/s)")
            print(f"saved model to {result.model_path}")
            print(f"evaluation return: {result.evaluation}")
        elif args.command == "eval":
            evaluation = experiments.evaluate(args.env, args.model, n_episodes=args.n_episodes, seed=args.seed)
            print(f"evaluation return: {evaluation}")
        elif args.command == "tune":
            _tune(args)
        else:
            _benchmark(args)
    except (ValidationError, gym.error.Error) as error:
        # Bad input (ours, or an env id Gymnasium does not know); anything else is a bug and keeps its traceback.
        print(f"ddpg-ext: error: {error}", file=sys.stderr)
        return 2
    return 0
