"""What experiments know about each task: random steps, action noise, categorical support, a solved threshold."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """
    Settings shared by every algorithm on one environment.

    :param learning_starts: random steps before learning
    :param noise_std: std of the Gaussian action noise (in the [-1, 1] scaled action space)
    :param support: ``(v_min, v_max)`` of categorical critics, chosen to cover the task's Q-values
    :param threshold: the evaluation return that counts as solving the task, for "steps to threshold": Gymnasium's
        registered ``reward_threshold`` where it has one (Pendulum-v1 has none: -200 is ours; Walker2d-v5 has none:
        TD3's published score, the maximum average return over 1M steps, 4682.8 in Fujimoto et al. 2018,
        https://arxiv.org/abs/1802.09477, Table 1, on Walker2d-v1). It is also the task's
        reference score: normalised score = (return - random_score) / (threshold - random_score)
    :param random_score: mean return of uniformly random actions (20 episodes, seeds 0-19, measured here)
    """

    learning_starts: int = 1_000
    noise_std: float = 0.1
    support: tuple[float, float] = (-150.0, 150.0)
    threshold: float | None = None
    random_score: float | None = None


TASKS: dict[str, Task] = {
    # Rewards in [-16.3, 0]: Q-values >= -16.3 / (1 - 0.99).
    "Pendulum-v1": Task(learning_starts=1_000, support=(-1500.0, 0.0), threshold=-200.0, random_score=-1245.9),
    # Reward 1 per step alive: Q-values lie in [0, 1 / (1 - gamma)] = [0, 100].
    "InvertedPendulum-v5": Task(learning_starts=1_000, support=(0.0, 100.0), threshold=950.0, random_score=4.5),
    "InvertedDoublePendulum-v5": Task(learning_starts=10_000, support=(0.0, 1000.0), threshold=9100.0, random_score=52.4),
    "HalfCheetah-v5": Task(learning_starts=10_000, support=(-100.0, 1500.0), threshold=4800.0, random_score=-260.8),
    "Hopper-v5": Task(learning_starts=10_000, support=(0.0, 400.0), threshold=3800.0, random_score=24.8),
    "Walker2d-v5": Task(learning_starts=10_000, support=(0.0, 500.0), threshold=4682.8, random_score=2.2),
    "Ant-v5": Task(learning_starts=10_000, support=(-100.0, 800.0), threshold=6000.0, random_score=-19.5),
    "LunarLanderContinuous-v3": Task(learning_starts=10_000, support=(-300.0, 300.0), threshold=200.0, random_score=-244.8),
    "MountainCarContinuous-v0": Task(
        learning_starts=1_000, noise_std=0.5, support=(-100.0, 100.0), threshold=90.0, random_score=-33.1
    ),
}
