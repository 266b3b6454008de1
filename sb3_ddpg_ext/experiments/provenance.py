"""Where a measurement comes from: command, git commit, library versions, threads and machine."""

import datetime
import os
import pathlib
import platform
import shlex
import subprocess
import sys

import torch as th
from stable_baselines3.common.utils import get_system_info


def cpu_model() -> str:
    """The CPU's model name as the OS reports it (``platform.processor()`` is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """
    The checkout's commit, with ``-dirty`` when it has uncommitted changes (benchmark results excepted);
    ``unknown`` outside git.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


# The commit of the code this process runs: read when the module is imported, not when a result is written (a long
# benchmark keeps running the code it imported while the checkout moves on).
CODE_COMMIT = git_commit()


def command_line() -> str:
    """The command that started this process, as typed (``python -m sb3_ddpg_ext ...`` for the package's CLI)."""
    arguments = list(sys.argv)
    if arguments and pathlib.PurePath(arguments[0]).parts[-2:] == ("sb3_ddpg_ext", "__main__.py"):
        arguments[:1] = ["-m", "sb3_ddpg_ext"]
    return " ".join(shlex.quote(argument) for argument in [os.path.basename(sys.executable), *arguments])


def provenance() -> dict[str, str]:
    """Everything needed to tell where a number comes from, as strings."""
    versions = get_system_info(print_info=False)[0]
    return {
        "command": command_line(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "git commit": CODE_COMMIT,
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "torch threads": str(th.get_num_threads()),
        **{name: str(value) for name, value in versions.items() if name not in ("OS", "GPU Enabled")},
    }


def provenance_markdown() -> str:
    """:func:`provenance` as a markdown bullet list."""
    return "\n".join(f"- {name}: `{value}`" for name, value in provenance().items())


def publish(report: list[str], origin: str, output: pathlib.Path | None) -> None:
    """
    Print a benchmark report with its provenance, and write it to ``output`` too when given.

    :param report: markdown lines of the results
    :param origin: :func:`provenance_markdown`, taken when the measurements started
    :param output: markdown file to write, or ``None``
    """
    text = "\n".join([*report, "", "## Provenance", "", origin, ""])
    print(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
