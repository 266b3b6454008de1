"""
Where a training run keeps its files: RL Zoo's layout, so its users find them where they look.

::

    <log-folder>/ddpg_ext/<env>_<N>/        N: one more than the latest run of the env, as RL Zoo counts
        <env>.zip                           the final model (and <env>_vecnormalize.pkl, <env>_replay_buffer.pkl)
        config.yml                          the entry the run trained with: `train --hyperparams` repeats it
        args.yml                            the run's other settings (seed, evaluation, checkpoints), for --resume
        best_model.zip, evaluations.npz     with --eval-freq (SB3's EvalCallback)
        rl_model_<steps>_steps.zip          with --checkpoint-freq (SB3's CheckpointCallback), with
        rl_model_replay_buffer_<steps>_steps.pkl and rl_model_vecnormalize_<steps>_steps.pkl beside it
        0.monitor.csv, ...                  episode returns of each training env (SB3's Monitor)
"""

import pathlib
import re
from dataclasses import dataclass

from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file

from sb3_ddpg_ext.common.validation import MissingFileError

ALGORITHM_FOLDER = "ddpg_ext"
CHECKPOINT_PREFIX = "rl_model"  # RL Zoo's (and SB3's CheckpointCallback's default) name for checkpoints
_CHECKPOINT = re.compile(r"^(?P<prefix>.+)_(?P<steps>\d+)_steps$")


def file_name(env_id: str) -> str:
    """An env id as a file name (``ALE/Pong-v5`` -> ``ALE-Pong-v5``)."""
    return env_id.replace("/", "-").replace(":", "-")


@dataclass(frozen=True)
class RunFolder:
    """
    :param path: the run's folder
    :param env_id: the env it trains on
    """

    path: pathlib.Path
    env_id: str

    @classmethod
    def new(cls, log_folder: str | pathlib.Path, env_id: str) -> "RunFolder":
        """The next run's folder under ``<log_folder>/ddpg_ext`` (``<env>_1`` for the first), created."""
        parent = pathlib.Path(log_folder) / ALGORITHM_FOLDER
        name = file_name(env_id)
        pattern = re.compile(rf"^{re.escape(name)}_(\d+)$")
        runs = [int(match.group(1)) for child in parent.glob(f"{name}_*") if (match := pattern.match(child.name))]
        path = parent / f"{name}_{max(runs, default=0) + 1}"
        path.mkdir(parents=True)
        return cls(path, env_id)

    @property
    def model(self) -> pathlib.Path:
        return self.path / f"{file_name(self.env_id)}.zip"

    @property
    def config(self) -> pathlib.Path:
        return self.path / "config.yml"

    @property
    def args(self) -> pathlib.Path:
        return self.path / "args.yml"

    @property
    def evaluations(self) -> pathlib.Path:
        return self.path / "evaluations.npz"

    @property
    def best_model(self) -> pathlib.Path:
        return self.path / "best_model.zip"

    def latest_model(self) -> pathlib.Path:
        """
        The saved model with the most steps: a checkpoint or the final model.

        :raises MissingFileError: the folder holds neither
        """
        candidates: dict[pathlib.Path, int] = {}
        for path in self.path.glob(f"{CHECKPOINT_PREFIX}_*_steps.zip"):
            match = _CHECKPOINT.match(path.stem)
            if match:
                candidates[path] = int(match.group("steps"))
        if self.model.is_file():
            candidates[self.model] = saved_steps(self.model)
        if not candidates:
            raise MissingFileError(f"run folder {str(self.path)!r} holds no model ({self.model.name} or checkpoints)")
        return max(candidates, key=lambda path: candidates[path])


def saved_steps(model_path: str | pathlib.Path) -> int:
    """The step count a model was saved at (read from its file, without building the model)."""
    data, _, _ = load_from_zip_file(model_path, load_data=True, device="cpu")
    return int(data["num_timesteps"]) if data is not None else 0


def save_with_companions(model: OffPolicyAlgorithm, model_path: pathlib.Path, replay_buffer: bool) -> None:
    """Save ``model`` to ``model_path``, its ``VecNormalize`` statistics (if any) and, if asked, its replay buffer
    beside it under the :func:`companion` names the loaders look for."""
    model.save(model_path)
    env = model.get_vec_normalize_env()
    if env is not None:
        env.save(str(companion(model_path, "vecnormalize")))
    if replay_buffer:
        model.save_replay_buffer(companion(model_path, "replay_buffer"))


def companion(model_path: str | pathlib.Path, kind: str) -> pathlib.Path:
    """
    The file of ``kind`` (``vecnormalize`` or ``replay_buffer``) saved with a model: ``<stem>_<kind>.pkl`` beside a
    final model, ``<prefix>_<kind>_<steps>_steps.pkl`` beside a checkpoint ``<prefix>_<steps>_steps.zip``.
    """
    model_path = pathlib.Path(model_path)
    match = _CHECKPOINT.match(model_path.stem)
    if match:
        return model_path.with_name(f"{match.group('prefix')}_{kind}_{match.group('steps')}_steps.pkl")
    return model_path.with_name(f"{model_path.stem}_{kind}.pkl")
