r"""
n-step returns gathered from a replay buffer's arrays, vectorised over a batch.

For a transition stored at ``(row, env)`` the n-step return is

.. math:: R = \sum_{k=0}^{m-1} \gamma^k r_{t+k}, \qquad y = R + \gamma^m (1 - d_{t+m-1}) Q(s_{t+m}, \cdot)

where ``m <= n`` stops at the first episode end (termination or truncation) so that a return never
crosses into the next episode. As in SB3's ``NStepReplayBuffer``: a termination zeroes the bootstrap,
a truncation (timeout) bootstraps from the true last observation, and the newest stored row also stops
the sum (the rows after it belong to older episodes or are empty).
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class NStepTargets(NamedTuple):
    """
    :param rewards: discounted reward sums, shape ``(batch,)``
    :param discounts: ``gamma ** m`` for the bootstrap, shape ``(batch,)``
    :param last_rows: row of the last transition summed, whose ``next_observation`` is bootstrapped from
    :param dones: 1 where the last transition summed is a termination (not a timeout), else 0
    """

    rewards: np.ndarray
    discounts: np.ndarray
    last_rows: np.ndarray
    dones: np.ndarray


def n_step_targets(
    rewards: np.ndarray,
    dones: np.ndarray,
    timeouts: np.ndarray,
    rows: np.ndarray,
    envs: np.ndarray,
    newest_row: int,
    n_steps: int,
    gamma: float,
    scale_rewards: Callable[[np.ndarray], np.ndarray] | None = None,
) -> NStepTargets:
    """
    :param rewards: the buffer's rewards, shape ``(buffer_size, n_envs)``
    :param dones: the buffer's episode-end flags, same shape
    :param timeouts: the buffer's truncation flags, same shape (zeros when timeouts are not handled)
    :param rows: sampled rows, shape ``(batch,)``
    :param envs: sampled env columns, shape ``(batch,)``
    :param newest_row: the row written last
    :param n_steps: the ``n`` of n-step returns
    :param gamma: discount factor
    :param scale_rewards: applied to the gathered rewards (e.g. ``VecNormalize``'s reward normalisation)
    """
    buffer_size = rewards.shape[0]
    steps = np.arange(n_steps)
    sequence = (rows[:, None] + steps) % buffer_size
    columns = envs[:, None]
    ends = (dones[sequence, columns] != 0) | (timeouts[sequence, columns] != 0) | (sequence == newest_row)
    # Index of the first episode end within the window, or the window's last step.
    last_step = np.where(ends.any(axis=1), ends.argmax(axis=1), n_steps - 1)
    in_return = steps <= last_step[:, None]
    gathered = rewards[sequence, columns]
    if scale_rewards is not None:
        gathered = scale_rewards(gathered)
    discounted = gathered * (gamma**steps).astype(np.float32) * in_return
    last_rows = (rows + last_step) % buffer_size
    terminal = dones[last_rows, envs] * (1.0 - timeouts[last_rows, envs])
    return NStepTargets(
        rewards=discounted.sum(axis=1, dtype=np.float32),
        discounts=(gamma ** (last_step + 1)).astype(np.float32),
        last_rows=last_rows,
        dones=terminal.astype(np.float32),
    )
