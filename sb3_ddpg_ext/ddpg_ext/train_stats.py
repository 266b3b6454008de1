"""The metrics DDPGExt's ``train()`` logs (``train/...``), gathered as tensors and read with one device sync."""

from collections import defaultdict

import torch as th
from stable_baselines3.common.logger import Logger

from sb3_ddpg_ext.common.buffers import PrioritizedSampling
from sb3_ddpg_ext.common.noise import AdaptiveParamNoise
from sb3_ddpg_ext.ddpg_ext.checkpoints import PolicyCheckpoints


class TrainStats:
    """Per-update values of one ``train()`` call; :meth:`record` logs their means and the extensions' state."""

    def __init__(self) -> None:
        self.values: dict[str, list[th.Tensor]] = defaultdict(list)

    def add(self, name: str, value: th.Tensor) -> None:
        """One update's value (a tensor without graph) of ``train/<name>``."""
        self.values[name].append(value)

    def record(
        self,
        logger: Logger,
        n_updates: int,
        param_noise: AdaptiveParamNoise | None = None,
        prioritized: PrioritizedSampling | None = None,
        checkpoints: PolicyCheckpoints | None = None,
    ) -> None:
        """Log the means over the call's updates and the state of parameter noise, prioritized replay, checkpoints."""
        logger.record("train/n_updates", n_updates, exclude="tensorboard")
        means = [values[0] if len(values) == 1 else th.stack(values).mean() for values in self.values.values()]
        if means:
            for name, mean in zip(self.values, th.stack(means).tolist(), strict=True):  # one sync, not one per metric
                logger.record(f"train/{name}", mean)
        if param_noise is not None:
            logger.record("train/param_noise_std", param_noise.std)
            logger.record("train/param_noise_distance", param_noise.last_distance)
        if prioritized is not None:
            if prioritized.beta is not None:  # LAP has no importance weights
                logger.record("train/beta", prioritized.beta)
            logger.record("train/priority_mean", prioritized.priority_mean)
            logger.record("train/priority_max", prioritized.max_priority)
        if checkpoints is not None:
            logger.record("train/checkpoints_taken", checkpoints.checkpoints_taken)
            logger.record("train/checkpoint_min_return", checkpoints.best_min_return)
