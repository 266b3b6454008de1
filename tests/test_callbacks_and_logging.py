"""SB3's callbacks, logger and TensorBoard work with DDPGExt, and it logs its training metrics."""

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.logger import configure

from sb3_ddpg_ext import DDPGExt

FAST = dict(learning_starts=50, batch_size=32, buffer_size=2_000, policy_kwargs=dict(net_arch=[16]))


class CountSteps(BaseCallback):
    def __init__(self):
        super().__init__()
        self.steps = 0
        self.started = self.ended = False

    def _on_training_start(self):
        self.started = True

    def _on_step(self):
        self.steps += 1
        return True

    def _on_training_end(self):
        self.ended = True


def test_eval_and_checkpoint_callbacks(tmp_path):
    eval_callback = EvalCallback(
        gym.make("Pendulum-v1"),
        n_eval_episodes=2,
        eval_freq=100,
        log_path=str(tmp_path / "eval"),
        best_model_save_path=str(tmp_path / "best"),
    )
    checkpoint = CheckpointCallback(save_freq=100, save_path=str(tmp_path / "ckpt"), save_replay_buffer=True)
    counter = CountSteps()
    model = DDPGExt("MlpPolicy", "Pendulum-v1", **FAST)
    model.learn(300, callback=CallbackList([eval_callback, checkpoint, counter]))

    assert counter.started and counter.ended and counter.steps == 300
    evaluations = np.load(tmp_path / "eval" / "evaluations.npz")
    assert list(evaluations["timesteps"]) == [100, 200, 300]
    assert evaluations["results"].shape == (3, 2)
    assert (tmp_path / "best" / "best_model.zip").is_file()
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} >= {
        "rl_model_300_steps.zip",
        "rl_model_replay_buffer_300_steps.pkl",
    }
    DDPGExt.load(tmp_path / "ckpt" / "rl_model_300_steps.zip")


def test_callback_can_stop_training():
    eval_callback = EvalCallback(
        gym.make("Pendulum-v1"),
        n_eval_episodes=1,
        eval_freq=100,
        callback_on_new_best=StopTrainingOnRewardThreshold(reward_threshold=-1e9),
    )
    model = DDPGExt("MlpPolicy", "Pendulum-v1", **FAST)
    model.learn(1_000, callback=eval_callback)
    assert model.num_timesteps == 100


def test_logs_training_metrics(tmp_path):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", **FAST)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(400, log_interval=1)
    rows = (tmp_path / "progress.csv").read_text().splitlines()
    header = rows[0].split(",")
    for key in (
        "train/critic_loss",
        "train/actor_loss",
        "train/q_mean",
        "train/n_updates",
        "train/learning_rate",
        "rollout/ep_rew_mean",
        "time/fps",
    ):
        assert key in header, key
    last = dict(zip(header, rows[-1].split(","), strict=True))
    # Logs are written at the end of the second episode (step 400), before that step's update.
    assert int(last["train/n_updates"]) == 400 - 50 - 1
    assert np.isfinite(float(last["train/critic_loss"])) and float(last["train/learning_rate"]) == 1e-3


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tensorboard_logging(tmp_path):
    model = DDPGExt("MlpPolicy", "Pendulum-v1", tensorboard_log=str(tmp_path), **FAST)
    model.learn(400, log_interval=1)
    run_dirs = list(tmp_path.iterdir())
    assert [d.name for d in run_dirs] == ["DDPGExt_1"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dirs[0]))
    events.Reload()
    assert {"train/critic_loss", "train/actor_loss", "train/q_mean", "rollout/ep_rew_mean"} <= set(events.Tags()["scalars"])
