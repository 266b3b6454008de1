"""
RL Zoo plug-in: RL Zoo's own scripts, with DDPGExt registered as the algorithm ``ddpg_ext``.

::

    python -m sb3_ddpg_ext.zoo train --algo ddpg_ext --env Pendulum-v1 -n 300 -f logs/
    python -m sb3_ddpg_ext.zoo enjoy --algo ddpg_ext --env Pendulum-v1 -f logs/ --no-render
    python -m sb3_ddpg_ext.zoo plot -a ddpg_ext -e Pendulum-v1 -f logs/ --no-display --figure curves.png

Every option is RL Zoo's (``rl_zoo3 train --help``), but ``--figure`` of ``plot``, which saves RL Zoo's figures
(a headless machine shows none). ``train`` reads this package's ``hyperparams/ddpg_ext.yml`` unless
``-conf``/``--conf-file`` names another file, and ``--algo`` defaults to ``ddpg_ext``. In those files,
``replay_buffer_class`` may name this package's buffers (``PrioritizedReplayBuffer``, ...) and ``param_noise``
holds ``AdaptiveParamNoise``'s arguments (``"dict(target_distance=0.2)"``); both are read with this package's
parser (nothing of them is evaluated), the rest by RL Zoo as usual. Needs the ``zoo`` extra (``rl_zoo3``).

How it plugs in: ``ALGOS`` (RL Zoo's table of algorithms) gains ``ddpg_ext``, and ``rl_zoo3.train`` builds its
experiment with :class:`DDPGExtExperimentManager`, RL Zoo's ``ExperimentManager`` with the two keys above
converted first. RL Zoo has no plug-in interface; these two names are the ones its scripts look up, checked on
import so that an RL Zoo without them is a clear error.
"""

import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sb3_ddpg_ext.common.validation import InvalidValueError
from sb3_ddpg_ext.ddpg_ext import DDPGExt
from sb3_ddpg_ext.experiments.config import (
    DEFAULT_HYPERPARAMS,
    REPLAY_BUFFER_CLASSES,
    parse_dict,
    parse_param_noise,
    replay_buffer_class,
)

ALGORITHM = "ddpg_ext"
# RL Zoo's scripts (its `rl_zoo3` command's names), and `plot` for `all_plots`. Videos: `python -m sb3_ddpg_ext record`.
SCRIPTS = ("train", "enjoy", "plot", "plot_train", "plot_from_file", "all_plots")


def convert_entry(hyperparams: dict[str, Any], source: str) -> dict[str, Any]:
    """
    A DDPGExt entry with the values RL Zoo does not know how to read converted: this package's buffer names,
    ``param_noise`` and ``policy_checkpoints`` arguments.

    :param hyperparams: the entry as RL Zoo read it (after its ``--hyperparams`` overrides)
    :param source: where it comes from, for error messages
    """
    hyperparams = dict(hyperparams)
    name = hyperparams.get("replay_buffer_class")
    if isinstance(name, str) and name in REPLAY_BUFFER_CLASSES:
        hyperparams["replay_buffer_class"] = replay_buffer_class(name, source)
    if "param_noise" in hyperparams:
        hyperparams["param_noise"] = parse_param_noise(hyperparams["param_noise"], source)
    if isinstance(hyperparams.get("policy_checkpoints"), str):
        hyperparams["policy_checkpoints"] = parse_dict(hyperparams["policy_checkpoints"], "policy_checkpoints", source)
    return hyperparams


def register() -> None:
    """Make ``ddpg_ext`` an algorithm of RL Zoo's scripts in this process."""
    try:
        import rl_zoo3.train
        import rl_zoo3.utils
        from rl_zoo3.exp_manager import ExperimentManager
        from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
    except ImportError as error:
        raise InvalidValueError("the RL Zoo plug-in needs rl_zoo3: pip install 'sb3-ddpg-ext[zoo]'") from error
    if not (isinstance(getattr(rl_zoo3.utils, "ALGOS", None), dict) and hasattr(rl_zoo3.train, "ExperimentManager")):
        raise InvalidValueError(f"this rl_zoo3 ({rl_zoo3.__version__}) has no ALGOS table or ExperimentManager to plug into")

    class DDPGExtExperimentManager(ExperimentManager):
        """RL Zoo's ``ExperimentManager``, reading DDPGExt's extra keys with this package's parser."""

        def _preprocess_hyperparams(self, hyperparams: dict[str, Any]) -> Any:
            if self.algo == ALGORITHM:
                hyperparams = convert_entry(hyperparams, f"{self.config}[{self.env_name.gym_id}]")
            return super()._preprocess_hyperparams(hyperparams)

    rl_zoo3.utils.ALGOS[ALGORITHM] = DDPGExt
    rl_zoo3.train.ExperimentManager = DDPGExtExperimentManager  # type: ignore[misc]
    # `-optimize`: DDPGExt takes every argument of TD3, so RL Zoo's TD3 search space (and its converter, which
    # replays a stored trial) applies as it is; DDPGExt's own extensions are searched by `python -m sb3_ddpg_ext tune`.
    HYPERPARAMS_SAMPLER.setdefault(ALGORITHM, HYPERPARAMS_SAMPLER["td3"])
    HYPERPARAMS_CONVERTER.setdefault(ALGORITHM, HYPERPARAMS_CONVERTER["td3"])


def _script(name: str) -> Callable[[], None]:
    if name == "train":
        from rl_zoo3.train import train

        return train
    if name == "enjoy":
        from rl_zoo3.enjoy import enjoy

        return enjoy
    from rl_zoo3 import plots

    return {"plot": plots.all_plots, "all_plots": plots.all_plots, "plot_train": plots.plot_train}.get(
        name, plots.plot_from_file
    )


def option_value(arguments: Sequence[str], *names: str) -> str | None:
    """The value of an option given as ``--name value`` or ``--name=value`` (``None``: not given)."""
    for index, argument in enumerate(arguments):
        for name in names:
            if argument == name:
                return arguments[index + 1] if index + 1 < len(arguments) else ""
            if argument.startswith(f"{name}="):
                return argument[len(name) + 1 :]
    return None


def script_arguments(name: str, arguments: Sequence[str]) -> list[str]:
    """RL Zoo's arguments for a script, with this plug-in's defaults (``--algo ddpg_ext``, DDPGExt's yaml file)."""
    arguments = list(arguments)
    algorithm = option_value(arguments, "--algo")
    if name in ("train", "enjoy") and algorithm is None:
        arguments, algorithm = ["--algo", ALGORITHM, *arguments], ALGORITHM
    if name == "train" and algorithm == ALGORITHM and option_value(arguments, "-conf", "--conf-file") is None:
        arguments += ["--conf-file", str(DEFAULT_HYPERPARAMS)]
    return arguments


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sb3_ddpg_ext.zoo SCRIPT [RL Zoo's options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SCRIPTS:
        print(f"usage: python -m sb3_ddpg_ext.zoo {{{','.join(SCRIPTS)}}} [RL Zoo's options]", file=sys.stderr)
        return 2
    name, arguments = argv[0], argv[1:]
    figure = None
    if name == "plot" and "--figure" in arguments:
        at = arguments.index("--figure")
        if at + 1 == len(arguments) or arguments[at + 1].startswith("-"):
            print("sb3_ddpg_ext.zoo: error: `--figure` takes a file name (e.g. --figure curves.png)", file=sys.stderr)
            return 2
        figure, arguments = pathlib.Path(arguments[at + 1]), arguments[:at] + arguments[at + 2 :]
    try:
        register()
    except InvalidValueError as error:
        print(f"sb3_ddpg_ext.zoo: error: {error}", file=sys.stderr)
        return 2
    program = sys.argv[0]
    sys.argv = [f"rl_zoo3 {name}", *script_arguments(name, arguments)]  # RL Zoo's scripts parse sys.argv
    try:
        _script(name)()
    finally:
        sys.argv[0] = program
    if figure is not None:
        save_figures(figure)
    return 0


def save_figures(path: pathlib.Path) -> list[pathlib.Path]:
    """Save the figures RL Zoo's plot left open: ``path``, then ``<stem>-2<suffix>``, ... for further ones."""
    from matplotlib import pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    saved = []
    for index, number in enumerate(plt.get_fignums()):
        target = path if index == 0 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")
        plt.figure(number).savefig(target, bbox_inches="tight")
        saved.append(target)
    return saved


if __name__ == "__main__":
    sys.exit(main())
