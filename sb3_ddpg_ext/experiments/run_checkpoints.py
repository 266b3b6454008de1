"""
Checkpoints of long benchmark runs: a run interrupted (a session's end, a crash, a reboot) resumes from its last one.

A checkpoint holds what an uninterrupted run would carry on with: the model (weights, optimizer states, step and
update counts, schedules' progress, the algorithm's own state such as TD7's policy checkpoints and value range), its
replay buffer (priorities included), the global random number generators' states and the evaluations so far with the
training seconds they took. It is written at the first episode end on or after every ``every`` steps, between SB3's
training call and the next collection, so no update is lost and no episode is cut: a resumed run starts its next
episode with a freshly reset environment, as the uninterrupted run starts a new episode there too (from another
initial state: the environment's own generator is not carried over). A run loses at most ``every`` steps plus one
episode. Checkpoints belong outside the repository (``--checkpoint-dir``); a finished run's is removed.
"""

import pickle
import random
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from sb3_ddpg_ext.common.validation import InvalidValueError

if TYPE_CHECKING:
    from sb3_ddpg_ext.experiments.benchmark import EvaluationRecorder, RunSpec

MODEL, BUFFER, STATE = "model.zip", "replay_buffer.pkl", "state.pkl"


class RunCheckpoints:
    """
    Where the checkpoints of a grid's runs live, and how often they are written.

    :param root: folder of the checkpoints, one subfolder per run (``env/algorithm/seedN``)
    :param every: write a checkpoint at the first episode end on or after every this many steps
    """

    def __init__(self, root: str | Path, every: int):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise InvalidValueError(f"`checkpoint_freq` must be a positive number of steps, got {every!r}")
        self.root = Path(root)
        self.every = every

    def folder(self, spec: "RunSpec") -> Path:
        return self.root / spec.env_id / spec.algorithm / f"seed{spec.seed}"

    def exists(self, spec: "RunSpec") -> bool:
        return (self.folder(spec) / STATE).exists()

    def save(self, spec: "RunSpec", model: BaseAlgorithm, recorder: "EvaluationRecorder") -> None:
        """Write the run's checkpoint next to the previous one, then replace it (a crash leaves one whole)."""
        folder = self.folder(spec)
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        model.save(partial / MODEL)
        model.save_replay_buffer(partial / BUFFER)  # type: ignore[attr-defined]
        state = {
            "spec": asdict(spec),
            "algorithm_class": type(model),
            "num_timesteps": model.num_timesteps,
            "rows": list(recorder.rows),
            "training_seconds": recorder.training_seconds(),
            "random": (random.getstate(), np.random.get_state(), th.get_rng_state()),
        }
        with (partial / STATE).open("wb") as file:
            pickle.dump(state, file)
        previous = folder.with_name(folder.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        if folder.exists():
            folder.rename(previous)
        partial.rename(folder)
        shutil.rmtree(previous, ignore_errors=True)

    def resume(self, spec: "RunSpec", recorder: "EvaluationRecorder") -> BaseAlgorithm:
        """The run's model as its checkpoint left it, with its buffer; ``recorder`` continues its evaluations."""
        folder = self.folder(spec)
        with (folder / STATE).open("rb") as file:
            state: dict[str, Any] = pickle.load(file)  # our own file, written by save()
        if {**state["spec"], "timesteps": spec.timesteps} != asdict(spec):
            raise InvalidValueError(
                f"the checkpoint in {folder} is of another run ({state['spec']}), not of {asdict(spec)}: remove it"
            )
        # A new episode in a new environment (seeded apart from the first one's).
        env = make_vec_env(spec.env_id, n_envs=1, seed=spec.seed + state["num_timesteps"])
        model = state["algorithm_class"].load(folder / MODEL, env=env)
        model.load_replay_buffer(folder / BUFFER)
        model._last_obs = None  # learn() resets the new environment
        # Loading seeds the generators with the run's seed: put them where the interrupted run had them.
        python_state, numpy_state, torch_state = state["random"]
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        th.set_rng_state(torch_state)
        recorder.restore(state["rows"], state["training_seconds"])
        return model

    def remove(self, spec: "RunSpec") -> None:
        shutil.rmtree(self.folder(spec), ignore_errors=True)

    def callback(self, spec: "RunSpec", recorder: "EvaluationRecorder") -> "EpisodeEndCheckpoints":
        return EpisodeEndCheckpoints(self, spec, recorder)


class EpisodeEndCheckpoints(BaseCallback):
    """Writes the run's checkpoint at the first episode end on or after every ``checkpoints.every`` steps."""

    def __init__(self, checkpoints: RunCheckpoints, spec: "RunSpec", recorder: "EvaluationRecorder"):
        super().__init__()
        self.checkpoints, self.spec, self.recorder = checkpoints, spec, recorder
        self._next = checkpoints.every
        self._episode_ended = False

    def _on_training_start(self) -> None:
        self._next = (self.model.num_timesteps // self.checkpoints.every + 1) * self.checkpoints.every

    def _on_step(self) -> bool:
        self._episode_ended = bool(np.any(self.locals["dones"]))
        return True

    def _on_rollout_start(self) -> None:
        # Called before each collection, i.e. after the training call that followed the last one.
        if self._episode_ended and self.model.num_timesteps >= self._next:
            self.checkpoints.save(self.spec, self.model, self.recorder)
            self._next = (self.model.num_timesteps // self.checkpoints.every + 1) * self.checkpoints.every
