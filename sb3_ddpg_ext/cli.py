"""Command line: ``python -m sb3_ddpg_ext train|eval|record|tune|benchmark ...`` (also installed as ``ddpg-ext``)."""

import argparse
import dataclasses
import pathlib
import sys
from collections.abc import Sequence

import gymnasium as gym
import torch as th

from sb3_ddpg_ext.common.validation import InvalidValueError, ValidationError
from sb3_ddpg_ext.experiments.config import DEFAULT_HYPERPARAMS
from sb3_ddpg_ext.presets import PRESETS
from sb3_ddpg_ext.version import __version__

DEFAULT_ENV = "Pendulum-v1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpg-ext", description="DDPGExt: DDPG with extensions, on Stable-Baselines3.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    _add_train_parser(commands)

    evaluate = commands.add_parser("eval", help="evaluate a saved model's deterministic policy")
    evaluate.add_argument("--env", default=DEFAULT_ENV, help=f"Gymnasium env id (default: {DEFAULT_ENV})")
    evaluate.add_argument("--model", required=True, help="model file saved by `train` (the .zip may be left out)")
    evaluate.add_argument("--n-episodes", type=int, default=10)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--render", action="store_true", help="show the episodes in a window (needs a display)")
    evaluate.add_argument("--env-kwargs", nargs="+", default=[], metavar="KEY:VALUE", help="gymnasium.make arguments")
    _add_common_options(evaluate)

    record = commands.add_parser("record", help="render a saved model's deterministic policy to an MP4 or a GIF, headless")
    record.add_argument("--env", default=DEFAULT_ENV, help=f"Gymnasium env id (default: {DEFAULT_ENV})")
    record.add_argument("--model", required=True, help="model file saved by `train` (the .zip may be left out)")
    record.add_argument("--output", required=True, help="video file: .mp4 or .gif (the format follows the suffix)")
    record.add_argument("--steps", type=int, default=1000, help="env steps to record, one frame each (default: 1000)")
    record.add_argument("--fps", type=int, help="frames per second (default: the env's render_fps)")
    record.add_argument("--seed", type=int, default=0)
    record.add_argument(
        "--env-kwargs", nargs="+", default=[], metavar="KEY:VALUE", help="gymnasium.make arguments, e.g. width:320 height:240"
    )
    record.add_argument("--no-progress-bar", action="store_true")
    _add_common_options(record)

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
    benchmark.add_argument("--envs", nargs="+", help=f"default: {DEFAULT_ENV} (with --report-only: every env under --root)")
    benchmark.add_argument("--algos", nargs="+", default=None, help="default: all (see --list-algos)")
    benchmark.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    benchmark.add_argument("--timesteps", type=int, default=20_000)
    benchmark.add_argument("--eval-freq", type=int, default=2_000)
    benchmark.add_argument("--n-eval-episodes", type=int, default=10)
    benchmark.add_argument("--jobs", type=int, default=1, help="runs in parallel (worker processes, or local Ray CPUs)")
    benchmark.add_argument("--executor", default="process", help="process (this machine) or ray (a Ray cluster)")
    benchmark.add_argument("--address", help="Ray cluster address (e.g. ray://head:10001, auto); default: a local Ray")
    benchmark.add_argument("--root", default="benchmarks/results/runs", help="one CSV per run is written here")
    benchmark.add_argument(
        "--report-only", action="store_true", help="only summarise the runs under --root (of --envs and --algos, if given)"
    )
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


# Options of `train` that a resumed run takes from its own files (config.yml, args.yml) and so cannot be given.
RESUME_KEEPS = (
    *("env_id", "seed", "hyperparams", "preset", "params", "n_envs", "env_kwargs", "eval_freq", "eval_episodes"),
    *("checkpoint_freq", "save_replay_buffer", "log_folder", "save_path", "tensorboard_log"),
)


def _add_train_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    # Options left out of the command line are absent from the namespace (SUPPRESS): TrainSettings' defaults apply,
    # and `--resume` can tell which options were given.
    train = commands.add_parser(
        "train",
        help="train on an env (its entry in the hyperparameter file, or a preset), save, evaluate",
        argument_default=argparse.SUPPRESS,
        epilog="Run folders: <log-folder>/ddpg_ext/<env>_<N>/ with <env>.zip, config.yml (repeat the run with "
        "--hyperparams), evaluations.npz, best_model.zip, rl_model_<steps>_steps.zip (checkpoints).",
    )
    train.add_argument("--env", dest="env_id", help=f"Gymnasium env id (default: {DEFAULT_ENV})")
    train.add_argument("-n", "--timesteps", type=int, help="training budget (default: the entry's n_timesteps)")
    train.add_argument("--seed", type=int, help="seed of the model and the envs (default: 0)")
    train.add_argument("--hyperparams", help=f"RL-Zoo-format YAML file (default: the package's {DEFAULT_HYPERPARAMS.name})")
    train.add_argument(
        "--preset",
        help=f"train this preset instead of the file's entry ({', '.join(sorted(PRESETS))}); without it, an env the"
        " file has no entry for trains the recommended preset 'ext'",
    )
    train.add_argument(
        "--params",
        nargs="+",
        metavar="KEY:VALUE",
        help="override entry keys, RL Zoo's syntax: learning_rate:1e-3 'policy_kwargs:dict(net_arch=[64, 64])'"
        " (Python literals or text; nothing is eval-ed; policy_kwargs are merged key by key)",
    )
    train.add_argument("--n-envs", type=int, help="parallel training envs (default: the entry's, else 1)")
    train.add_argument("--env-kwargs", nargs="+", metavar="KEY:VALUE", help="gymnasium.make arguments")
    train.add_argument("--eval-freq", type=int, help="evaluate every N env steps with SB3's EvalCallback (default: 0, never)")
    train.add_argument("--eval-episodes", type=int, help="episodes per evaluation during training (default: 5)")
    train.add_argument("--n-eval-episodes", type=int, help="episodes of the final evaluation (default: 10)")
    train.add_argument(
        "--checkpoint-freq", "--save-freq", type=int, help="save model + replay buffer every N env steps (default: 0)"
    )
    train.add_argument("--save-replay-buffer", action="store_true", help="save the replay buffer with the final model")
    train.add_argument("--resume", help="continue a run (its folder, or a checkpoint of it) up to its budget")
    train.add_argument("--device", help="torch device: auto, cpu, cuda, cuda:<index> (default: auto)")
    train.add_argument("-f", "--log-folder", help="run folders go here (default: logs)")
    train.add_argument("--save-path", help="final model file (default: <run folder>/<env>.zip; .zip appended if missing)")
    train.add_argument("-tb", "--tensorboard-log", help="TensorBoard log folder")
    train.add_argument("--no-progress-bar", action="store_true")
    train.add_argument("--threads", type=int, help="torch threads (default: 1)")
    train.add_argument("--verbose", type=int, help="SB3 verbosity (0, 1 or 2)")


def _train(args: argparse.Namespace) -> None:
    from sb3_ddpg_ext.experiments import train as experiments
    from sb3_ddpg_ext.experiments.run_config import parse_overrides

    given = vars(args)
    progress_bar = not given.get("no_progress_bar", False)
    if "resume" in given:
        kept = [name for name in RESUME_KEEPS if name in given]
        if kept:
            options = ", ".join("--" + ("env" if name == "env_id" else name.replace("_", "-")) for name in kept)
            raise InvalidValueError(
                f"`--resume` continues a run with its own settings (config.yml, args.yml); {options} cannot be given"
            )
        result = experiments.resume(
            given["resume"],
            given.get("timesteps"),
            given.get("device", "auto"),
            progress_bar,
            given.get("verbose", 0),
            given.get("n_eval_episodes", 10),
        )
    else:
        settings = {name: given[name] for name in experiments.settings_fields() if name in given}
        for name in ("params", "env_kwargs"):
            if name in settings:
                settings[name] = parse_overrides(settings[name], f"--{name.replace('_', '-')}")
        result = experiments.train(experiments.TrainSettings(**settings, progress_bar=progress_bar), notify=print)
    speed = result.n_timesteps / result.train_seconds
    print(f"trained {result.env_id} for {result.n_timesteps} steps in {result.train_seconds:.1f} s ({speed:.0f} steps/s)")
    print(f"run folder: {result.run_folder}")
    print(f"saved model to {result.model_path}")
    print(f"evaluation return: {result.evaluation}")


def _evaluate(args: argparse.Namespace) -> None:
    from sb3_ddpg_ext.experiments.evaluation import evaluate
    from sb3_ddpg_ext.experiments.record import has_display
    from sb3_ddpg_ext.experiments.run_config import parse_overrides

    env_kwargs = parse_overrides(args.env_kwargs, "--env-kwargs")
    if args.render:
        if not has_display():
            raise InvalidValueError(
                "`--render` opens a window, and this machine has no display (DISPLAY is not set): write a video with"
                " `record --output FILE.mp4` instead"
            )
        env_kwargs["render_mode"] = "human"
    print(f"evaluation return: {evaluate(args.env, args.model, args.n_episodes, args.seed, env_kwargs)}")


def _record(args: argparse.Namespace) -> None:
    from sb3_ddpg_ext.experiments.record import record
    from sb3_ddpg_ext.experiments.run_config import parse_overrides

    env_kwargs = parse_overrides(args.env_kwargs, "--env-kwargs")
    path = record(args.env, args.model, args.output, args.steps, args.fps, args.seed, env_kwargs, not args.no_progress_bar)
    print(f"recorded {args.steps} frames of {args.env} to {path}")


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
            for env_id in args.envs or [DEFAULT_ENV]
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
    lines = report.report(root, plots, markdown_dir, args.envs, args.algos)
    publish(["# Learning benchmark", "", *lines], origin, output)


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


COMMANDS = {"train": _train, "eval": _evaluate, "record": _record, "tune": _tune, "benchmark": _benchmark}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    th.set_num_threads(getattr(args, "threads", 1))
    try:
        COMMANDS[args.command](args)
    except (ValidationError, gym.error.Error) as error:
        # Bad input (ours, or an env id Gymnasium does not know); anything else is a bug and keeps its traceback.
        print(f"ddpg-ext: error: {error}", file=sys.stderr)
        return 2
    return 0
